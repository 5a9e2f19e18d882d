"""Typed configuration objects from plain (YAML) mappings.

Sections are frozen dataclasses whose fields carry their documentation and
constraints through :func:`option`; :func:`build` converts a nested mapping into
them, rejecting anything wrong with a :class:`ConfigError` that names the key
path and what is allowed. Supported annotations: ``int``, ``float``, ``str``,
``bool``, ``Any``, ``Literal[...]``, ``Optional[T]``, ``list[T]``,
``tuple[T1, T2]`` / ``tuple[T, ...]``, ``dict[str, T]``, nested dataclasses and
unions of dataclasses told apart by a ``Literal`` field (``kind``, say).

YAML 1.1 reads ``1e-3`` as a string, so number fields accept strings that parse
as numbers; integer fields accept integral numbers (``1e5``); string fields
accept numbers (``f: 0`` is the expression ``"0"``). Booleans are never numbers.
"""
from __future__ import annotations

import copy
import dataclasses
import datetime
import difflib
import functools
import math
import re
import types
import typing
from dataclasses import MISSING
from typing import Any, Literal, Mapping, Union

import yaml

from .errors import ConfigError

__all__ = ["option", "build", "to_dict", "apply_overrides", "describe"]

_META = "sciml"
_NONE = type(None)
get_origin, get_args = typing.get_origin, typing.get_args


def option(default=MISSING, *, doc: str = "", min=None, max=None, min_exclusive: bool = False,
           choices=None, check=None):
    """A dataclass field with documentation and constraints.

    ``default`` may be a value, or ``dataclasses.field(default_factory=...)``;
    without one the key is required (the field is then keyword-only, so required
    and defaulted fields may come in any order). ``min``/``max``: bounds for
    numbers (and each number of a list), inclusive unless ``min_exclusive``;
    ``choices``: allowed values; ``check(value) -> str | None``: an error message
    or ``None``. Constraints are not applied to ``None`` nor to defaults.
    """
    meta = {_META: dict(doc=doc, min=min, max=max, min_exclusive=min_exclusive,
                        choices=None if choices is None else tuple(choices), check=check)}
    if isinstance(default, dataclasses.Field):
        if default.default_factory is not MISSING:
            return dataclasses.field(default_factory=default.default_factory, metadata=meta)
        default = default.default
    if default is MISSING:
        return dataclasses.field(kw_only=True, metadata=meta)
    if isinstance(default, (list, dict, set)):
        return dataclasses.field(default_factory=functools.partial(copy.deepcopy, default), metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


# ---- helpers -------------------------------------------------------------------------------
def _fail(path: str, message: str):
    raise ConfigError(path, message)


def _join(path: str, key) -> str:
    return f"{path}.{key}" if path else str(key)


def _fmt(value) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _suggest(word, options) -> str:
    if not isinstance(word, str):
        return ""
    close = difflib.get_close_matches(word, [str(o) for o in options], n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _meta(f: dataclasses.Field) -> dict:
    return f.metadata.get(_META) or {}


@functools.lru_cache(maxsize=None)
def _hints(cls) -> dict:
    return typing.get_type_hints(cls)


@functools.lru_cache(maxsize=None)
def _discriminator(members: tuple):
    """``(key, {value: class})`` when ``members`` are dataclasses told apart by a
    ``Literal`` field (``kind`` preferred), else ``None``."""
    if not members or not all(dataclasses.is_dataclass(m) for m in members):
        return None
    names = [f.name for f in dataclasses.fields(members[0])]
    for key in sorted(names, key=lambda n: n != "kind"):
        table = {}
        for m in members:
            tp = _hints(m).get(key)
            if get_origin(tp) is not Literal or any(v in table for v in get_args(tp)):
                break
            table.update({v: m for v in get_args(tp)})
        else:
            return key, table
    return None


def _number(value):
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        return None
    try:
        return float(value.strip() if isinstance(value, str) else value)
    except (ValueError, OverflowError):
        return None


# ---- conversion ----------------------------------------------------------------------------
def _convert(tp, value, path: str):
    origin, args = get_origin(tp), get_args(tp)
    if tp is Any or tp is object:
        return value
    if origin is Literal:
        if any(value == c and type(value) is type(c) for c in args):
            return value
        _fail(path, f"expected one of {', '.join(map(repr, args))}, got {_fmt(value)}{_suggest(value, args)}")
    if get_origin(tp) in (Union, types.UnionType):
        return _union(args, value, path)
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        return _build(tp, {} if value is None else value, path)
    if tp is bool:
        if isinstance(value, bool):
            return value
        _fail(path, f"expected true or false, got {_fmt(value)}")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        x = _number(value)
        if x is not None and math.isfinite(x) and x == int(x):
            return int(x)
        _fail(path, f"expected an integer, got {_fmt(value)}")
    if tp is float:
        x = _number(value)
        if x is None or math.isnan(x):
            _fail(path, f"expected a number, got {_fmt(value)}")
        return x
    if tp is str:
        if isinstance(value, str):
            return value
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return repr(value)
        if isinstance(value, (datetime.date, datetime.time)):   # YAML reads 2026-11-23 as a date
            return value.isoformat()
        _fail(path, f"expected a string, got {_fmt(value)}")
    if tp in (list, tuple) or origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            _fail(path, f"expected a list ({_type_name(tp)}), got {_fmt(value)}")
        if (tp is tuple or origin is tuple) and args and not (len(args) == 2 and args[1] is Ellipsis):
            if len(value) != len(args):
                _fail(path, f"expected a list of {len(args)} items ({_type_name(tp)}), got {_fmt(value)}")
            return tuple(_convert(a, v, f"{path}[{i}]") for i, (a, v) in enumerate(zip(args, value)))
        items = [_convert(args[0] if args else Any, v, f"{path}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if (tp is tuple or origin is tuple) else items
    if tp is dict or origin is dict:
        if not isinstance(value, Mapping):
            _fail(path, f"expected a mapping ({_type_name(tp)}), got {_fmt(value)}")
        kt, vt = args or (Any, Any)
        return {_convert(kt, k, path): _convert(vt, v, _join(path, k)) for k, v in value.items()}
    raise TypeError(f"unsupported annotation {tp!r} at {path or '<root>'}")


def _union(args, value, path: str):
    if value is None and _NONE in args:
        return None
    members = tuple(a for a in args if a is not _NONE)
    if len(members) == 1:
        return _convert(members[0], value, path)
    disc = _discriminator(members)
    if disc is not None:
        key, table = disc
        if isinstance(value, members):
            return value
        allowed = ", ".join(map(str, table))
        if not isinstance(value, Mapping):
            _fail(path, f"expected a mapping with '{key}' (one of {allowed}), got {_fmt(value)}")
        if key not in value:
            _fail(_join(path, key), f"missing; allowed {key}s: {allowed}")
        k = value[key]
        if not isinstance(k, (str, int, float)) or k not in table:
            _fail(_join(path, key), f"unknown {key} {_fmt(k)}{_suggest(k, table)}; allowed: {allowed}")
        return _build(table[k], value, path)
    for m in members:
        try:
            return _convert(m, value, path)
        except ConfigError:
            pass
    _fail(path, f"expected {' or '.join(_describe(m) for m in members)}, got {_fmt(value)}")


def _describe(tp) -> str:
    """Plain words for a type in error messages: ``float`` -> ``a number``."""
    words = {float: "a number", int: "an integer", str: "a string", bool: "true or false"}
    if tp in words:
        return words[tp]
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (list, tuple) and args:
        inner = _describe(args[0])
        return "a list of " + {"a number": "numbers", "an integer": "integers", "a string": "strings"}.get(inner, inner)
    return _type_name(tp)


def _constrain(f: dataclasses.Field, value, path: str) -> None:
    m = _meta(f)
    if not m or value is None:
        return
    if m["choices"] is not None and value not in m["choices"]:
        _fail(path, f"expected one of {', '.join(map(repr, m['choices']))}, got {_fmt(value)}")
    lo, hi = m["min"], m["max"]
    if lo is not None or hi is not None:
        many = isinstance(value, (list, tuple))
        for i, v in enumerate(value if many else [value]):
            if not isinstance(v, (int, float)) or isinstance(v, bool):
                continue
            if (lo is not None and (v <= lo if m["min_exclusive"] else v < lo)) or (hi is not None and v > hi):
                what = "an integer" if isinstance(v, int) else "a number"
                _fail(f"{path}[{i}]" if many else path, f"expected {what} {_bounds(m)}, got {v!r}")
    if m["check"] is not None:
        message = m["check"](value)
        if message:
            _fail(path, message)


def _build(cls, data, path: str):
    fields = [f for f in dataclasses.fields(cls) if f.init]
    names = [f.name for f in fields]
    if not isinstance(data, Mapping):
        _fail(path, f"expected a mapping with keys {', '.join(names)}; got {_fmt(data)}")
    for key in data:
        if key not in names:
            _fail(_join(path, key), f"unknown key {key!r}{_suggest(key, names)}; allowed keys: {', '.join(names)}")
    hints, kwargs = _hints(cls), {}
    for f in fields:
        p = _join(path, f.name)
        if f.name in data:
            kwargs[f.name] = value = _convert(hints[f.name], data[f.name], p)
            _constrain(f, value, p)
        elif f.default is MISSING and f.default_factory is MISSING:
            doc = _meta(f).get("doc")
            _fail(p, f"missing required key {f.name!r}" + (f" ({doc})" if doc else ""))
    try:
        return cls(**kwargs)
    except ValueError as exc:  # a __post_init__ check
        _fail(path, str(exc))


def build(cls, data, *, path: str = "", source: str | None = None):
    """``data`` (a mapping, ``None`` for all defaults) -> an instance of dataclass
    ``cls`` (or any supported annotation, e.g. a union). Raises :class:`ConfigError`."""
    try:
        return _convert(cls, data, path)
    except ConfigError as exc:
        raise exc.with_source(source) from None


def to_dict(obj):
    """Dataclasses -> plain dicts, tuples -> lists, recursively (``build`` inverts it)."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj) if f.init}
    if isinstance(obj, Mapping):
        return {k: to_dict(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    return obj


# ---- overrides -----------------------------------------------------------------------------
_FLOAT = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?")
_SEGMENT = re.compile(r"([^.\[\]=\s][^.\[\]=]*?)\s*((?:\[\s*-?\d+\s*\])*)")


def _numbers(value):
    """Float-like strings (YAML 1.1 reads ``1e-8`` as a string) -> floats, recursively."""
    if isinstance(value, str) and _FLOAT.fullmatch(value.strip()):
        return float(value)
    if isinstance(value, list):
        return [_numbers(v) for v in value]
    if isinstance(value, dict):
        return {k: _numbers(v) for k, v in value.items()}
    return value


def _key_parts(key: str, item: str) -> list:
    parts = []
    for seg in key.split("."):
        m = _SEGMENT.fullmatch(seg.strip())
        if m is None:
            _fail(key, f"malformed key in override {item!r}: expected names joined by '.', "
                       f"optionally with list indices, e.g. output.times[0]=0.1")
        parts.append(m.group(1))
        parts += [int(i) for i in re.findall(r"-?\d+", m.group(2))]
    return parts


def parse_override(item) -> tuple[str, Any]:
    """``"solver.training.steps=100"`` -> ``("solver.training.steps", 100.0)``: the value
    read as YAML (float-like strings become floats unless quoted)."""
    key, _, value = _parse_override(item)
    return key, value


def _parse_override(item) -> tuple[str, list, Any]:
    if not isinstance(item, str) or "=" not in item:
        _fail(str(item).strip(), f"malformed override {item!r}: expected KEY=VALUE, e.g. solver.training.steps=100")
    key, text = (s.strip() for s in item.split("=", 1))
    if not key:
        _fail("", f"malformed override {item!r}: empty key; expected KEY=VALUE, e.g. solver.training.steps=100")
    parts = _key_parts(key, item)
    try:
        value = yaml.safe_load(text) if text else None
        value = value if text[:1] in ("'", '"') else _numbers(value)  # quoted: keep the string
    except yaml.YAMLError as exc:
        _fail(key, f"cannot read the value {text!r} of override {item!r} as YAML: {getattr(exc, 'problem', exc)}")
    return key, parts, value


def override_strings(overrides: Mapping[str, Any]) -> list[str]:
    """``{"solver.points": {"interior": 256}}`` -> ``["solver.points={interior: 256}"]``:
    the inverse of :func:`parse_override` (what ``--set`` takes on the command line)."""
    return [f"{k}={yaml.safe_dump(v, default_flow_style=True, width=10**6, sort_keys=False).strip().removesuffix('...').strip()}"
            for k, v in overrides.items()]


def apply_overrides(data: Mapping, overrides) -> dict:
    """Apply ``KEY=VALUE`` strings (``solver.training.steps=100``, ``output.times=[0.1, 0.2]``,
    ``output.times[0]=0.05``) to a deep copy of ``data``. Values are YAML (``null``,
    ``true``, lists, mappings); float-like strings become floats unless quoted. Missing intermediate
    mappings are created. Returns the new dict; ``data`` is left untouched."""
    out = copy.deepcopy(dict(data))
    for item in overrides:
        key, parts, value = _parse_override(item)
        node, where = out, ""
        for i, part in enumerate(parts):
            if isinstance(part, int):
                if not isinstance(node, list):
                    _fail(where, f"cannot index [{part}] in override {item!r}: {_fmt(node)} is not a list")
                if not -len(node) <= part < len(node):
                    _fail(where, f"index [{part}] in override {item!r} is out of range for a list of {len(node)}")
                where = f"{where}[{part}]"
            else:
                if not isinstance(node, dict):
                    _fail(where, f"cannot set {key!r}: {where or 'the root'} is {_fmt(node)}, not a mapping")
                where = _join(where, part)
                if i < len(parts) - 1 and node.get(part) is None:
                    node[part] = {}
            if i == len(parts) - 1:
                node[part] = value
            else:
                node = node[part]
    return out


# ---- documentation -------------------------------------------------------------------------
def _bounds(m: dict) -> str:
    out = []
    if m.get("min") is not None:
        out.append(f"{'>' if m.get('min_exclusive') else '>='} {m['min']}")
    if m.get("max") is not None:
        out.append(f"<= {m['max']}")
    return " and ".join(out)


def _type_name(tp) -> str:
    origin, args = get_origin(tp), get_args(tp)
    if tp is Any:
        return "any"
    if origin is Literal:
        return " | ".join(map(str, args))
    if get_origin(tp) in (Union, types.UnionType):
        members = tuple(a for a in args if a is not _NONE)
        disc = _discriminator(members) if len(members) > 1 else None
        name = (f"one of {disc[0]}: {' | '.join(map(str, disc[1]))}" if disc
                else " | ".join(_type_name(m) for m in members))
        return name + (" | null" if _NONE in args else "")
    if dataclasses.is_dataclass(tp):
        return "section"
    if (tp is tuple or origin is tuple) and args and not (len(args) == 2 and args[1] is Ellipsis):
        return "[" + ", ".join(_type_name(a) for a in args) + "]"
    if tp in (list, tuple) or origin in (list, tuple):
        return f"list[{_type_name(args[0]) if args else 'any'}]"
    if tp is dict or origin is dict:
        return f"mapping[{', '.join(_type_name(a) for a in args) if args else 'str, any'}]"
    return getattr(tp, "__name__", str(tp))


def _sections(tp) -> list:
    if dataclasses.is_dataclass(tp):
        return [tp]
    return [c for a in get_args(tp) if a is not _NONE for c in _sections(a)]


def _describe_type(tp, pad: str, lines: list, stack: tuple) -> None:
    subs = [c for c in _sections(tp) if c not in stack]
    disc = _discriminator(tuple(subs)) if len(subs) > 1 else None
    for c in subs:
        if disc:
            lines.append(f"{pad}{disc[0]}: {next(v for v, k in disc[1].items() if k is c)}")
        _describe_fields(c, pad + "  " if disc else pad, lines, stack + (c,), disc[0] if disc else None)


def _describe_fields(cls, pad: str, lines: list, stack: tuple, skip: str | None, only: str | None = None) -> None:
    for f in dataclasses.fields(cls):
        if not f.init or f.name == skip or (only is not None and f.name != only):
            continue
        tp, m = _hints(cls)[f.name], _meta(f)
        head = f"{pad}{f.name}: {_type_name(tp)}" + (f", {_bounds(m)}" if _bounds(m) else "")
        if f.default is MISSING and f.default_factory is MISSING:
            head += "  [required]"
        else:
            d = f.default if f.default is not MISSING else f.default_factory()
            union = _discriminator(tuple(_sections(tp))) if len(_sections(tp)) > 1 else None
            if union and dataclasses.is_dataclass(d):
                head += f"  [default {union[0]}: {getattr(d, union[0])}]"
            elif not dataclasses.is_dataclass(d):
                text = yaml.safe_dump(to_dict(d), default_flow_style=True, width=10**6)
                head += f"  [default: {text.strip().removesuffix('...').strip()}]"
        lines.append(head + (f"  -- {m['doc']}" if m.get("doc") else ""))
        _describe_type(tp, pad + "  ", lines, stack)


def describe(cls, path: str = "") -> str:
    """A readable listing of the keys of ``cls`` (nested sections indented): type,
    bounds, default or ``[required]``, and documentation. ``path`` (dotted, e.g.
    ``"solver.training"``): only that key, in every section that has it (a key of
    one kind of solver only, say); an unknown key is a :class:`ConfigError`."""
    parts = [p for p in path.split(".") if p] if path else []
    if not parts:
        lines: list = []
        _describe_type(cls, "", lines, ())
        return "\n".join(lines)
    tp, parents, disc = cls, [], None
    for i, part in enumerate(parts):
        sections = _sections(tp)
        disc = _discriminator(tuple(sections)) if len(sections) > 1 else None
        parents = [c for c in sections if part in {f.name for f in dataclasses.fields(c) if f.init}]
        if not parents:
            allowed = sorted({f.name for c in sections for f in dataclasses.fields(c) if f.init})
            raise ConfigError(".".join(parts[:i + 1]), f"unknown key {part!r}{_suggest(part, allowed)}" + (
                f"; allowed keys: {', '.join(allowed)}" if allowed else f"; {'.'.join(parts[:i])} has no keys"))
        found = list(dict.fromkeys(_hints(c)[part] for c in parents))
        tp = found[0] if len(found) == 1 else Union[tuple(found)]
    blocks: dict[str, list] = {}          # the key as each section has it; the same text once
    for c in parents:
        lines = []
        _describe_fields(c, "", lines, (c,), None, only=parts[-1])
        blocks.setdefault("\n".join(lines), []).append(c)
    if len(blocks) == 1:
        return next(iter(blocks))
    out = []
    for text, owners in blocks.items():
        if disc:
            names = [v for v, k in disc[1].items() if k in owners]
            out.append(f"# {disc[0]}: {' | '.join(map(str, names))}")
        out.append(text)
    return "\n".join(out)

"""Load a run configuration: YAML problem file -> solver preset -> ``--set``
overrides -> validated :class:`~sciml.config.problem.RunConfig`.

Every failure is a :class:`~sciml.config.errors.ConfigError` naming the key path
and what is allowed; nothing is written before the whole configuration is valid.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import yaml

from .errors import ConfigError
from .expr import parse_expression
from .problem import FORMULATIONS_BY_EQUATION, RunConfig
from .schema import apply_overrides, build, override_strings, to_dict


@dataclass(frozen=True)
class LoadedRun:
    config: RunConfig
    resolved: dict            # the fully resolved mapping (what result.h5 stores as YAML)
    base_dir: Path            # directory of the problem file (relative paths start here)
    source: str               # file name or "<dict>"

    @property
    def yaml_text(self) -> str:
        return yaml.safe_dump(self.resolved, sort_keys=False)


def read_yaml(path: str | Path, *, what: str = "file") -> dict:
    path = Path(path)
    if not path.is_file():
        raise ConfigError("", f"{what} not found: {path}")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        raise ConfigError("", f"invalid YAML{where}: {getattr(exc, 'problem', exc)}", source=str(path)) from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError("", f"expected a mapping at the top of the file, got {type(data).__name__}",
                          source=str(path))
    return data


def preset_dirs(base_dir: Path) -> list[Path]:
    """Where solver presets are looked up: ``solvers/`` in the problem file's
    directory or any parent, then in the working directory, then the shipped ones."""
    from .. import shipped
    dirs = [p / "solvers" for p in [base_dir, *base_dir.parents]]
    dirs += [Path.cwd() / "solvers", shipped.path("solvers")]
    seen, out = set(), []
    for d in dirs:
        if d.is_dir() and d.resolve() not in seen:
            seen.add(d.resolve())
            out.append(d)
    return out


def available_presets(base_dir: Path) -> list[str]:
    """The solver presets: the YAML files of :func:`preset_dirs` that name a solver
    ``kind`` (``solvers/`` also holds MetaColloc training configurations, which do not)."""
    names = set()
    for d in preset_dirs(base_dir):
        for p in d.glob("*.yaml"):
            try:
                if "kind" in read_yaml(p, what="solver preset"):
                    names.add(p.stem)
            except ConfigError:
                continue
    return sorted(names)


def _deep_merge(base: dict, extra: Mapping) -> dict:
    out = copy.deepcopy(base)
    for k, v in extra.items():
        if isinstance(v, Mapping) and isinstance(out.get(k), dict):
            out[k] = _deep_merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def resolve_solver(value: Any, base_dir: Path, source: str) -> dict:
    """A preset name, ``{preset: NAME, ...overrides}`` or a full mapping -> mapping."""
    if isinstance(value, str):
        name, extra = value, {}
    elif isinstance(value, Mapping) and "preset" in value:
        name = value["preset"]
        extra = {k: v for k, v in value.items() if k != "preset"}
        if not isinstance(name, str):
            raise ConfigError("solver.preset", f"expected a preset name, got {name!r}", source=source)
    elif isinstance(value, Mapping):
        return dict(value)
    else:
        raise ConfigError("solver", f"expected a preset name or a mapping, got {value!r}", source=source)
    for d in preset_dirs(base_dir):
        f = d / f"{name}.yaml"
        if f.is_file():
            preset = read_yaml(f, what="solver preset")
            if "kind" not in preset:
                raise ConfigError("solver", f"{name!r} ({f}) is not a solver preset: it names no solver kind; "
                                            f"available: {', '.join(available_presets(base_dir))}", source=source)
            return _deep_merge(preset, extra)
    raise ConfigError("solver", f"unknown solver preset {name!r}; available: {', '.join(available_presets(base_dir)) or 'none'}",
                      source=source)


# expressions of each problem and the variables they may use
EXPRESSIONS = {
    "linear_transport": [
        (("problem", "initial", "f"), ("x", "v")),
        (("problem", "initial", "rho"), ("x",)),
        (("problem", "boundary", "left", "f"), ("t", "v")),
        (("problem", "boundary", "right", "f"), ("t", "v")),
        (("problem", "boundary", "left", "rho"), ("t",)),
        (("problem", "boundary", "right", "rho"), ("t",)),
    ],
    "bgk": [
        *[(("problem", "initial", k), ("x",)) for k in ("rho", "u", "T")],
        *[(("problem", "boundary", side, k), ("t",)) for side in ("left", "right") for k in ("rho", "u", "T")],
    ],
}


def _check_expressions(resolved: dict, source: str) -> None:
    equation = resolved.get("problem", {}).get("equation")
    for keys, variables in EXPRESSIONS.get(equation, []):
        node: Any = resolved
        for k in keys:
            node = node.get(k) if isinstance(node, Mapping) else None
        if node is not None:
            try:
                parse_expression(node, variables, path=".".join(keys))
            except ConfigError as exc:
                raise ConfigError(exc.path, exc.message, source=source) from None


def _check_pde(config: RunConfig, source: str) -> None:
    """Solver kinds per equation; a pde problem's expressions parse (the key named)."""
    pde = config.problem.equation == "pde"
    kind = config.solver.kind
    if pde != (kind == "metacolloc"):
        allowed = "metacolloc" if pde else "apnn, reference"
        raise ConfigError("solver.kind", f"{kind!r} does not solve the {config.problem.equation} equation; "
                                         f"allowed: {allowed}", source=source)
    if not pde:
        return
    from .pde import check_pde_spec
    try:
        check_pde_spec(config.problem)
    except ConfigError as exc:
        raise ConfigError(exc.path, exc.message, source=source) from None


def _check_output(config: RunConfig, source: str) -> None:
    if config.problem.equation == "pde":
        return
    times = config.output.times
    t0, t1 = config.problem.t
    if times is not None:
        bad = [float(t) for t in times if not (t0 < t <= t1)]
        if bad:
            raise ConfigError("output.times", f"times must lie in ({t0:g}, {t1:g}] (problem.t), got {bad}",
                              source=source)


def build_rule(training, source: str | None = None):
    """The multi-task rule of a training section (``sciml.mtl.aggregator`` or
    ``weighting`` by name, with its options), or ``None``; an option the rule does not
    take or a value out of its range is a ConfigError naming the key. Called when the
    config is loaded (so the error comes before anything runs) and by the solver
    builder (which keeps the object)."""
    from .. import mtl

    for key in ("aggregator", "weighting"):
        name = getattr(training, key, None)
        if name is None:
            continue
        try:
            return getattr(mtl, key)(name, **getattr(training, f"{key}_options"))
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"solver.training.{key}_options", f"{name}: {exc}", source=source) from None
    return None


def _write_out_rule_options(config: RunConfig, resolved: dict) -> bool:
    """Write the multi-task rule's options out in full, its defaults included
    (:meth:`sciml.mtl.Aggregator.options`), into the resolved mapping; ``True`` when
    they changed. A configuration then names the rule it ran, not only the options a
    user gave: after a default changes, a run made before is a different
    configuration, and ``--resume`` or a comparison does not take it for the new one."""
    training = getattr(config.solver, "training", None)
    rule = build_rule(training) if training is not None else None
    if rule is None:
        return False
    key = "aggregator" if training.aggregator is not None else "weighting"
    options = rule.options()
    if options == resolved["solver"]["training"][f"{key}_options"]:
        return False
    resolved["solver"]["training"][f"{key}_options"] = options
    return True


def _check_formulation(config: RunConfig, source: str) -> None:
    formulation = getattr(config.solver, "formulation", None)
    if formulation is None:
        return
    allowed = FORMULATIONS_BY_EQUATION[config.problem.equation]
    if formulation not in allowed:
        raise ConfigError("solver.formulation", f"{formulation!r} does not solve the {config.problem.equation} "
                                                f"equation; allowed: {', '.join(allowed)}", source=source)
    multi = isinstance(config.problem.eps, (list, tuple))
    training = getattr(config.solver, "training", None)
    encoding = getattr(config.solver, "eps_encoding", None)
    if encoding is not None and encoding.kind != "input" and not multi:
        raise ConfigError("solver.eps_encoding", f"{encoding.kind!r} needs a multi-task problem: give problem.eps as "
                                                 "a list of Knudsen numbers, or for one eps set "
                                                 "solver.eps_encoding={kind: input} (the default)", source=source)
    if training is not None and not multi:
        for key in ("aggregator", "weighting"):
            if getattr(training, key) is not None:
                raise ConfigError(f"solver.training.{key}", "needs a multi-task problem: give problem.eps as a "
                                                            "list of Knudsen numbers", source=source)
    if training is not None:
        build_rule(training, source)
    if multi and config.reference.data is not None:
        raise ConfigError("reference.data", "a data file holds one eps; with a list of eps the reference is our "
                                            "classical solver at each eps (drop reference.data)", source=source)
    if config.problem.equation != "bgk":
        for key in ("exact_walls", "f_form"):
            if getattr(config.solver, key, None) is not None:
                raise ConfigError(f"solver.{key}", f"applies to the bgk equation only, not to "
                                                   f"{config.problem.equation}", source=source)


def _check_files(config: RunConfig, base_dir: Path, source: str) -> None:
    for key in ("data", "published"):
        name = getattr(config.reference, key)
        if name is not None and not (base_dir / name).is_file():
            raise ConfigError(f"reference.{key}", f"file not found: {base_dir / name}", source=source)


# keys that do not change what a run computes (a finished run that differs from a
# requested configuration only in these is the same run)
BOOKKEEPING = ("solver.device", "solver.training.log_every", "solver.training.checkpoint_every")


def config_differences(a: str | Mapping, b: str | Mapping, *, ignore: Sequence[str] = ()) -> list[str]:
    """Dotted keys at which two resolved configurations (YAML text or dicts) differ,
    :data:`BOOKKEEPING` keys and those under ``ignore`` (dotted prefixes) aside; ``[]``
    when they describe the same run."""
    def flat(node, prefix=""):
        if isinstance(node, Mapping):
            out = {}
            for k, v in node.items():
                out.update(flat(v, f"{prefix}.{k}" if prefix else str(k)))
            return out or {prefix: {}}
        return {prefix: node}

    fa, fb = (flat(yaml.safe_load(x) if isinstance(x, str) else x or {}) for x in (a, b))
    skip = tuple(BOOKKEEPING) + tuple(ignore)
    return [k for k in sorted(set(fa) | set(fb))
            if not any(k == p or k.startswith(p + ".") for p in skip) and fa.get(k, ...) != fb.get(k, ...)]


def load_run(config: str | Path | Mapping, *, solver: str | None = None,
             overrides: Sequence[str] | Mapping[str, Any] = ()) -> LoadedRun:
    """Load and validate a run (see module doc). ``solver`` replaces the problem's
    solver preset by name (e.g. ``"reference"``); ``overrides`` are ``key=value``
    strings (or a mapping of dotted keys) applied after the preset is resolved."""
    if isinstance(config, Mapping):
        data, base_dir, source = copy.deepcopy(dict(config)), Path.cwd(), "<dict>"
    else:
        path = Path(config)
        data, base_dir, source = read_yaml(path, what="problem file"), path.resolve().parent, str(path)
    if isinstance(overrides, str):          # one KEY=VALUE string
        overrides = [overrides]
    if isinstance(overrides, Mapping):
        overrides = override_strings(overrides)
    if solver is not None:
        data["solver"] = solver
    if "solver" not in data:
        raise ConfigError("solver", "missing: name a preset from solvers/ "
                                    f"({', '.join(available_presets(base_dir)) or 'none found'})", source=source)
    data["solver"] = resolve_solver(data["solver"], base_dir, source)
    try:
        data = apply_overrides(data, list(overrides))
        cfg = build(RunConfig, data, source=source)
    except ConfigError as exc:
        if exc.source is None:
            raise ConfigError(exc.path, exc.message, source=source) from None
        raise
    resolved = to_dict(cfg)
    _check_expressions(resolved, source)
    _check_files(cfg, base_dir, source)
    _check_pde(cfg, source)
    _check_output(cfg, source)
    _check_formulation(cfg, source)
    if _write_out_rule_options(cfg, resolved):
        cfg = build(RunConfig, resolved, source=source)
    return LoadedRun(cfg, resolved, base_dir, source)

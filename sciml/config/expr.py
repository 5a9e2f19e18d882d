"""Safe math expressions for problem data written in YAML.

``Expression("1 + cos(2*pi*x)", ("x", "v"))`` parses the text once with
:mod:`ast` and walks a whitelist (numbers, the declared variables, ``pi`` and
``e``, ``+ - * / ** ^``, comparisons giving 0/1 masks and a fixed set of
functions), compiling it into a tree of closures; nothing is ever passed to
``eval``. Calling it evaluates with torch when any input is a tensor (dtype,
device and autograd kept) and with numpy otherwise; the result always has the
broadcast shape of the declared inputs, constants included.
"""
from __future__ import annotations

import ast
import difflib
import functools
import math
import operator

import numpy as np
import torch

from .errors import ConfigError

__all__ = ["Expression", "parse_expression", "FUNCTIONS", "CONSTANTS"]

CONSTANTS = {"pi": math.pi, "e": math.e}

# name -> number of arguments
FUNCTIONS = {
    "sin": 1, "cos": 1, "tan": 1, "exp": 1, "log": 1, "sqrt": 1, "abs": 1, "tanh": 1, "sinh": 1, "cosh": 1,
    "arctan": 1, "atan": 1, "arcsin": 1, "asin": 1, "arccos": 1, "acos": 1, "sign": 1, "heaviside": 1, "erf": 1,
    "where": 3, "min": 2, "max": 2,
}

_BINARY = {ast.Add: "add", ast.Sub: "sub", ast.Mult: "mul", ast.Div: "div", ast.Pow: "pow"}
_UNARY = {ast.USub: "neg", ast.UAdd: "pos"}
_COMPARE = {ast.Lt: "lt", ast.LtE: "le", ast.Gt: "gt", ast.GtE: "ge", ast.Eq: "eq", ast.NotEq: "ne"}
_SYMBOL = {ast.Mod: "%", ast.FloorDiv: "//", ast.MatMult: "@", ast.BitAnd: "&", ast.BitOr: "|",
           ast.BitXor: "^", ast.LShift: "<<", ast.RShift: ">>", ast.Not: "not", ast.Invert: "~",
           ast.Is: "is", ast.IsNot: "is not", ast.In: "in", ast.NotIn: "not in"}
_MAX_LENGTH = 10_000


@functools.lru_cache(maxsize=None)
def _numpy_ops(dtype) -> dict:
    from scipy.special import erf

    def mask(b):
        return np.asarray(b, dtype=dtype)

    return {
        "neg": np.negative, "pos": np.positive, "add": np.add, "sub": np.subtract, "mul": np.multiply,
        "div": np.divide, "pow": np.power,
        "lt": lambda a, b: mask(np.less(a, b)), "le": lambda a, b: mask(np.less_equal(a, b)),
        "gt": lambda a, b: mask(np.greater(a, b)), "ge": lambda a, b: mask(np.greater_equal(a, b)),
        "eq": lambda a, b: mask(np.equal(a, b)), "ne": lambda a, b: mask(np.not_equal(a, b)),
        "sin": np.sin, "cos": np.cos, "tan": np.tan, "exp": np.exp, "log": np.log, "sqrt": np.sqrt,
        "abs": np.abs, "tanh": np.tanh, "sinh": np.sinh, "cosh": np.cosh, "arctan": np.arctan, "atan": np.arctan,
        "arcsin": np.arcsin, "asin": np.arcsin, "arccos": np.arccos, "acos": np.arccos, "sign": np.sign,
        "heaviside": lambda x: mask(np.greater_equal(x, 0)), "erf": erf,
        "where": lambda c, a, b: np.where(np.not_equal(c, 0), a, b), "min": np.minimum, "max": np.maximum,
    }


@functools.lru_cache(maxsize=None)
def _torch_ops(dtype, device) -> dict:
    def lift(a):
        return a if isinstance(a, torch.Tensor) else torch.as_tensor(a, dtype=dtype, device=device)

    def mask(b):
        return b.to(dtype)

    return {
        "neg": operator.neg, "pos": operator.pos, "add": operator.add, "sub": operator.sub, "mul": operator.mul,
        "div": operator.truediv, "pow": operator.pow,
        "lt": lambda a, b: mask(a < b), "le": lambda a, b: mask(a <= b), "gt": lambda a, b: mask(a > b),
        "ge": lambda a, b: mask(a >= b), "eq": lambda a, b: mask(lift(a) == b), "ne": lambda a, b: mask(lift(a) != b),
        "sin": torch.sin, "cos": torch.cos, "tan": torch.tan, "exp": torch.exp, "log": torch.log,
        "sqrt": torch.sqrt, "abs": torch.abs, "tanh": torch.tanh, "sinh": torch.sinh, "cosh": torch.cosh,
        "arctan": torch.atan, "atan": torch.atan, "arcsin": torch.asin, "asin": torch.asin, "arccos": torch.acos,
        "acos": torch.acos, "sign": torch.sign, "heaviside": lambda x: mask(x >= 0), "erf": torch.erf,
        "where": lambda c, a, b: torch.where(lift(c) != 0, lift(a), lift(b)),
        "min": lambda a, b: torch.minimum(lift(a), lift(b)), "max": lambda a, b: torch.maximum(lift(a), lift(b)),
    }


def _apply(name: str, kids: list):
    """A node applying operation ``name``: folded to a float when all ``kids`` are
    constants, else a closure ``(env, ops) -> value``."""
    if all(isinstance(k, float) for k in kids):
        with np.errstate(all="ignore"):
            return float(_numpy_ops(np.dtype(np.float64))[name](*kids))
    getters = [k if callable(k) else (lambda env, ops, c=k: c) for k in kids]
    if len(getters) == 1:
        g, = getters
        return lambda env, ops: ops[name](g(env, ops))
    if len(getters) == 2:
        g, h = getters
        return lambda env, ops: ops[name](g(env, ops), h(env, ops))
    return lambda env, ops: ops[name](*[g(env, ops) for g in getters])


class Expression:
    """A parsed, whitelisted math expression in the named ``variables``.

    ``expr(**values)`` evaluates it: every declared variable must be given (extra
    names are ignored); torch tensors -> a tensor (dtype/device of the inputs,
    differentiable), numpy arrays -> an array, Python numbers only -> a float.
    The result has the broadcast shape of the declared inputs.
    """

    def __init__(self, text: str, variables: tuple[str, ...], *, path: str = ""):
        if not isinstance(text, str):
            raise ConfigError(path, f"expected an expression string, got {text!r}")
        variables = tuple(variables)
        for v in variables:
            if not (isinstance(v, str) and v.isidentifier()):
                raise ValueError(f"variable names must be identifiers, got {v!r}")
        self._text, self._variables, self._path = text.strip(), variables, path
        self._used: set[str] = set()
        self._root = self._parse()
        self._used = frozenset(self._used)

    # -- properties ----------------------------------------------------------------------------
    @property
    def text(self) -> str:
        return self._text

    @property
    def variables(self) -> tuple[str, ...]:
        return self._variables

    @property
    def used(self) -> frozenset:
        return self._used

    @property
    def is_constant(self) -> bool:
        return not self._used

    def __repr__(self) -> str:
        return f"Expression({self._text!r}, variables={self._variables!r})"

    def __eq__(self, other) -> bool:
        return isinstance(other, Expression) and (self._text, self._variables) == (other._text, other._variables)

    def __hash__(self) -> int:
        return hash((self._text, self._variables))

    def __reduce__(self):
        return (_rebuild, (self._text, self._variables, self._path))

    # -- parsing -------------------------------------------------------------------------------
    def _error(self, problem: str):
        allowed = (f"allowed variables: {', '.join(self._variables) or '(none)'}; constants: {', '.join(CONSTANTS)}; "
                   f"functions: {', '.join(sorted(FUNCTIONS))}")
        raise ConfigError(self._path, f"{problem} in expression {self._text!r}; {allowed}")

    def _parse(self):
        if not self._text:
            self._error("empty expression")
        if len(self._text) > _MAX_LENGTH:
            self._error(f"expression longer than {_MAX_LENGTH} characters")
        # '^' means power. Replacing it in the raw text is safe: outside string
        # literals it can only be an operator, and string literals are rejected.
        self._src = " ".join(self._text.replace("^", "**").splitlines())
        try:
            tree = ast.parse(self._src, mode="eval")
        except SyntaxError as exc:
            self._error(f"invalid syntax{'' if exc.msg == 'invalid syntax' else ' (' + exc.msg + ')'}"
                        f" at column {exc.offset}")
        except (ValueError, RecursionError, MemoryError):
            self._error("expression too long or nested too deeply to parse")
        try:
            return self._compile(tree.body)
        except RecursionError:
            self._error("expression nested too deeply")

    def _seg(self, node) -> str:
        return ast.get_source_segment(self._src, node) or type(node).__name__

    def _compile(self, node):
        if isinstance(node, ast.Constant):
            if type(node.value) in (int, float):
                try:
                    value = float(node.value)
                except OverflowError:
                    value = math.inf
                if not math.isfinite(value):
                    self._error(f"number {self._seg(node)} is too large")
                return value
            kind = "strings are" if isinstance(node.value, (str, bytes)) else f"{node.value!r} is"
            self._error(f"{kind} not allowed: {self._seg(node)!r}")
        if isinstance(node, ast.Name):
            if node.id in self._variables:
                self._used.add(node.id)
                name = node.id
                return lambda env, ops: env[name]
            if node.id in CONSTANTS:
                return CONSTANTS[node.id]
            if node.id in FUNCTIONS:
                self._error(f"function {node.id!r} used without arguments")
            hint = difflib.get_close_matches(node.id, [*self._variables, *CONSTANTS, *FUNCTIONS], n=1)
            self._error(f"unknown name {node.id!r}" + (f" (did you mean {hint[0]!r}?)" if hint else ""))
        if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
            return _apply(_UNARY[type(node.op)], [self._compile(node.operand)])
        if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
            return _apply(_BINARY[type(node.op)], [self._compile(node.left), self._compile(node.right)])
        if isinstance(node, ast.Compare) and all(type(op) in _COMPARE for op in node.ops):
            sides = [self._compile(n) for n in [node.left, *node.comparators]]
            out = _apply(_COMPARE[type(node.ops[0])], sides[:2])
            for op, a, b in zip(node.ops[1:], sides[1:], sides[2:]):  # a < b < c: (a < b) * (b < c)
                out = _apply("mul", [out, _apply(_COMPARE[type(op)], [a, b])])
            return out
        if isinstance(node, ast.Call):
            if not isinstance(node.func, ast.Name):
                self._error(f"only calls of the allowed functions are possible, not {self._seg(node.func)!r}")
            name = node.func.id
            if name not in FUNCTIONS:
                hint = difflib.get_close_matches(name, list(FUNCTIONS), n=1)
                self._error(f"unknown function {name!r}" + (f" (did you mean {hint[0]!r}?)" if hint else ""))
            if node.keywords:
                self._error(f"keyword arguments are not allowed in {self._seg(node)!r}")
            if any(isinstance(a, ast.Starred) for a in node.args):
                self._error(f"starred arguments are not allowed in {self._seg(node)!r}")
            if len(node.args) != FUNCTIONS[name]:
                n = FUNCTIONS[name]
                self._error(f"{name}() takes {n} argument{'s' if n > 1 else ''}, got {len(node.args)}")
            return _apply(name, [self._compile(a) for a in node.args])
        if isinstance(node, ast.Attribute):
            self._error(f"attribute access is not allowed: {self._seg(node)!r}")
        if isinstance(node, ast.Subscript):
            self._error(f"indexing is not allowed: {self._seg(node)!r}")
        if isinstance(node, ast.Lambda):
            self._error(f"lambda is not allowed: {self._seg(node)!r}")
        if isinstance(node, (ast.BoolOp, ast.IfExp)):
            self._error(f"{self._seg(node)!r} is not allowed; use where(cond, a, b) and products of comparisons")
        op = getattr(node, "op", None) or next(iter(getattr(node, "ops", [])), None)
        if op is not None:
            self._error(f"operator {_SYMBOL.get(type(op), type(op).__name__)!r} is not allowed in {self._seg(node)!r}")
        self._error(f"{type(node).__name__} is not allowed: {self._seg(node)!r}")

    # -- evaluation ----------------------------------------------------------------------------
    def __call__(self, **values):
        missing = [v for v in self._variables if v not in values]
        if missing:
            raise TypeError(f"expression {self._text!r} needs the variable{'s' if len(missing) > 1 else ''} "
                            f"{', '.join(map(repr, missing))} (got {', '.join(map(repr, values)) or 'none'})")
        vals = [values[v] for v in self._variables]
        if any(isinstance(v, torch.Tensor) for v in vals):
            return self._eval_torch(vals)
        return self._eval_numpy(vals)

    def _eval_torch(self, vals):
        tensors = [v for v in vals if isinstance(v, torch.Tensor)]
        floating = [t.dtype for t in tensors if t.is_floating_point()]
        dtype = functools.reduce(torch.promote_types, floating) if floating else torch.get_default_dtype()
        device = tensors[0].device
        env = {name: (v.to(dtype) if v.dtype != dtype else v) if isinstance(v, torch.Tensor)
               else torch.as_tensor(v, dtype=dtype, device=device) for name, v in zip(self._variables, vals)}
        shape = torch.broadcast_shapes(*(t.shape for t in env.values()))
        root = self._root
        if not callable(root):
            return torch.full(shape, root, dtype=dtype, device=device)
        out = root(env, _torch_ops(dtype, device))
        if out.dtype != dtype:
            out = out.to(dtype)
        return out if out.shape == shape else out.expand(shape)

    def _eval_numpy(self, vals):
        scalar = all(np.ndim(v) == 0 and not isinstance(v, np.ndarray) for v in vals)
        arrays = [np.asarray(v) for v in vals]
        arrays = [a if a.dtype.kind == "f" else a.astype(np.float64) for a in arrays]
        dtype = np.result_type(*arrays) if arrays else np.dtype(np.float64)
        shape = np.broadcast_shapes(*(a.shape for a in arrays))
        root = self._root
        if callable(root):
            with np.errstate(all="ignore"):
                out = root(dict(zip(self._variables, arrays)), _numpy_ops(dtype))
        else:
            out = root
        if scalar:
            return float(out)
        out = np.asarray(out, dtype=dtype)
        return out if out.shape == shape else np.broadcast_to(out, shape).copy()


def _rebuild(text, variables, path):
    return Expression(text, variables, path=path)


def parse_expression(value, variables, *, path: str = "") -> Expression:
    """A string or a number (a constant) -> :class:`Expression` in ``variables``;
    anything else, or an invalid expression, raises :class:`ConfigError` at ``path``."""
    if isinstance(value, Expression):
        return value if value.variables == tuple(variables) else Expression(value.text, variables, path=path)
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise ConfigError(path, f"expected an expression (a string such as '1 + cos(2*pi*x)') or a number, "
                                f"got {value!r}")
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ConfigError(path, f"expected a finite number, got {value!r}")
        value = repr(value)
    return Expression(str(value), variables, path=path)

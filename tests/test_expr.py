"""sciml.config.expr: whitelisted math expressions, numpy and torch evaluation."""
from __future__ import annotations

import math
import pickle

import numpy as np
import pytest
import torch
from scipy.special import erf

from sciml.config.errors import ConfigError
from sciml.config.expr import FUNCTIONS, Expression, parse_expression

X = np.linspace(-0.9, 0.9, 13)          # inside the domain of every function tested
P = np.linspace(0.05, 2.0, 13)          # positive values


@pytest.mark.parametrize("text, reference", [
    ("1 + cos(2*pi*x)", lambda x, v: 1 + np.cos(2 * np.pi * x)),
    ("(1 + sin(2*pi*x - pi/2)) * 3/sqrt(2*pi) * exp(-(3*v)^2/2)",
     lambda x, v: (1 + np.sin(2 * np.pi * x - np.pi / 2)) * 3 / np.sqrt(2 * np.pi) * np.exp(-(3 * v) ** 2 / 2)),
    ("tan(x) + tanh(20*x) + sinh(x) - cosh(v)", lambda x, v: np.tan(x) + np.tanh(20 * x) + np.sinh(x) - np.cosh(v)),
    ("arctan(x) + atan(v) + arcsin(x) + asin(v) + arccos(x) + acos(v)",
     lambda x, v: np.arctan(x) + np.arctan(v) + np.arcsin(x) + np.arcsin(v) + np.arccos(x) + np.arccos(v)),
    ("log(2 + x) + exp(v) + abs(x) * sign(v)", lambda x, v: np.log(2 + x) + np.exp(v) + np.abs(x) * np.sign(v)),
    ("sign(sin(pi*x))*abs(sin(pi*x))^(3/7)",
     lambda x, v: np.sign(np.sin(np.pi * x)) * np.abs(np.sin(np.pi * x)) ** (3 / 7)),
    ("erf(x/sqrt(2)) + e^v", lambda x, v: erf(x / np.sqrt(2)) + np.e ** v),
    ("min(x, v) - max(x, v)", lambda x, v: np.minimum(x, v) - np.maximum(x, v)),
    ("where(x < 0, 0, 1)", lambda x, v: np.where(x < 0, 0.0, 1.0)),
    ("heaviside(x) + heaviside(0*x)", lambda x, v: (x >= 0) + 1.0),
    ("(x < v) + 2*(x <= v) + 4*(x > v) + 8*(x >= v) + 16*(x == x) + 32*(x != v)",
     lambda x, v: (x < v) + 2.0 * (x <= v) + 4 * (x > v) + 8 * (x >= v) + 16 + 32 * (x != v)),
    ("-1 < x <= 0.5", lambda x, v: ((-1 < x) & (x <= 0.5)).astype(float)),
    ("-x^2 + 2^3^2 - 10**-1 + +x", lambda x, v: -(x ** 2) + 2.0 ** 9 - 0.1 + x),
    ("t*x^2", None),
])
def test_numpy_values_match_reference_float64(text, reference):
    x, v = X[:, None], X[::-1][None, :] * 0.7
    if reference is None:                    # expression in t and x
        e = Expression(text, ("t", "x"))
        out = e(t=P[:, None], x=X[None, :])
        np.testing.assert_allclose(out, P[:, None] * X[None, :] ** 2, rtol=1e-15, atol=0)
        return
    e = Expression(text, ("x", "v"))
    out = e(x=x, v=v)
    assert isinstance(out, np.ndarray) and out.dtype == np.float64 and out.shape == (13, 13)
    np.testing.assert_allclose(out, np.broadcast_to(reference(x, v), (13, 13)), rtol=1e-13, atol=1e-15)
    # torch float64 gives the same numbers
    t = e(x=torch.from_numpy(x), v=torch.from_numpy(v))
    assert t.dtype == torch.float64 and t.shape == (13, 13)
    np.testing.assert_allclose(t.numpy(), out, rtol=1e-13, atol=1e-15)


def test_caret_and_double_star_agree():
    for a, b in [("x^2", "x**2"), ("2^x^2", "2**x**2"), ("-x^(1/3)", "-x**(1/3)"), ("3*x^-1", "3*x**-1")]:
        ea, eb = Expression(a, ("x",)), Expression(b, ("x",))
        np.testing.assert_array_equal(ea(x=P), eb(x=P))
    assert Expression("2^3^2", ()).__call__() == 512.0
    assert Expression("-2^2", ())() == -4.0


def test_constants_broadcast_to_the_input_shape():
    zero = Expression("0", ("x", "v"))
    assert zero.is_constant and zero.used == frozenset()
    out = zero(x=np.ones((5, 1)), v=np.ones((1, 3)))
    assert isinstance(out, np.ndarray) and out.shape == (5, 3) and not out.any()
    out[0, 0] = 1.0                          # writable, not a broadcast view
    t = Expression("3/sqrt(2*pi)", ("x",))(x=torch.ones(7, 1, dtype=torch.float32))
    assert t.shape == (7, 1) and t.dtype == torch.float32
    torch.testing.assert_close(t, torch.full((7, 1), 3 / math.sqrt(2 * math.pi)))
    assert Expression("1 + 1", ("x",))(x=0.5) == 2.0 and isinstance(Expression("1", ("x",))(x=0.5), float)
    # non-constant expressions also broadcast over all declared inputs
    out = Expression("x", ("x", "v"))(x=np.arange(4.0)[:, None], v=np.zeros((1, 2)))
    assert out.shape == (4, 2)
    np.testing.assert_array_equal(out[:, 1], np.arange(4.0))


def test_python_floats_give_a_float():
    e = Expression("t*x^2", ("t", "x"))
    assert e(t=2.0, x=3) == 18.0 and isinstance(e(t=2.0, x=3), float)


def test_used_variables_and_properties():
    e = Expression(" t*x^2 ", ("t", "x", "v"), path="a.b")
    assert e.text == "t*x^2" and e.variables == ("t", "x", "v")
    assert e.used == {"t", "x"} and not e.is_constant
    assert repr(e) == "Expression('t*x^2', variables=('t', 'x', 'v'))"
    assert e == Expression("t*x^2", ("t", "x", "v")) and hash(e) == hash(Expression("t*x^2", ("t", "x", "v")))
    assert e != Expression("t*x^2", ("t", "x"))
    back = pickle.loads(pickle.dumps(e))
    assert back == e and back(t=1.0, x=2.0, v=0.0) == 4.0
    assert Expression("pi + e", ("x",)).is_constant


def test_multiline_yaml_text():
    e = Expression("1 +\n  x", ("x",))
    assert e(x=2.0) == 3.0


# ---- torch -----------------------------------------------------------------------------------
def test_autograd_through_expression():
    x = torch.linspace(0, 1, 33, dtype=torch.float64).requires_grad_(True)
    y = Expression("sin(2*pi*x)", ("x",))(x=x)
    (g,) = torch.autograd.grad(y.sum(), x, create_graph=True)
    torch.testing.assert_close(g, 2 * math.pi * torch.cos(2 * math.pi * x), rtol=1e-12, atol=1e-12)
    (g2,) = torch.autograd.grad(g.sum(), x)
    torch.testing.assert_close(g2, -(2 * math.pi) ** 2 * torch.sin(2 * math.pi * x), rtol=1e-10, atol=1e-10)


def test_autograd_through_where_min_max_and_power():
    x = torch.tensor([-0.5, 0.25, 2.0], dtype=torch.float64, requires_grad=True)
    y = Expression("where(x < 0, x^2, 3*x) + max(x, 1) + min(x, 0)", ("x",))(x=x)
    (g,) = torch.autograd.grad(y.sum(), x)
    torch.testing.assert_close(g, torch.tensor([2 * -0.5 + 1, 3.0, 3.0 + 1], dtype=torch.float64))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16])
def test_torch_dtype_kept(dtype):
    x = torch.linspace(0, 1, 5, dtype=dtype)
    for text in ["1 + cos(2*pi*x)", "0", "where(x < 0.5, 1, 2)", "x > 0.5", "heaviside(x - 0.5)"]:
        out = Expression(text, ("x", "v"))(x=x, v=0.25)
        assert out.dtype == dtype and out.shape == (5,), text


def test_torch_device_kept():
    devices = ["meta"] + (["cuda"] if torch.cuda.is_available() else [])
    for device in devices:
        x = torch.zeros(3, 1, dtype=torch.float64, device=device)
        for text in ["where(x < 0, 0, 1) + max(x, 0.5) + erf(v) + 2", "7"]:
            out = Expression(text, ("x", "v"))(x=x, v=np.float64(0.5))
            assert out.device.type == device and out.dtype == torch.float64 and out.shape == (3, 1)


def test_mixed_inputs_and_promotion():
    e = Expression("x + v", ("x", "v"))
    out = e(x=torch.ones(2, 1, dtype=torch.float32), v=np.array([[1.0, 2.0, 3.0]]))
    assert isinstance(out, torch.Tensor) and out.dtype == torch.float32 and out.shape == (2, 3)
    out = e(x=torch.ones(2, dtype=torch.float32), v=torch.ones(2, dtype=torch.float64))
    assert out.dtype == torch.float64
    out = e(x=torch.arange(3), v=1)                 # integer tensors -> the default float dtype
    assert out.dtype == torch.get_default_dtype()
    torch.testing.assert_close(out, torch.tensor([1.0, 2.0, 3.0]))
    f32 = Expression("x^-1 + 1", ("x",))(x=np.array([1, 2], dtype=np.float32))
    assert f32.dtype == np.float32
    np.testing.assert_allclose(Expression("x^-1", ("x",))(x=np.array([1, 2])), [1.0, 0.5])  # ints -> float


def test_missing_variable_is_a_type_error_and_extras_are_ignored():
    e = Expression("x + 1", ("x", "v"))
    with pytest.raises(TypeError, match="'v'"):
        e(x=1.0)
    with pytest.raises(TypeError, match="'x', 'v'"):
        e()
    assert e(x=1.0, v=2.0, t=np.zeros(100)) == 2.0


# ---- rejection -------------------------------------------------------------------------------
@pytest.mark.parametrize("text, piece", [
    ("__import__('os')", "unknown function '__import__'"),
    ("x.__class__", "attribute access is not allowed: 'x.__class__'"),
    ("(lambda: 1)()", "lambda"),
    ("lambda: 1", "lambda is not allowed"),
    ("open('f')", "unknown function 'open'"),
    ("x[0]", "indexing is not allowed: 'x[0]'"),
    ("'a'", "strings are not allowed: \"'a'\""),
    ("foo(x)", "unknown function 'foo'"),
    ("y", "unknown name 'y'"),
    ("sinn(x)", "did you mean 'sin'"),
    ("sin", "function 'sin' used without arguments"),
    ("sin(x, 1)", "sin() takes 1 argument, got 2"),
    ("where(x, 1)", "where() takes 3 arguments, got 2"),
    ("sin(x=1)", "keyword arguments are not allowed"),
    ("sin(*x)", "starred arguments are not allowed"),
    ("x % 2", "operator '%' is not allowed"),
    ("x // 2", "operator '//' is not allowed"),
    ("x & 1", "operator '&' is not allowed"),
    ("not x", "operator 'not' is not allowed"),
    ("x in x", "operator 'in' is not allowed"),
    ("x and 1", "use where(cond, a, b)"),
    ("1 if x else 0", "use where(cond, a, b)"),
    ("True", "True is not allowed"),
    ("None", "None is not allowed"),
    ("1j", "1j is not allowed"),
    ("[x]", "List is not allowed"),
    ("x +", "invalid syntax"),
    ("x = 1", "invalid syntax"),
    ("", "empty expression"),
    ("(" * 300 + "x" + ")" * 300, "expression"),
    ("+".join(["x"] * 3000), "expression"),
    ("1" + "0" * 400, "too large"),
])
def test_rejected_inputs_name_the_token_and_the_allowed_names(text, piece):
    with pytest.raises(ConfigError) as info:
        Expression(text, ("x",), path="problem.initial.f")
    err = info.value
    assert err.path == "problem.initial.f"
    assert piece in err.message, err.message
    if text and len(text) < 100 and "syntax" not in piece:
        assert "allowed variables: x; constants: pi, e; functions:" in err.message
        assert all(name in err.message for name in FUNCTIONS)
    assert str(err).startswith("config error at problem.initial.f: ")


def test_huge_constant_exponent_is_just_inf():
    assert Expression("9^9^9^9", ("x",))(x=0.0) == math.inf


def test_bad_variable_names_are_a_programming_error():
    with pytest.raises(ValueError):
        Expression("x", ("x y",))


# ---- parse_expression ------------------------------------------------------------------------
def test_parse_expression_accepts_strings_and_numbers():
    assert parse_expression("t*x^2", ("t", "x"))(t=2.0, x=3.0) == 18.0
    c = parse_expression(0, ("x",))
    assert c.is_constant and c.text == "0" and c(x=np.ones(4)).tolist() == [0.0] * 4
    assert parse_expression(1e-8, ("x",))(x=1.0) == 1e-8
    assert parse_expression(-2.5, ("x",))(x=1.0) == -2.5
    e = Expression("x", ("x",))
    assert parse_expression(e, ("x",)) is e
    assert parse_expression(e, ("x", "v")).variables == ("x", "v")


@pytest.mark.parametrize("value", [True, None, [1, 2], {"a": 1}, float("nan"), float("inf")])
def test_parse_expression_rejects_other_values(value):
    with pytest.raises(ConfigError) as info:
        parse_expression(value, ("x",), path="problem.boundary.left.f")
    assert info.value.path == "problem.boundary.left.f"


def test_parse_expression_checks_variables():
    with pytest.raises(ConfigError, match="unknown name 'v'"):
        parse_expression("x*v", ("x",), path="problem.initial.rho")

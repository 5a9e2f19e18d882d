import math

import pytest
import torch

from sciml.domain import Box, Uniform, VelocitySpace
from sciml.nn import MLP, Even, Field, Odd, ResNet, TimesExp, build_field
from sciml.residual import ENGINES, QuadratureProduct, derivatives, moments


def analytic(p):
    t, x = p["t"], p["x"]
    return torch.stack([torch.sin(2 * t) * torch.exp(x), x**3 * t**2 + torch.cos(x * t)], dim=-1)


def exact_derivs(t, x):
    c = torch.cos(x * t)
    s = torch.sin(x * t)
    return {
        ("t",): torch.stack([2 * torch.cos(2 * t) * torch.exp(x), 2 * x**3 * t - x * s], -1),
        ("x",): torch.stack([torch.sin(2 * t) * torch.exp(x), 3 * x**2 * t**2 - t * s], -1),
        ("x", "x"): torch.stack([torch.sin(2 * t) * torch.exp(x), 6 * x * t**2 - t**2 * c], -1),
        ("t", "t"): torch.stack([-4 * torch.sin(2 * t) * torch.exp(x), 2 * x**3 - x**2 * c], -1),
        ("t", "x"): torch.stack([2 * torch.cos(2 * t) * torch.exp(x), 6 * x**2 * t - s - x * t * c], -1),
        ("x", "x", "x"): torch.stack([torch.sin(2 * t) * torch.exp(x), 6 * t**2 + t**3 * s], -1),
        ("t", "x", "x"): torch.stack([2 * torch.cos(2 * t) * torch.exp(x), 12 * x * t - 2 * t * c + x * t**2 * s], -1),
    }


@pytest.mark.parametrize("engine", sorted(ENGINES))
def test_derivatives_match_analytic_float64(engine):
    g = torch.Generator().manual_seed(0)
    p = Uniform(dtype=torch.float64).sample(Box.of(t=(0, 1), x=(-1, 1)), 200, g)
    want = exact_derivs(p["t"], p["x"])
    got = derivatives(analytic, p, list(want), engine=ENGINES[engine]())
    assert torch.allclose(got[()], analytic(p), atol=0, rtol=0)
    for idx, ref in want.items():
        assert torch.allclose(got[idx], ref, rtol=1e-12, atol=1e-12), idx
    # the order of names in a mixed index does not matter
    again = derivatives(analytic, p, [("x", "t")], engine=ENGINES[engine]())
    assert torch.allclose(again[("x", "t")], want[("t", "x")], rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("engine", sorted(ENGINES))
@pytest.mark.parametrize("fn, dx, dxx", [
    (lambda p: p["x"] ** 2, lambda x: 2 * x, lambda x: 2 + 0 * x),     # depends on x only
    (lambda p: 3.0 + 0 * p["x"].detach(), lambda x: 0 * x, lambda x: 0 * x),   # depends on nothing
])
def test_derivatives_in_a_coordinate_the_function_ignores_are_zero(engine, fn, dx, dxx):
    """u(x, y) = x^2 (or a constant): every derivative in y is zero, of any order and
    mixed, not an autograd error (an exact solution constant in one coordinate)."""
    g = torch.Generator().manual_seed(0)
    p = Uniform(dtype=torch.float64).sample(Box.of(x=(-1, 1), y=(0, 1)), 50, g)
    idx = [("x",), ("y",), ("x", "x"), ("y", "y"), ("x", "y"), ("y", "y", "y"), ("x", "x", "y")]
    got = derivatives(fn, p, idx, engine=ENGINES[engine]())
    x = p["x"]
    torch.testing.assert_close(got[("x",)].squeeze(-1), dx(x))
    torch.testing.assert_close(got[("x", "x")].squeeze(-1), dxx(x))
    for i in idx[3:] + [("y",)]:
        assert torch.count_nonzero(got[i]) == 0, i


def test_engines_agree_on_a_network_and_keep_parameter_gradients():
    torch.manual_seed(0)
    box = Box.of(t=(0, 0.1), x=(0, 1))
    field = build_field(box.intervals, width=16, depth=2).double()
    p = Uniform(dtype=torch.float64).sample(box, 64, torch.Generator().manual_seed(1))
    wrt = [("t",), ("x",), ("x", "x")]
    rev = derivatives(field, p, wrt, engine=ENGINES["reverse"]())
    fwd = derivatives(field, p, wrt, engine=ENGINES["forward"]())
    grads = []
    for d in (rev, fwd):
        assert all(torch.allclose(d[k], rev[k], rtol=1e-10, atol=1e-12) for k in wrt)
        field.zero_grad()
        (d[("x", "x")].pow(2).mean() + d[("t",)].pow(2).mean()).backward()
        grads.append(torch.cat([(q.grad if q.grad is not None else torch.zeros_like(q)).reshape(-1) for q in field.parameters()]))
    assert torch.allclose(grads[0], grads[1], rtol=1e-9, atol=1e-12)
    # finite-difference check of the first derivative
    h = 1e-6
    q = dict(p)
    q["x"] = p["x"] + h
    fd = (field(q) - field(p)) / h
    assert torch.allclose(fd, rev[("x",)], atol=1e-4)


def test_unknown_coordinate_is_a_clear_error():
    with pytest.raises(KeyError, match="'v'"):
        derivatives(analytic, {"t": torch.zeros(2), "x": torch.zeros(2)}, [("v",)])


@pytest.mark.parametrize("n", [8, 30])
def test_moments_exact_integrals_float64(n):
    vs = VelocitySpace.gauss_legendre(-10, 10, 64)
    x = torch.linspace(-0.5, 0.5, 7, dtype=torch.float64)
    rho, u, T = 1 + x**2, 0.3 * x, 1 + 0.5 * x

    def maxwellian(p):
        return (torch.as_tensor(1.0) * (1 + p["x"] ** 2) / torch.sqrt(2 * math.pi * (1 + 0.5 * p["x"]))
                * torch.exp(-(p["v"] - 0.3 * p["x"]) ** 2 / (2 * (1 + 0.5 * p["x"]))))

    m = moments(maxwellian, {"x": x}, vs, (lambda v: torch.ones_like(v), lambda v: v, lambda v: 0.5 * v**2))
    assert torch.allclose(m[:, 0, 0], rho, rtol=1e-12)
    assert torch.allclose(m[:, 1, 0], rho * u, rtol=1e-12, atol=1e-14)
    assert torch.allclose(m[:, 2, 0], 0.5 * rho * (u**2 + T), rtol=1e-12)
    # polynomial in v on [-1, 1]: exact with n nodes up to degree 2n-1
    vs1 = VelocitySpace.gauss_legendre(-1, 1, n)
    qp = QuadratureProduct({"x": x}, vs1)
    vals = qp.inputs["x"] * qp.inputs["v"] ** 4
    assert torch.allclose(qp.mean(vals.unsqueeze(-1))[:, 0], x / 5, rtol=1e-13, atol=1e-15)


def test_quadrature_product_is_one_batched_pass():
    calls = []

    def fn(p):
        calls.append(p["v"].shape[0])
        return p["x"] * p["v"] ** 2

    x = torch.linspace(0, 1, 5, dtype=torch.float64)
    vs = VelocitySpace.gauss_legendre(-1, 1, 6)
    m = moments(fn, {"x": x}, vs)
    assert calls == [30]
    assert torch.allclose(m[:, 0, 0], 2 * x / 3, rtol=1e-13)


def test_parity_wrappers_are_exact():
    box = Box.of(t=(0, 1), x=(0, 1), v=(-1, 1))
    p = Uniform().sample(box, 100, torch.Generator().manual_seed(0))
    q = dict(p, v=-p["v"])
    even = build_field(box.intervals, width=8, depth=2, parity=Even("v"))
    odd = build_field(box.intervals, width=8, depth=2, parity=Odd("v"), arch="resnet")
    assert torch.equal(even(p), even(q))
    assert torch.equal(odd(p), -odd(q))
    with pytest.raises(ValueError, match="parity"):
        build_field(Box.of(t=(0, 1)).intervals, parity=Even("v"))


def test_output_transforms_and_xavier():
    box = Box.of(t=(0, 1), x=(0, 1))
    f = build_field(box.intervals, width=8, depth=2, output=TimesExp("t"))
    p = Uniform().sample(box, 50, torch.Generator().manual_seed(0))
    p0 = dict(p, t=torch.zeros(50))
    assert torch.all(f(p0) == 0) and torch.all(f(p) > 0)
    net = MLP(3, 1, width=64, depth=3)
    w = net.net[2].weight
    assert abs(float(w.std()) - math.sqrt(2 / 128)) < 0.02 and torch.all(net.net[2].bias == 0)
    assert isinstance(ResNet(2, 1, width=8, depth=2)(torch.zeros(3, 2)), torch.Tensor)
    with pytest.raises(ValueError, match="activation"):
        MLP(1, 1, act="relu6")
    assert isinstance(Field, type)

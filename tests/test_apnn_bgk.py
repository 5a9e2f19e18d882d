"""BGK APNN (conservation formulation): exact wall values, residual terms checked
against independent numpy evaluations, a global Maxwellian zeroing every term,
and the end-to-end path on a small run."""
import math

import numpy as np
import pytest
import torch
from torch import nn

from sciml.domain import Box, Uniform, VelocitySpace
from sciml.physics.bgk import BGKProblem, MaxwellianWall, balance_metrics, conserved, maxwellian, primitive
from sciml.solvers.apnn_bgk import BGKConservation
from sciml.solvers.apnn_lt import NetSpec, PointSpec

D = torch.float64


def problem(state=(1.5, 0.0, 1.5), right=(0.625, 0.0, 0.75), init=None, eps=1e-3, nodes=64):
    init = init or (lambda x: 1.5 + 0 * x, lambda x: 0 * x, lambda x: 1.5 + 0 * x)
    return BGKProblem(eps=eps, domain=Box.of(t=(0.0, 0.1), x=(-0.5, 0.5)),
                      velocity=VelocitySpace.gauss_legendre(-10.0, 10.0, nodes),
                      rho0=init[0], u0=init[1], T0=init[2], left=MaxwellianWall(*state), right=MaxwellianWall(*right))


class Fn(nn.Module):
    """A fixed analytic function of named points, shaped (N, 1), as a field."""

    def __init__(self, fn):
        super().__init__()
        self.fn = fn
        self.dummy = nn.Parameter(torch.zeros((), dtype=D))

    def forward(self, p):
        return self.fn(p).unsqueeze(-1) + 0 * self.dummy


def model(prob, **kw):
    return BGKConservation(prob, net=NetSpec("mlp", 16, 2, "tanh"), points=PointSpec(64, 32, 32),
                           sampler=Uniform(dtype=torch.float64), **kw).double()


def test_walls_hold_exactly_for_any_network():
    prob = problem(state=(1.5, 0.2, 1.5), right=(0.625, -0.1, 0.75))
    m = model(prob)
    t = torch.rand(50, dtype=D)
    for side, x, (r, u, T) in [("left", -0.5, (1.5, 0.2, 1.5)), ("right", 0.5, (0.625, -0.1, 0.75))]:
        obs = m.observables(t, torch.full_like(t, x))
        assert torch.allclose(obs["rho"], torch.full_like(t, r), atol=1e-12)
        assert torch.allclose(obs["u"], torch.full_like(t, u), atol=1e-12)
        assert torch.allclose(obs["T"], torch.full_like(t, T), atol=1e-12)
    # positive everywhere inside
    tt, xx = torch.rand(1000, dtype=D) * 0.1, torch.rand(1000, dtype=D) - 0.5
    obs = m.observables(tt, xx)
    assert (obs["rho"] > 0).all() and (obs["T"] > 0).all()


def test_global_maxwellian_zeroes_every_term():
    st = (1.2, 0.3, 0.9)
    prob = problem(state=st, right=st, init=(lambda x: st[0] + 0 * x, lambda x: st[1] + 0 * x,
                                             lambda x: st[2] + 0 * x))
    m = model(prob)
    m.f = Fn(lambda p: maxwellian(st[0], st[1], st[2], p["v"]))
    m.rho, m.u, m.T = (Fn(lambda p, c=c: c + 0 * p["x"] * p["t"]) for c in st)
    terms = m.residuals(m.sample(torch.Generator().manual_seed(0)))
    assert set(terms) == set(m.default_weights)
    for k, v in terms.items():
        assert float(v.detach()) < 1e-20, (k, float(v.detach()))


def test_residual_terms_match_independent_numpy_evaluation():
    eps = 0.05
    prob = problem(eps=eps)
    m = model(prob)

    # smooth non-equilibrium f and macroscopic fields (numpy and torch versions)
    def f_np(t, x, v):
        return (1 + 0.3 * np.sin(2 * x + t) + 0.1 * v * np.cos(x)) * np.exp(-v ** 2 / 2) / np.sqrt(2 * np.pi)

    def f_t(p):
        t, x, v = p["t"], p["x"], p["v"]
        return (1 + 0.3 * torch.sin(2 * x + t) + 0.1 * v * torch.cos(x)) * torch.exp(-v ** 2 / 2) / math.sqrt(2 * math.pi)

    rho_np = lambda t, x: 1 + 0.2 * np.cos(x - 3 * t)       # noqa: E731
    u_np = lambda t, x: 0.1 * np.sin(x) * (1 + t)            # noqa: E731
    T_np = lambda t, x: 1 + 0.1 * x * x + 0.5 * t            # noqa: E731
    m.f = Fn(f_t)
    m.rho = Fn(lambda p: 1 + 0.2 * torch.cos(p["x"] - 3 * p["t"]))
    m.u = Fn(lambda p: 0.1 * torch.sin(p["x"]) * (1 + p["t"]))
    m.T = Fn(lambda p: 1 + 0.1 * p["x"] ** 2 + 0.5 * p["t"])
    batch = m.sample(torch.Generator().manual_seed(3))
    terms = m.residuals(batch)

    t = batch["interior"]["t"].numpy()[:, None]
    x = batch["interior"]["x"].numpy()[:, None]
    v, w = prob.velocity.nodes_np[None, :], prob.velocity.weights_np[None, :]
    h = 1e-5
    ft = (f_np(t + h, x, v) - f_np(t - h, x, v)) / (2 * h)
    fx = (f_np(t, x + h, v) - f_np(t, x - h, v)) / (2 * h)
    r, u, T = rho_np(t, x), u_np(t, x), T_np(t, x)
    kin = eps * (ft + v * fx) - (maxwellian(r, u, T, v) - f_np(t, x, v))
    assert float(terms["kinetic"]) == pytest.approx(np.mean((kin ** 2 * w).sum(1)) / 20.0, rel=1e-6)

    def U(tt):
        return np.stack(conserved(rho_np(tt, x), u_np(tt, x), T_np(tt, x)))[..., 0]

    U_t = (U(t + h) - U(t - h)) / (2 * h)
    mom = [(f_np(t, x, v) * w * phi).sum(1) for phi in (1 + 0 * v, v, 0.5 * v * v)]
    flux_x = [(fx * w * phi).sum(1) for phi in (v, v * v, 0.5 * v ** 3)]
    for k, (name, law) in enumerate(zip(("rho", "momentum", "energy"), ("mass", "momentum", "energy"))):
        assert float(terms[law]) == pytest.approx(np.mean((U_t[k] + flux_x[k]) ** 2), rel=1e-6)
        assert float(terms[f"consistency_{name}"]) == pytest.approx(np.mean((U(t)[k] - mom[k]) ** 2), rel=1e-9)

    # wall inflow: f minus the wall Maxwellian at incoming v
    left = batch["left"]
    assert (left["v"] >= 0).all() and (batch["right"]["v"] <= 0).all() and (left["x"] == -0.5).all()
    tl, vl = left["t"].numpy(), left["v"].numpy()
    tr, vr = batch["right"]["t"].numpy(), batch["right"]["v"].numpy()
    bl = np.mean((f_np(tl, -0.5, vl) - maxwellian(1.5, 0.0, 1.5, vl)) ** 2)
    br = np.mean((f_np(tr, 0.5, vr) - maxwellian(0.625, 0.0, 0.75, vr)) ** 2)
    assert float(terms["boundary_f"]) == pytest.approx(0.5 * (bl + br), rel=1e-9)
    ini = batch["initial"]
    xi, vi = ini["x"].numpy(), ini["v"].numpy()
    assert (ini["t"] == 0).all()
    assert float(terms["initial_rho"]) == pytest.approx(np.mean((rho_np(0, xi) - 1.5) ** 2), rel=1e-9)
    assert float(terms["initial_f"]) == pytest.approx(np.mean((f_np(0, xi, vi) - maxwellian(1.5, 0, 1.5, vi)) ** 2),
                                                      rel=1e-9)


def test_balance_metrics_and_primitive_round_trip():
    r, u, T = np.array([1.0, 2.0]), np.array([0.5, -0.2]), np.array([1.5, 0.7])
    back = primitive(*conserved(r, u, T))
    for a, b in zip(back, (r, u, T)):
        assert np.allclose(a, b)
    tot0 = np.array([1.0, 0.0, 2.0])
    fl, fr = np.array([[0.1, 0.2, 0.3]]), np.array([[0.05, -0.1, 0.1]])
    exact = balance_metrics(tot0, tot0 + fl - fr, fl, fr)
    assert max(exact.values()) < 1e-15
    off = balance_metrics(tot0, tot0 + fl - fr + np.array([[0.01, 0, 0]]), fl, fr)
    assert off["balance_rho"] > 1e-3 and off["balance_momentum"] < 1e-15


def test_relax_initial_is_rejected_for_bgk():
    with pytest.raises(ValueError, match="linear transport only"):
        model(problem(), relax_initial=True)


@pytest.mark.parametrize("case", ["I", "II", "III", "IV", "V"])
def test_quick_validation_entries(tmp_path, case):
    """Each BGK validation entry's CPU-sized variant: rho, rho u and E at t_end against
    our reference solver below bounds that the initial state itself does not meet
    (see the entries), plus the physical checks and figures of every run."""
    import h5py

    from sciml.validation import load_entry, reproduce

    torch.manual_seed(0)
    report = reproduce(load_entry(f"bgk_case_{case}"), quick=True, out=tmp_path / "q", progress=False)
    assert report.passed, report.text()
    assert set(report.values) == {"rel_l2_rho", "rel_l2_momentum", "rel_l2_energy"}
    m = report.metrics
    assert m["reference"] == "reference solver"
    assert {"published_rel_l2_rho", "published_rel_l2_momentum", "published_rel_l2_energy"} <= set(m)
    # mass, momentum and energy balance with the wall fluxes of f: a few per cent at this size
    assert max(m["balance_rho"], m["balance_momentum"], m["balance_energy"]) < 0.05
    assert m["min_f"] >= 0.0 and m["min_T"] > 0.0
    figs = {p.name for p in (tmp_path / "q" / "figures").iterdir()}
    assert {"density.png", "momentum.png", "energy.png", "training.png", "validation.png"} <= figs
    with h5py.File(tmp_path / "q" / "result.h5") as f:
        assert f["fields/energy"].shape == (4, 100) and "rel_l2_energy" in f["metrics"].attrs


@pytest.mark.parametrize("case", ["I", "II", "III", "IV", "V"])
def test_quick_tolerances_are_below_the_initial_states_error(case):
    """The quick bounds mean something: the initial state itself (a network that learned
    no dynamics) fails them for rho and E (its errors are quoted in the entries)."""
    from pathlib import Path

    from sciml.api import build_problem
    from sciml.config import load_run
    from sciml.physics.bgk import conserved
    from sciml.reference.bgk import solve_bgk
    from sciml.validation import load_entry

    root = Path(__file__).resolve().parents[1]
    entry = load_entry(f"bgk_case_{case}")
    prob = build_problem(load_run(root / entry.problem, solver="reference").config.problem)
    ref = solve_bgk(prob, nx=200, nv=64, output_times=[prob.t_end])
    U0 = conserved(*prob.initial_state(ref.x))
    err = {name: np.linalg.norm(U0[k] - ref.fields[name][-1]) / np.linalg.norm(ref.fields[name][-1])
           for k, name in [(0, "rho"), (2, "energy")]}
    quick = {m: t for m, _, t in entry.checks(quick=True)}
    assert err["rho"] > quick["rel_l2_rho"] and err["energy"] > quick["rel_l2_energy"], (err, quick)

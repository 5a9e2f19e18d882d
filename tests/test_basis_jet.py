"""Taylor-mode jets of the MetaColloc basis against nested ``torch.func.jvp``."""
import itertools
import time

import pytest
import torch
from torch.func import jvp

from sciml.nn.basis import DualBranchBasis, basis_jets
from sciml.residual import Forward, derivatives


def _basis(dim, H, seed=0):
    torch.manual_seed(seed)
    return DualBranchBasis(dim, H, frequencies=(1, 2, 4)).double().requires_grad_(False)


def _nested(f, x, dirs):
    """``D_{dirs[-1]} .. D_{dirs[0]} f(x)`` by nested jvp (each dir (dim,) or (N, dim))."""
    g = f
    for d in dirs:
        g = (lambda h, d: lambda y: jvp(h, (y,), (d.expand_as(y),))[1])(g, d)
    return g(x)


def _close(a, b, tol=1e-10):
    err = (a - b).abs().max() / b.abs().max().clamp_min(1e-300)
    assert err < tol, float(err)


def _indices(dim):
    return [()] + [idx for k in (1, 2, 3) for idx in itertools.combinations_with_replacement(range(dim), k)]


@pytest.mark.parametrize("dim,H", [(2, 16), (3, 64)])
def test_jet_matches_nested_jvp(dim, H):
    basis = _basis(dim, H)
    x = torch.rand(40, dim, dtype=torch.float64)
    for v in (torch.randn(dim, dtype=torch.float64), torch.randn(40, dim, dtype=torch.float64)):
        out = basis.jet(x, v, 3)
        assert len(out) == 4 and all(o.shape == (40, H) for o in out)
        _close(out[0], basis(x))
        for k in (1, 2, 3):
            _close(out[k], _nested(basis, x, [v] * k))
    assert len(basis.jet(x, torch.ones(dim, dtype=torch.float64), 1)) == 2


@pytest.mark.parametrize("dim,H", [(2, 32), (3, 48)])
def test_basis_jets_all_indices(dim, H):
    basis = _basis(dim, H, seed=1)
    x = torch.rand(30, dim, dtype=torch.float64)
    eye = torch.eye(dim, dtype=torch.float64)
    idx = _indices(dim)
    got = basis_jets(basis, x, idx)
    assert set(got) == set(idx)
    for i in idx:
        ref = basis(x) if not i else _nested(basis, x, [eye[j] for j in i])
        _close(got[i], ref)
    # unsorted keys come back as given, same values
    _close(basis_jets(basis, x, [(1, 0)])[(1, 0)], got[(0, 1)])


def test_autograd_cross_check():
    basis = _basis(2, 16, seed=2)
    x = torch.rand(5, 2, dtype=torch.float64)
    got = basis_jets(basis, x, [(0, 1)])[(0, 1)]
    for c in range(3):
        xr = x.clone().requires_grad_(True)
        g = torch.autograd.grad(basis(xr)[:, c].sum(), xr, create_graph=True)[0]
        h = torch.autograd.grad(g[:, 0].sum(), xr)[0][:, 1]
        _close(got[:, c], h)


def test_scale_factor():
    basis = _basis(2, 16, seed=3)
    lo = torch.tensor([-1.0, 2.0], dtype=torch.float64)
    scale = torch.tensor([0.5, 4.0], dtype=torch.float64)
    xo = lo + torch.rand(20, 2, dtype=torch.float64) / scale
    f = lambda y: basis((y - lo) * scale)
    eye = torch.eye(2, dtype=torch.float64)
    got = basis_jets(basis, (xo - lo) * scale, [(), (0,), (1, 1), (0, 1), (0, 1, 1)], scale=scale)
    _close(got[()], f(xo))
    for i in [(0,), (1, 1), (0, 1), (0, 1, 1)]:
        _close(got[i], _nested(f, xo, [eye[j] for j in i]))


def test_timing_vs_forward(capsys):
    torch.manual_seed(0)
    basis = DualBranchBasis(2, 512).double().requires_grad_(False)     # default frequencies
    x = torch.rand(2000, 2, dtype=torch.float64)
    pts = {"x": x[:, 0], "y": x[:, 1]}
    fn = lambda p: basis(torch.stack([p["x"], p["y"]], dim=-1))
    def best(call, reps=2):             # best of `reps` (the first call also warms up)
        times = []
        for _ in range(reps):
            t = time.perf_counter()
            out = call()
            times.append(time.perf_counter() - t)
        return out, min(times)

    with torch.no_grad():
        jets, t_jet = best(lambda: basis_jets(basis, x, [(), (0, 0), (1, 1)]))
        ref, t_fwd = best(lambda: derivatives(fn, pts, [("x", "x"), ("y", "y")], engine=Forward()))
    _close(jets[()], ref[()])
    _close(jets[(0, 0)], ref[("x", "x")])
    _close(jets[(1, 1)], ref[("y", "y")])
    with capsys.disabled():
        print(f"\nN=2000 H=512: basis_jets {t_jet:.3f}s  Forward {t_fwd:.3f}s  speed-up {t_fwd / t_jet:.1f}x")


def test_subsets_of_indices():
    """Whatever subset is asked for (no value, only third order, ..) the answers agree."""
    basis = _basis(3, 16, seed=4)
    x = torch.rand(10, 3, dtype=torch.float64)
    full = basis_jets(basis, x, _indices(3))
    for sub in ([()], [(2, 2, 2)], [(0, 1)], [(0,), (0, 0, 1)], [(1, 1), (2,), ()]):
        got = basis_jets(basis, x, sub)
        assert set(got) == set(sub)
        for i in sub:
            _close(got[i], full[i], 1e-13)

"""sciml.mtl: HRGrad's invariants on random conflicting task gradients, and each
baseline checked against the defining property of its paper."""
import pytest
import torch

from sciml import mtl
from sciml.mtl import ConflictScaled, EqualRates, HRGrad, LossRatioRates, ProjectionSum


def conflicting(K, n, dtype=torch.float64, seed=0):
    """K gradients: a shared component, half of the tasks pulling against it, plus
    task-specific parts (linearly independent almost surely)."""
    g = torch.Generator().manual_seed(seed)
    base = torch.randn(n, generator=g, dtype=torch.float64)
    sign = torch.tensor([1.0 if i % 2 == 0 else -0.7 for i in range(K)], dtype=torch.float64)
    scale = torch.logspace(0, 2, K, dtype=torch.float64)[torch.randperm(K, generator=g)]
    G = sign[:, None] * base[None] + 0.8 * torch.randn(K, n, generator=g, dtype=torch.float64)
    return (scale[:, None] * G).to(dtype)


@pytest.mark.parametrize("K", [2, 3, 4, 8, 16])
@pytest.mark.parametrize("n", [64, 100_000])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("direction", ["equal", "maxmin", "proportional", "mean"])
def test_hrgrad_positive_dot_with_every_task(K, n, dtype, direction):
    G = conflicting(K, n, dtype, seed=K)
    assert (mtl.cosines(G.double()) < 0).any()          # there is conflict
    losses = torch.rand(K, dtype=dtype) + 0.1
    agg = HRGrad(direction=direction)
    agg(G, losses * 3)                                   # initial losses
    u = agg(G, losses)
    assert u.dtype == dtype and u.shape == (n,)
    assert ((G.double() @ u.double()) > 0).all()
    # the plain sum does conflict with some task on the same matrix
    assert ((G.double() @ G.double().sum(0)) < 0).any() or K == 2


def test_equal_rates_give_equal_cosines_and_match_torchjd_config():
    G = conflicting(6, 500)
    u = HRGrad(rates=EqualRates(), direction="equal", magnitude=ProjectionSum())(G)
    cos = (G @ u) / (G.norm(dim=1) * u.norm())
    assert torch.allclose(cos, cos.mean().expand(6), rtol=0, atol=1e-10)
    ref = mtl.aggregator("config")(G)
    assert torch.allclose(u, ref, rtol=1e-6, atol=1e-8)


def test_loss_ratio_rates_rotate_towards_the_lagging_task():
    G = conflicting(3, 200)
    agg = HRGrad(rates=LossRatioRates(alpha=1.0), direction="equal", magnitude=ProjectionSum())
    agg(G, torch.tensor([1.0, 1.0, 1.0], dtype=G.dtype))
    u = agg(G, torch.tensor([0.1, 0.5, 1.0], dtype=G.dtype))   # task 2 has not improved
    cos = (G @ u) / (G.norm(dim=1) * u.norm())
    # cosines proportional to the rates l_i / mean(l): 0.1 : 0.5 : 1.0
    assert torch.allclose(cos / cos[2], torch.tensor([0.1, 0.5, 1.0], dtype=G.dtype), atol=1e-8)
    # and the state (initial losses) round-trips for exact resume
    other = HRGrad(rates=LossRatioRates(alpha=1.0), direction="equal", magnitude=ProjectionSum())
    other.load_state_dict(agg.state_dict())
    assert torch.equal(other(G, torch.tensor([0.1, 0.5, 1.0], dtype=G.dtype)), u)


def test_relative_rates_equalise_the_fractional_decrease_of_every_loss():
    """``rates: relative`` (alpha 1) with the equal-rate direction: ``g_i . d / L_i``,
    the first-order fall of ``log L_i``, is the same for every task; a task with zero
    gradient is left out; losses absent: equal rates."""
    from sciml.mtl import RelativeRates

    G = conflicting(4, 300) * torch.tensor([[1.0], [5.0], [0.2], [2.0]], dtype=torch.float64)
    L = torch.tensor([3.0, 0.5, 0.01, 1.0], dtype=G.dtype)
    agg = HRGrad(rates=RelativeRates(rmax=1e6), direction="equal", magnitude=ProjectionSum())
    u = agg(G, L)
    fall = (G @ u) / L
    assert torch.all(fall > 0) and torch.allclose(fall, fall.mean().expand(4), rtol=1e-8)
    assert HRGrad(rates="relative").rates == RelativeRates(alpha=1.0)   # the name: the default rmax (10) clips
    r = RelativeRates(rmax=1e6)(L, torch.tensor([2.0, 0.0, 1.0, 4.0], dtype=G.dtype), {})
    s = torch.tensor([1.5, 1.0, 0.01, 0.25], dtype=G.dtype)          # L / |g|; the zero-gradient task: 1, unused
    assert torch.allclose(r[[0, 2, 3]], s[[0, 2, 3]] / s[[0, 2, 3]].mean()) and r[1] == pytest.approx(1 / s[[0, 2, 3]].mean())
    assert torch.equal(RelativeRates()(None, torch.ones(3), {}), torch.ones(3, dtype=torch.float64))
    assert HRGrad(rates="relative", alpha=0.5).rates == RelativeRates(alpha=0.5)
    with pytest.raises(ValueError, match="rates must be one of"):
        HRGrad(rates="inverse")


def test_gain_rates_with_the_mean_direction_follow_the_gradient_of_the_summed_log_losses():
    """``rates: gain`` (alpha 1, no clip) with ``direction: mean`` on gradients that do
    not conflict: the update is along ``sum_i g_i / L_i`` (the gradient of ``sum_i log
    L_i``); with conflict it still descends for every task; zero loss or zero gradient:
    left out (rate 1)."""
    from sciml.mtl import GainRates

    G = torch.randn(4, 300, dtype=torch.float64).abs() * torch.tensor([[1.0], [5.0], [0.2], [2.0]], dtype=torch.float64)
    L = torch.tensor([3.0, 0.5, 0.01, 1.0], dtype=G.dtype)
    u = HRGrad(rates=GainRates(rmax=1e6), direction="mean")(G, L)
    target = (G / L[:, None]).sum(0)
    assert torch.allclose(u / u.norm(), target / target.norm(), atol=1e-12)
    Gc = conflicting(4, 300) * torch.tensor([[1.0], [5.0], [0.2], [2.0]], dtype=torch.float64)
    assert torch.all(Gc @ HRGrad(rates="gain", direction="mean")(Gc, L) > 0)
    r = GainRates(rmax=1e6)(torch.tensor([2.0, 1.0, 0.0, 4.0]), torch.tensor([2.0, 0.0, 1.0, 2.0]), {})
    s = torch.tensor([1.0, 0.5], dtype=torch.float64)                # |g| / L of the two active tasks
    assert torch.allclose(r[[0, 3]], s / s.mean()) and torch.allclose(r[[1, 2]], torch.full((2,), 1 / s.mean().item(), dtype=torch.float64))
    assert HRGrad(rates="gain").rates == GainRates(alpha=1.0)
    assert HRGrad(rates="gain", alpha=0.5).options()["rates"] == "gain"


def test_magnitude_shrinks_with_conflict_only():
    G = conflicting(4, 300)
    full = HRGrad(rates=EqualRates(), magnitude=ProjectionSum())(G)
    scaled = HRGrad(rates=EqualRates(), magnitude=ConflictScaled(0.5, base=ProjectionSum()))(G)
    assert torch.allclose(scaled / scaled.norm(), full / full.norm(), atol=1e-12)
    assert scaled.norm() < full.norm()
    aligned = G.abs()                                      # all cosines >= 0: no conflict
    assert torch.allclose(HRGrad(rates=EqualRates(), length="projection")(aligned),
                          HRGrad(rates=EqualRates(), magnitude=ProjectionSum())(aligned))
    default = HRGrad(rates=EqualRates())                   # default length: unit (docs/hrgrad.md)
    assert torch.allclose(default(aligned).norm(), torch.tensor(1.0, dtype=G.dtype))
    assert torch.allclose(default(G).norm(), scaled.norm() / full.norm())   # 1 - gamma kappa < 1
    assert default(G).norm() < 1 and torch.allclose(default(G) / default(G).norm(), full / full.norm())
    with pytest.raises(ValueError, match="gamma"):
        ConflictScaled(1.5)


def test_zero_nan_and_permutation():
    agg = HRGrad()
    assert torch.equal(agg(torch.zeros(4, 10)), torch.zeros(10))
    G = conflicting(5, 100)
    G[2] = 0.0                                             # a finished task imposes nothing
    u = HRGrad(rates=EqualRates())(G)
    assert ((G @ u)[[0, 1, 3, 4]] > 0).all()
    bad = conflicting(3, 10)
    bad[1, 4] = float("nan")
    with pytest.raises(ValueError, match=r"task gradient\(s\) \[1\] contain NaN"):
        HRGrad()(bad)
    with pytest.raises(ValueError, match="task loss"):
        HRGrad()(conflicting(3, 10), torch.tensor([1.0, float("inf"), 1.0], dtype=torch.float64))
    G = conflicting(6, 400)
    losses = torch.rand(6, dtype=G.dtype) + 0.1
    perm = torch.randperm(6, generator=torch.Generator().manual_seed(1))
    a, b = HRGrad(), HRGrad()
    a(G, 2 * losses), b(G[perm], 2 * losses[perm])
    assert torch.allclose(a(G, losses), b(G[perm], losses[perm]), rtol=1e-10, atol=1e-12)


# ---- baselines: each against its paper's defining property ---------------------------------------
def test_pcgrad_projects_conflicting_pairs():
    g1 = torch.tensor([1.0, 0.0, 0.0], dtype=torch.float64)
    g2 = torch.tensor([-1.0, 1.0, 0.0], dtype=torch.float64)
    u = mtl.aggregator("pcgrad")(torch.stack([g1, g2]))
    p1 = g1 - (g1 @ g2) / (g2 @ g2) * g2                   # Yu et al. 2020, Alg. 1
    p2 = g2 - (g2 @ g1) / (g1 @ g1) * g1
    assert torch.allclose(u, p1 + p2)
    h = torch.tensor([[1.0, 0.2, 0.0], [0.5, 1.0, 0.1]], dtype=torch.float64)   # no conflict: the sum
    assert torch.allclose(mtl.aggregator("pcgrad")(h), h.sum(0))


def test_imtlg_equal_projections_on_unit_gradients():
    G = conflicting(4, 50)
    u = mtl.aggregator("imtlg")(G)
    proj = (G / G.norm(dim=1, keepdim=True)) @ u
    assert torch.allclose(proj, proj.mean().expand(4), rtol=1e-6)


def test_mgda_min_norm_point_of_the_convex_hull():
    G = conflicting(4, 30)
    u = mtl.aggregator("mgda", epsilon=1e-10, max_iters=10000)(G)
    # KKT of min |sum a_i g_i| over the simplex: g_i . u >= |u|^2 for every task
    assert ((G @ u) >= (u @ u) * (1 - 1e-4)).all()


def test_cagrad_with_c_zero_is_the_mean_and_improves_the_worst_task():
    G = conflicting(3, 40)
    assert torch.allclose(mtl.aggregator("cagrad", c=0.0)(G), G.mean(0), rtol=1e-5, atol=1e-6)
    u = mtl.aggregator("cagrad", c=0.5)(G)
    g0 = G.mean(0)
    worst = lambda d: (G @ d / d.norm()).min()          # noqa: E731
    assert worst(u) > worst(g0)


def test_upgrad_never_conflicts():
    # rows of comparable norm: TorchJD regularises the normalised Gramian (reg_eps
    # 1e-4), which on norms spread over 1..100 left a cosine of -0.027 in one task
    G = conflicting(5, 60)
    G = G / G.norm(dim=1, keepdim=True) * torch.linspace(1, 3, 5, dtype=G.dtype)[:, None]
    u = mtl.aggregator("upgrad")(G)
    assert ((G @ u) >= -1e-6 * G.norm(dim=1) * u.norm()).all()


def test_alignedmtl_and_nashmtl_on_orthogonal_gradients():
    G = torch.diag(torch.tensor([0.5, 2.0, 4.0], dtype=torch.float64))
    # Aligned-MTL (scale "min"): every singular value set to the smallest, so the
    # update projects equally (sigma_min) on every task direction
    u = mtl.aggregator("alignedmtl")(G)
    assert u[0] > 0 and torch.allclose(u, torch.full_like(u, u[0].item()))
    # Nash-MTL: (G G^T) a = 1/a gives a_i = 1/|g_i|: equal projections on unit gradients
    v = mtl.aggregator("nashmtl", max_norm=100.0, optim_niter=200)(G.float())
    proj = v.double() @ (G / G.norm(dim=1, keepdim=True)).T
    assert (proj > 0).all() and torch.allclose(proj, proj.mean().expand(3), rtol=5e-2)
    # one task: a^2 |g|^2 = 1, the unit gradient (capped at max_norm)
    g = torch.tensor([[3.0, 4.0]])
    assert torch.allclose(mtl.aggregator("nashmtl", max_norm=100.0)(g), torch.tensor([0.6, 0.8]))
    assert torch.allclose(mtl.aggregator("nashmtl", max_norm=0.5)(g), torch.tensor([0.3, 0.4]))
    # the update does not depend on G's scale, also where G G^T underflows float32
    ref = mtl.aggregator("nashmtl", max_norm=100.0, optim_niter=200)(G.float())
    tiny = mtl.aggregator("nashmtl", max_norm=100.0, optim_niter=200)(1e-30 * G.float())
    assert torch.isfinite(tiny).all() and torch.allclose(tiny, ref, rtol=1e-3)


def test_registry_and_diagnostics():
    assert {"hrgrad", "sum", "pcgrad", "imtlg", "mgda", "cagrad", "nashmtl", "alignedmtl", "config",
            "upgrad"} <= set(mtl.AGGREGATORS)
    with pytest.raises(ValueError, match="did you mean 'hrgrad'"):
        mtl.aggregator("hrgard")
    G = conflicting(3, 20)
    u = mtl.aggregator("hrgrad")(G)
    d = mtl.diagnostics(G, u, torch.ones(3))
    assert len(d["cos_tasks"]) == 3 and len(d["cos_update"]) == 3 and d["min_cos_update"] > 0
    assert torch.allclose(torch.tensor(d["grad_norms"], dtype=G.dtype), G.norm(dim=1))


# ---- loss weightings --------------------------------------------------------------------------
def test_dwa_weights_the_slower_task_more():
    w = mtl.weighting("dwa", temperature=2.0)
    assert torch.equal(w(torch.tensor([1.0, 1.0])), torch.ones(2, dtype=torch.float64))
    w(torch.tensor([0.5, 0.9]))            # task 0 halved, task 1 barely moved
    out = w(torch.tensor([0.25, 0.85]))
    r = torch.tensor([0.5, 0.9])           # L(t-1) / L(t-2)
    assert torch.allclose(out, 2 * torch.softmax(r.double() / 2.0, 0))
    assert out[1] > out[0] and abs(float(out.sum()) - 2) < 1e-12


def test_uncertainty_weights_converge_to_inverse_losses():
    w = mtl.weighting("uncertainty", lr=0.05)
    L = torch.tensor([4.0, 0.25])
    for _ in range(2000):
        out = w(L)
    # optimum of exp(-s) L + s: exp(s) = L, i.e. w = 1/L
    assert torch.allclose(out, 1 / L.double(), rtol=2e-2)


def test_gradnorm_balances_weighted_gradient_norms():
    w = mtl.weighting("gradnorm", alpha=0.0, lr=0.002)
    norms = torch.tensor([10.0, 1.0])
    L = torch.tensor([1.0, 1.0])
    for _ in range(3000):
        out = w(L, norms)
    # alpha = 0: the weighted norms w_k |g_k| become equal (up to the oscillation of
    # the paper's L1 objective, of the order of the step); sum w = K
    assert abs(float(out.sum()) - 2) < 1e-9
    assert abs(float(out[0] * 10) / float(out[1]) - 1) < 0.1
    with pytest.raises(ValueError, match="gradient norms"):
        w(L)


def test_famo_weights_and_logit_update():
    f = mtl.weighting("famo", beta=0.5, gamma=0.0)
    L0 = torch.tensor([1.0, 2.0])
    w0 = f(L0)
    # z = softmax(0) = 1/2: w = c z / L with c = 1 / sum(z / L)
    assert torch.allclose(w0, torch.tensor([2 / 3, 1 / 3], dtype=torch.float64))
    f(torch.tensor([0.5, 1.9]))            # task 0's log-loss fell much more
    z = torch.softmax(f.xi, 0)
    assert z[0] < z[1]                     # so its share decreases


def test_weighting_state_round_trip():
    a = mtl.weighting("dwa")
    for L in ([1.0, 1.0], [0.5, 0.9]):
        a(torch.tensor(L))
    b = mtl.weighting("dwa")
    b.load_state_dict(a.state_dict())
    L = torch.tensor([0.2, 0.8])
    assert torch.equal(a(L), b(L))


# ---- the trainer hook -------------------------------------------------------------------------
def _two_task_model():
    torch.manual_seed(0)
    shared = torch.nn.Linear(3, 8)
    heads = torch.nn.ModuleList([torch.nn.Linear(8, 1), torch.nn.Linear(8, 1)])
    return torch.nn.ModuleDict({"shared": shared, "heads": heads})


def _terms(model, gen):
    x = torch.randn(32, 3, generator=gen)
    h = torch.tanh(model["shared"](x))
    y0, y1 = model["heads"][0](h), model["heads"][1](h)
    return {"a/fit": (y0 - x[:, :1]).pow(2).mean(), "a/reg": 1e-3 * y0.pow(2).mean(),
            "b/fit": (y1 + x[:, :1]).pow(2).mean()}


def test_task_backward_sum_equals_plain_backward_and_keeps_zero_rows():
    m = _two_task_model()
    params = list(m.parameters())
    terms = _terms(m, torch.Generator().manual_seed(0))
    hook = mtl.TaskBackward(aggregator=mtl.aggregator("sum"))
    total = hook(terms, params)
    g_hook = [p.grad.clone() for p in params]
    for p in params:
        p.grad = None
    sum(_terms(m, torch.Generator().manual_seed(0)).values()).backward()
    assert all(torch.allclose(a, p.grad) for a, p in zip(g_hook, params))
    assert float(total) == pytest.approx(float(sum(terms.values()).detach()))
    G = hook.task_gradients(list(hook.task_losses(_terms(m, torch.Generator().manual_seed(0)))[1]), params)
    n = sum(p.numel() for p in params)
    assert G.shape == (2, n)
    head_b = slice(n - 9, n)               # the last head's weights and bias: untouched by task a
    assert torch.all(G[0, head_b] == 0) and torch.any(G[1, head_b] != 0)
    assert hook.last["cos_update"] and len(hook.last["cos_tasks"]) == 1
    with pytest.raises(ValueError, match="'<task>/<term>'"):
        hook({"fit": terms["a/fit"]}, params)


@pytest.mark.parametrize("rule", [{"aggregator": "hrgrad"}, {"aggregator": "nashmtl"}, {"weighting": "gradnorm"},
                                  {"weighting": "dwa"}, {"weighting": "famo"}, {"weighting": "uncertainty"}])
def test_trainer_resume_is_exact_with_an_aggregator(tmp_path, rule):
    from sciml.train import TrainConfig, Trainer

    def run(steps, out, resume=False):
        m = _two_task_model()
        hook = mtl.TaskBackward(aggregator=mtl.aggregator(rule["aggregator"]) if "aggregator" in rule else None,
                                weighting=mtl.weighting(rule["weighting"]) if "weighting" in rule else None)
        cfg = TrainConfig(steps=steps, lr=1e-2, checkpoint_every=5, log_every=5, progress=False, seed=3)
        tr = Trainer(m, lambda step, gen: _terms(m, gen), config=cfg, out_dir=out, backward=hook, extra_state=hook)
        tr.fit(resume=resume)
        return m, hook

    full, _ = run(20, tmp_path / "full")
    run(10, tmp_path / "part")
    resumed, hook = run(20, tmp_path / "part", resume=True)
    for a, b in zip(full.parameters(), resumed.parameters()):
        assert torch.equal(a, b)
    assert hook.tasks == ["a", "b"]


def test_docs_example_on_a_plain_model_runs():
    """docs/hrgrad.md's example on a plain PyTorch model (examples are tests)."""
    import re
    from pathlib import Path

    text = (Path(__file__).resolve().parents[1] / "docs" / "hrgrad.md").read_text()
    blocks = [b for b in re.findall(r"```python\n(.*?)```", text, flags=re.S) if "TaskBackward" in b]
    assert len(blocks) == 1
    scope: dict = {}
    exec(compile(blocks[0], "docs/hrgrad.md", "exec"), scope)   # noqa: S102 - our own documentation
    assert min(scope["rule"].last["cos_update"]) > 0


def test_hrgrad_numeric_options_set_the_default_parts():
    """``alpha`` / ``gamma`` (what a YAML file can give) build the default parts:
    alpha = 0 is the equal-rates (equal-cosine) direction."""
    from sciml.mtl import ConflictScaled, EqualRates, HRGrad

    g = torch.Generator().manual_seed(3)
    G = torch.randn(4, 50, generator=g, dtype=torch.float64)
    losses = torch.tensor([1.0, 2.0, 0.5, 3.0], dtype=torch.float64)
    a = HRGrad(alpha=0.0, gamma=0.25)
    b = HRGrad(rates=EqualRates(), magnitude=ConflictScaled(gamma=0.25))
    a(G, losses)
    a(G, losses * 0.5)
    b(G, losses)
    assert torch.allclose(a(G, losses * 0.5), b(G, losses * 0.5))
    with pytest.raises(ValueError, match="either rates or alpha"):
        HRGrad(alpha=0.5, rates=EqualRates())
    with pytest.raises(ValueError, match="alpha must be"):
        HRGrad(alpha=-1)


def nearly_dependent(K, n, noise, seed=0):
    """K gradients that vary smoothly with the task (``b1 + t b2 + t^2 b3``, ``t`` in
    [-1, 1], as for tasks at neighbouring eps) plus a small task-specific part: the
    unit gradients are nearly dependent, and the exact equal-cosine direction needs
    that small part (long ``d``, small cosines)."""
    g = torch.Generator().manual_seed(seed)
    B = torch.linalg.qr(torch.randn(n, 3, generator=g, dtype=torch.float64))[0].T
    t = torch.linspace(-1.0, 1.0, K, dtype=torch.float64)
    C = torch.stack([torch.ones_like(t), t, t * t], dim=1)
    return C @ B + noise * torch.randn(K, n, generator=g, dtype=torch.float64) / n ** 0.5


def test_min_norm_direction_cutoff():
    """``rcond``: the direction from the dominant singular directions of the unit
    gradients, as a pseudo-inverse with that cut-off gives (TorchJD's ConFIG at the
    same cut-off), with larger cosines than the exact solve when they are nearly
    dependent; the exact solve where the cut-off would lose a positive dot product."""
    from sciml.mtl import MinNormDirection

    G = nearly_dependent(6, 2000, 1e-2)
    U = G / G.norm(dim=1, keepdim=True)
    r = torch.ones(6, dtype=torch.float64)
    exact, cut = MinNormDirection()(U, r), MinNormDirection(rcond=0.1)(U, r)
    pinv = torch.linalg.pinv(U, rtol=0.1) @ r
    assert torch.allclose(cut, pinv / pinv.norm(), atol=1e-10)
    assert torch.allclose(U @ exact, (U @ exact).mean().expand(6), rtol=1e-6)     # equal cosines
    assert (U @ cut).min() > 3 * (U @ exact).min() > 0
    # well-conditioned gradients: nothing below the cut-off, the same direction
    W = torch.randn(5, 300, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    W = W / W.norm(dim=1, keepdim=True)
    r5 = torch.ones(5, dtype=torch.float64)
    assert torch.allclose(MinNormDirection(rcond=0.01)(W, r5), MinNormDirection()(W, r5), atol=1e-10)
    # a cut-off that would leave a task with a negative dot product falls back to the exact solve
    V = torch.tensor([[1.0, 0.0, 0.0], [-0.999, 0.0447, 0.0], [0.0, 0.0, 1.0]], dtype=torch.float64)
    V = V / V.norm(dim=1, keepdim=True)
    r3 = torch.ones(3, dtype=torch.float64)
    lam, Q = torch.linalg.eigh(V @ V.T)
    keep = lam > 0.5 ** 2 * lam.max()
    assert not bool(((V @ V.T) @ (Q[:, keep] @ ((Q[:, keep].T @ r3) / lam[keep])) > 0).all())
    fallback = MinNormDirection(rcond=0.5)(V, r3)
    assert torch.allclose(fallback, MinNormDirection()(V, r3)) and (V @ fallback).min() > 0
    with pytest.raises(ValueError, match="rcond"):
        MinNormDirection(rcond=1.5)


def test_hrgrad_rcond_option():
    from sciml.mtl import HRGrad, MinNormDirection

    assert HRGrad(rcond=0.03).direction == MinNormDirection(rcond=0.03)
    with pytest.raises(ValueError, match="either direction or rcond"):
        HRGrad(rcond=0.1, direction=MinNormDirection())
    G = nearly_dependent(5, 500, 1e-2, seed=2)
    u = mtl.aggregator("hrgrad", rcond=0.05)(G, torch.ones(5, dtype=torch.float64))
    assert (G @ u).min() > 0


def test_hrgrad_unit_length_is_scale_free():
    from sciml.mtl import HRGrad, UnitLength

    G = conflicting(4, 300)
    unit = mtl.aggregator("hrgrad", length="unit")
    assert unit.magnitude == ConflictScaled(0.5, base=UnitLength())
    u1, u2 = unit(G), unit(1e3 * G)
    assert torch.allclose(u1, u2, atol=1e-12)             # the gradients' scale does not enter
    default = HRGrad()(G)
    assert torch.allclose(u1 / u1.norm(), default / default.norm(), atol=1e-12)
    C = mtl.cosines(G)
    iu = torch.triu_indices(4, 4, 1)
    kappa = (-C[iu[0], iu[1]]).clamp_min(0).mean()
    assert abs(float(u1.norm()) - float(1 - 0.5 * kappa)) < 1e-10
    with pytest.raises(ValueError, match=r"length must be one of \['projection', 'unit'\]"):
        mtl.aggregator("hrgrad", length="units")
    with pytest.raises(ValueError, match="not both"):
        HRGrad(length="unit", magnitude=ProjectionSum())


def test_sum_unit_length():
    G = conflicting(4, 50)
    u = mtl.aggregator("sum", length="unit")(G)
    assert torch.allclose(u, G.sum(0) / G.sum(0).norm())
    assert torch.equal(mtl.aggregator("sum", length="unit")(torch.zeros(3, 5)), torch.zeros(5))
    with pytest.raises(ValueError, match="length must be 'sum' or 'unit'"):
        mtl.aggregator("sum", length="one")


@pytest.mark.parametrize("name", ["pcgrad", "config", "nashmtl", "upgrad"])
def test_baseline_unit_length(name):
    """``length="unit"``: the baseline's own direction, divided by its norm (zero stays
    zero); another length value is an error naming the allowed ones."""
    G = conflicting(4, 50).double()
    torch.manual_seed(0)                # PCGrad projects in a random order
    native = mtl.aggregator(name)(G)
    torch.manual_seed(0)
    unit = mtl.aggregator(name, length="unit")(G)
    assert unit.norm().item() == pytest.approx(1.0, rel=1e-12)
    assert torch.allclose(unit, native / native.norm(), atol=1e-6)
    assert native.norm().item() != pytest.approx(1.0, rel=1e-3) or name == "nashmtl"
    assert torch.equal(mtl.aggregator(name, length="unit")(torch.zeros(3, 5, dtype=torch.float64)),
                       torch.zeros(5, dtype=torch.float64))
    with pytest.raises(ValueError, match="length must be one of 'native', 'unit'"):
        mtl.aggregator(name, length="projection")


@pytest.mark.parametrize("K, n", [(3, 50), (16, 64), (7, 2000)])
def test_maxmin_direction_maximises_the_worst_rate(K, n):
    """``direction="maxmin"``: every task's rate ``u_i . d / r_i`` is at least the common
    rate of the equal-rate direction, equal on the tasks the minimum-norm point rests
    on (its weights satisfy the optimality conditions on the simplex), and the two
    directions agree when all of the equal-rate weights are positive."""
    from sciml.mtl.hrgrad import MaxMinDirection, MinNormDirection, min_norm_weights

    G = conflicting(K, n, seed=K)
    if K == 7:                          # nearly parallel gradients, as late in a PINN's training
        G = G[0] + 0.05 * G
    U = G / G.norm(dim=1, keepdim=True)
    r = torch.rand(K, dtype=torch.float64, generator=torch.Generator().manual_seed(3)) + 0.5
    d, e = MaxMinDirection()(U, r), MinNormDirection()(U, r)
    rate_d, rate_e = U @ d / r, U @ e / r
    assert torch.allclose(rate_e, rate_e[0].expand(K))   # the equal-rate direction
    assert rate_d.min() >= rate_e.min() - 1e-10 and (rate_d > 0).all()
    A = U / r[:, None]
    w = min_norm_weights(A @ A.T)
    assert w.min() >= 0 and float(w.sum()) == pytest.approx(1.0, abs=1e-12)
    grad = (A @ A.T) @ w
    assert float(grad.min()) >= float(w @ grad) - 1e-10      # optimal on the simplex
    on = w > 0
    assert torch.allclose(rate_d[on], rate_d[on].min().expand(int(on.sum())), rtol=1e-8)
    alpha = torch.linalg.solve(U @ U.T, r)                   # the equal-rate direction's weights
    if (alpha > 0).all():
        assert torch.allclose(d, e, atol=1e-9)
    else:
        assert rate_d.min() > rate_e.min() + 1e-6             # it gains where the weights are not
    # through the rule, by name; permuting the tasks permutes nothing
    losses = torch.rand(K, dtype=torch.float64, generator=torch.Generator().manual_seed(4)) + 0.1
    perm = torch.randperm(K, generator=torch.Generator().manual_seed(5))
    a, b = mtl.aggregator("hrgrad", direction="maxmin"), mtl.aggregator("hrgrad", direction="maxmin")
    a(G, 2 * losses), b(G[perm], 2 * losses[perm])
    assert torch.allclose(a(G, losses), b(G[perm], losses[perm]), rtol=1e-9, atol=1e-12)
    # the default (docs/hrgrad-measurements.md, "The proportional direction"); rcond alone selects "equal"
    from sciml.mtl.hrgrad import ProportionalDirection

    assert mtl.aggregator("hrgrad").direction == ProportionalDirection()
    assert mtl.aggregator("hrgrad", direction="equal").direction == MinNormDirection()
    with pytest.raises(ValueError, match="direction must be one of"):
        mtl.aggregator("hrgrad", direction="minmax")
    with pytest.raises(ValueError, match="rcond is the cut-off of direction 'equal'"):
        mtl.aggregator("hrgrad", direction="maxmin", rcond=0.1)


def test_unknown_option_names_what_the_rule_takes():
    with pytest.raises(ValueError, match=r"no option 'rcnd' \(did you mean 'rcond'\?\); hrgrad takes: .*rcond"):
        mtl.aggregator("hrgrad", rcnd=0.1)
    with pytest.raises(ValueError, match="dwa takes: temperature"):
        mtl.weighting("dwa", temp=2.0)
    assert mtl.weighting("dwa", temperature=2.0) is not None


def test_baseline_options_checked_at_construction():
    """TorchJD baselines name the options they take; Nash-MTL (built lazily at its first
    step) rejects a wrong option when it is made, not at the first step."""
    with pytest.raises(ValueError, match=r"no option 'max_nrom' \(did you mean 'max_norm'\?\); nashmtl takes"):
        mtl.aggregator("nashmtl", max_nrom=1.0)
    with pytest.raises(ValueError, match="no option 'c'; pcgrad takes: length"):
        mtl.aggregator("pcgrad", c=0.5)
    assert mtl.aggregator("cagrad", c=0.5)(torch.eye(3)).shape == (3,)


def test_options_write_out_the_defaults_and_rebuild_the_rule():
    """``options()`` names every option with its value, defaults included, and building
    the rule from them gives the same rule (what a saved configuration records);
    HRGrad built from parts no option names says so."""
    for name in sorted(mtl.AGGREGATORS):
        opts = mtl.aggregator(name).options()
        assert mtl.aggregator(name, **opts).options() == opts, name
        assert all(isinstance(v, (int, float, str)) for v in opts.values()), name
    for name in sorted(mtl.WEIGHTINGS):
        opts = mtl.weighting(name).options()
        assert opts and mtl.weighting(name, **opts).options() == opts, name
    assert mtl.aggregator("hrgrad").options() == {"alpha": 0.5, "direction": "proportional", "gamma": 0.5, "length": "unit"}
    equal = mtl.aggregator("hrgrad", rcond=0.03, alpha=0.0)
    assert equal.options() == {"alpha": 0.0, "direction": "equal", "gamma": 0.5, "length": "unit", "rcond": 0.03}
    assert repr(mtl.aggregator("hrgrad", **equal.options())) == repr(equal)
    relative = mtl.aggregator("hrgrad", rates="relative")      # not the default rates: written out
    assert relative.options() == {"alpha": 1.0, "direction": "proportional", "gamma": 0.5, "length": "unit",
                                  "rates": "relative"}
    assert repr(mtl.aggregator("hrgrad", **relative.options())) == repr(relative)
    assert mtl.aggregator("mgda").options() == {"epsilon": 0.001, "max_iters": 100, "length": "native"}
    assert mtl.aggregator("sum", length="unit").options() == {"length": "unit"}
    assert mtl.aggregator("nashmtl").options()["max_norm"] == 1.0          # n_tasks is ours to give
    assert mtl.weighting("dwa", temperature=3.0).options() == {"temperature": 3.0}
    with pytest.raises(ValueError, match="cannot name"):
        HRGrad(rates=EqualRates()).options()


@pytest.mark.parametrize("K, n", [(2, 10), (5, 300), (16, 64), (7, 2000)])
def test_proportional_direction_maximises_the_weighted_log_rates(K, n):
    """``direction="proportional"``: ``d`` maximises ``sum_i r_i log(u_i . d)`` over unit
    vectors (its weights solve ``w_i (M w)_i = r_i``; no nearby unit direction does
    better), every task descends, the result ignores the gradients' lengths, and with no
    common descent direction it falls back to the equal-rate one."""
    from sciml.mtl.hrgrad import MinNormDirection, ProportionalDirection, proportional_weights

    G = conflicting(K, n, seed=K + 1)
    if K == 7:                          # nearly parallel gradients
        G = G[0] + 0.05 * G
    U = G / G.norm(dim=1, keepdim=True)
    r = torch.rand(K, dtype=torch.float64, generator=torch.Generator().manual_seed(6)) + 0.5
    M = U @ U.T
    w = proportional_weights(M, r)
    assert (w > 0).all() and torch.allclose(w * (M @ w), r, rtol=0, atol=1e-8)
    d = ProportionalDirection()(U, r)
    assert float(d.norm()) == pytest.approx(1.0) and (U @ d > 0).all()

    def objective(v):
        return float((r * torch.log(U @ v)).sum())

    g = torch.Generator().manual_seed(7)
    best = objective(d)
    for _ in range(200):
        v = d + 1e-3 * torch.randn(n, generator=g, dtype=torch.float64)
        v = v / v.norm()
        if (U @ v > 0).all():
            assert objective(v) <= best + 1e-12
    # through the rule: lengths of the task gradients do not matter
    scale = torch.logspace(-3, 3, K, dtype=torch.float64)[:, None]
    losses = torch.rand(K, dtype=torch.float64, generator=torch.Generator().manual_seed(8)) + 0.1
    a, b = mtl.aggregator("hrgrad", direction="proportional"), mtl.aggregator("hrgrad", direction="proportional")
    a(G, 2 * losses), b(scale * G, 2 * losses)
    assert torch.allclose(a(G, losses), b(scale * G, losses), rtol=1e-7, atol=1e-12)
    assert mtl.aggregator("hrgrad", direction="proportional").options()["direction"] == "proportional"
    # well-posed problems (a common descent direction exists) never fall back, also when
    # Newton reaches float64's resolution before the tolerance
    for seed in range(20):
        H = conflicting(K, 200, seed=seed)
        V = H / H.norm(dim=1, keepdim=True)
        rr = torch.rand(K, dtype=torch.float64, generator=torch.Generator().manual_seed(seed)) + 0.5
        assert proportional_weights(V @ V.T, rr) is not None, seed
    # two opposite gradients: no direction descends for both; the equal-rate fallback
    V = torch.tensor([[1.0, 0.0, 0.0], [-1.0, 0.0, 0.0]], dtype=torch.float64)
    one = torch.ones(2, dtype=torch.float64)
    assert proportional_weights(V @ V.T, one) is None
    assert torch.equal(ProportionalDirection()(V, one), MinNormDirection()(V, one))


def test_proportional_weights_are_the_square_roots_of_the_rates_on_orthogonal_gradients():
    """On orthonormal unit gradients ``w_i (M w)_i = r_i`` reads ``w_i^2 = r_i``: the
    proportional direction weights task ``i`` by ``sqrt(r_i)``, so ``rates: gain`` with
    ``alpha: 2`` puts ``|g_i| / L_i`` on ``u_i``, i.e. the update is along
    ``sum_i g_i / L_i`` (uncertainty weighting's limit) with no conflict to guard."""
    from sciml.mtl.hrgrad import proportional_weights

    K, n = 6, 50
    Q, _ = torch.linalg.qr(torch.randn(n, K, dtype=torch.float64, generator=torch.Generator().manual_seed(3)))
    U = Q.T                                             # K orthonormal rows
    r = torch.linspace(0.2, 5.0, K, dtype=torch.float64)
    assert torch.allclose(proportional_weights(U @ U.T, r), r.sqrt(), rtol=1e-8, atol=0)
    nu = torch.linspace(1.0, 2.0, K, dtype=torch.float64)
    losses = torch.linspace(1.5, 1.0, K, dtype=torch.float64)    # (|g_i| / L_i / mean)^2 inside the clip [0.1, 10]
    G = nu[:, None] * U
    d = mtl.aggregator("hrgrad", rates="gain", alpha=2)(G, losses).double()
    target = (G / losses[:, None]).sum(0)
    assert float(d @ target) / float(d.norm() * target.norm()) == pytest.approx(1.0, abs=1e-10)


@pytest.mark.parametrize("direction", ["maxmin", "proportional", "mean"])
def test_hrgrad_counts_the_steps_whose_direction_fell_back(direction):
    """``HRGrad.stats()["direction_fallbacks"]`` counts the steps at which no direction
    descended for every task (the direction fell back to the equal-rate one); the count
    is part of the rule's state, so it survives a checkpoint."""
    rule = mtl.aggregator("hrgrad", direction=direction)
    losses = torch.ones(3, dtype=torch.float64)
    assert rule.stats() == {"direction_fallbacks": 0}
    for seed in range(5):                       # well posed (for mean: no task lost): never falls back
        G = conflicting(3, 50, seed=seed)
        rule(G + 3 * G.mean(0) if direction == "mean" else G, losses)
    assert rule.stats() == {"direction_fallbacks": 0} and rule.direction.fell_back is False
    G = torch.tensor([[1.0, 0.0, 0.0], [-1.0, 0.0, 0.0], [0.0, 1.0, 0.0]], dtype=torch.float64)
    rule(G, losses), rule(G, losses)            # g_1 = -g_2: nothing descends for both
    assert rule.stats() == {"direction_fallbacks": 2} and rule.direction.fell_back is True
    again = mtl.aggregator("hrgrad", direction=direction)
    again.load_state_dict(rule.state_dict())
    assert again.stats() == {"direction_fallbacks": 2}
    assert rule.options() == again.options()    # the flag is not an option, nor compared
    assert mtl.aggregator("sum").stats() == {}


def test_hrgrad_rcond_counts_rejected_cutoffs():
    """With ``rcond`` the cut-off solve is rejected (and counted) when it would lose a
    task: here the third gradient is a tiny perturbation the cut-off drops."""
    U = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.7071, -0.7071 + 1e-4]], dtype=torch.float64)
    U = U / U.norm(dim=1, keepdim=True)
    rule = mtl.aggregator("hrgrad", rcond=0.5, alpha=0.0)
    d = rule(U, torch.ones(3, dtype=torch.float64))
    assert (U @ d > 0).all()
    assert rule.stats()["direction_fallbacks"] == rule.direction.fell_back


def _degenerate(dtype, n=50):
    g = torch.Generator().manual_seed(11)
    a, b, c = (torch.randn(n, generator=g, dtype=dtype) for _ in range(3))
    return {"opposite, K = 3": torch.stack([a, -a, b]), "opposite, K = 2": torch.stack([a, -a]),
            "duplicate": torch.stack([a, a, b]), "zero row": torch.stack([a, torch.zeros_like(a), b]),
            "all zero": torch.zeros(3, n, dtype=dtype), "K = 1": a[None],
            "norms 1e-8 to 1e8": torch.stack([1e-8 * a, 1e8 * b, c]), "norms 1e-30": 1e-30 * torch.stack([a, b, c]),
            "nearly parallel": torch.stack([a, a + 1e-9 * b, a + 1e-9 * c]),
            "collinear, opposite signs": torch.stack([a, -2 * a, 3 * a]),
            "K = 16, rank 2": torch.randn(16, 2, generator=g, dtype=dtype) @ torch.randn(2, n, generator=g, dtype=dtype)}


@pytest.mark.parametrize("rule", sorted(set(mtl.AGGREGATORS) - {"hrgrad"})
                         + [f"hrgrad:{d}" for d in ("maxmin", "equal", "proportional", "mean")] + ["hrgrad:rcond"])
def test_every_rule_survives_degenerate_matrices(rule):
    """Every aggregator returns a finite update of G's shape and dtype (two steps, so
    that stateful rules see their own state) on matrices where the rules' problems
    degenerate: opposite or duplicated or zero gradients, one task, norms far from 1,
    nearly parallel or rank-deficient gradients (a Nash-MTL crash on K = 1 and on
    float32 underflow was found this way)."""
    name, _, variant = rule.partition(":")
    options = {"rcond": 0.1} if variant == "rcond" else ({"direction": variant} if variant else {})
    for dtype in (torch.float32, torch.float64):
        for case, G in _degenerate(dtype).items():
            agg = mtl.aggregator(name, **options)
            losses = torch.linspace(0.5, 1.5, G.shape[0], dtype=dtype)
            for _ in range(2):
                u = agg(G, losses)
                assert u.shape == G[0].shape and u.dtype == dtype, (case, dtype)
                assert torch.isfinite(u).all(), (case, dtype)


def _mtl_ddp_worker(rank, world, init_file, result_dir, rule):
    import os

    import torch.distributed as dist

    from sciml.mtl.backward import TaskBackward

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        torch.manual_seed(0)                                # the same model on every rank
        net = torch.nn.Sequential(torch.nn.Linear(2, 16), torch.nn.Tanh(), torch.nn.Linear(16, 1)).double()
        params = list(net.parameters())
        x = torch.rand(3, 32, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(rank))
        targets = (torch.sin, torch.cos, lambda v: -torch.sin(3 * v))     # three tasks that conflict

        def terms():       # each rank's own points: different local losses and gradients
            return {f"t{k}/fit": ((net(x[k]) - f(x[k].sum(1, keepdim=True))) ** 2).mean()
                    for k, f in enumerate(targets)}

        name, _, w = rule.partition("=")
        hook = TaskBackward(weighting=mtl.weighting(w)) if name == "weighting" else \
            TaskBackward(aggregator=mtl.aggregator(name))
        out = {}
        for step in range(3):                               # later steps see the rule's state
            t = terms()
            local_G = hook.task_gradients(list(t.values()), params)
            local_L = torch.stack([v.detach() for v in t.values()])
            for p in params:
                p.grad = None
            hook(terms(), params)
            local = torch.cat([p.grad.reshape(-1) for p in params]).clone()
            if not hook.grads_global:                       # what the trainer does next
                for p in params:
                    dist.all_reduce(p.grad)
                    p.grad /= world
            out[step] = {"G": local_G, "L": local_L, "local": local, "global": torch.tensor(hook.grads_global),
                         "update": torch.cat([p.grad.reshape(-1) for p in params]).clone()}
            with torch.no_grad():
                for p in params:
                    p -= 1e-2 * p.grad
        torch.save(out, os.path.join(result_dir, f"rank{rank}.pt"))
        dist.barrier()
    finally:
        dist.destroy_process_group()


@pytest.mark.parametrize("rule", ["hrgrad", "nashmtl", "weighting=dwa", "weighting=gradnorm"])
def test_distributed_ranks_apply_the_rule_to_the_global_task_gradients(tmp_path, rule):
    """Under torch.distributed (gloo, two ranks, each with its own points) the hook
    averages the task losses and gradients over the ranks first: every rank's update
    is the rule applied to the global task gradients, the same on both ranks, and not
    the mean of the per-rank updates (for a nonlinear rule another rule)."""
    import torch.multiprocessing as mp

    res = tmp_path / "res"
    res.mkdir()
    try:
        mp.spawn(_mtl_ddp_worker, args=(2, str(tmp_path / "init"), str(res), rule), nprocs=2, join=True)
    except mp.ProcessExitedException:
        # a rare SIGABRT inside gloo's teardown (after the results are written) is not ours
        if not ((res / "rank0.pt").exists() and (res / "rank1.pt").exists()):
            raise
    r = [torch.load(res / f"rank{k}.pt", weights_only=True) for k in range(2)]
    name, _, w = rule.partition("=")
    serial = (lambda: mtl.weighting(w)) if name == "weighting" else (lambda: mtl.aggregator(name))
    ref_rule, per_rank = serial(), [serial(), serial()]
    for step in range(3):
        torch.testing.assert_close(r[0][step]["update"], r[1][step]["update"], rtol=1e-12, atol=0)
        # the trainer averages over the ranks only what the hook did not make global
        assert bool(r[0][step]["global"]) == (name != "weighting" or w == "gradnorm")
        if name != "weighting" or w == "gradnorm":          # the rule's update itself is global
            torch.testing.assert_close(r[0][step]["local"], r[1][step]["local"], rtol=1e-12, atol=0)
        G = (r[0][step]["G"] + r[1][step]["G"]) / 2
        L = (r[0][step]["L"] + r[1][step]["L"]) / 2
        if name == "weighting":
            if ref_rule.needs_grad_norms:
                expected = ref_rule(L, G.norm(dim=1)).to(G.dtype) @ G
                naive = sum(pr(r[k][step]["L"], r[k][step]["G"].norm(dim=1)).to(G.dtype) @ r[k][step]["G"]
                            for k, pr in enumerate(per_rank)) / 2
            else:
                expected = ref_rule(L).to(G.dtype) @ G
                naive = sum(pr(r[k][step]["L"]).to(G.dtype) @ r[k][step]["G"] for k, pr in enumerate(per_rank)) / 2
        else:
            expected = ref_rule(G, L)
            naive = sum(pr(r[k][step]["G"], r[k][step]["L"]) for k, pr in enumerate(per_rank)) / 2
        torch.testing.assert_close(r[0][step]["update"], expected, rtol=1e-6, atol=1e-12)
        if step == 2 or name != "weighting":      # DWA weights every task 1 until it has two losses
            assert not torch.allclose(expected, naive, rtol=1e-3, atol=0), "the test cannot tell the two apart"


def test_mean_direction_maximises_the_weighted_sum_of_rates_or_falls_back_to_maxmin():
    """``direction="mean"``: ``d`` along ``sum_i r_i u_i`` (no unit direction has a larger
    ``sum_i r_i u_i . d``) while every task keeps ``u_i . d > 0``; otherwise the max-min
    direction, counted as a fallback."""
    from sciml.mtl.hrgrad import MaxMinDirection, MeanDirection

    g = torch.Generator().manual_seed(3)
    base = torch.randn(200, dtype=torch.float64, generator=g)
    G = base + 0.6 * torch.randn(5, 200, dtype=torch.float64, generator=g)     # aligned tasks
    U = G / G.norm(dim=1, keepdim=True)
    r = torch.tensor([1.0, 0.5, 2.0, 1.0, 0.8], dtype=torch.float64)
    mean = MeanDirection()
    d = mean(U, r)
    assert not mean.fell_back and (U @ d > 0).all() and float(d.norm()) == pytest.approx(1.0)
    best = float(r @ (U @ d))
    for _ in range(200):
        v = d + 1e-2 * torch.randn(200, dtype=torch.float64, generator=g)
        assert float(r @ (U @ (v / v.norm()))) <= best + 1e-12
    # strong conflict: the weighted mean would lose task 1; max-min is taken instead
    V = torch.tensor([[1.0, 0.0], [-0.9, 0.436], [1.0, 0.1]], dtype=torch.float64)
    V = V / V.norm(dim=1, keepdim=True)
    one = torch.ones(3, dtype=torch.float64)
    assert ((V @ (one @ V)) <= 0).any()
    d = mean(V, one)
    assert mean.fell_back and torch.equal(d, MaxMinDirection()(V, one)) and (V @ d > 0).all()
    assert mtl.aggregator("hrgrad", direction="mean").options()["direction"] == "mean"

"""A physics-informed neural network (PINN) for any :class:`~sciml.physics.pde.PDEProblem`,
trained by the shared :class:`~sciml.train.Trainer`: the learned baseline that
MetaColloc is compared against.

M. Raissi, P. Perdikaris, G. E. Karniadakis, "Physics-informed neural networks: A
deep learning framework for solving forward and inverse problems involving
nonlinear partial differential equations", J. Comput. Phys. 378 (2019) 686-707.

``u = Field(coords)`` (a tanh MLP on inputs normalised by the region's bounding
box). Every step draws fresh points -- ``interior`` uniform in the region and
``boundary`` on its boundary (counts per part proportional to the part's measure)
-- and minimises

    residual = mean_i (N[u](x_i) - f(x_i))^2,
    boundary = w_b * mean_j (a u(y_j) + b du/dn(y_j) - g(y_j))^2,

with ``(a, b)`` the rows of each boundary condition on its parts (Dirichlet,
Neumann, Robin; every condition on its own points, Cauchy data on a part gives
two rows per point). Input derivatives come from :func:`sciml.residual.derivatives`
with the reverse-mode engine, which keeps the graph (``create_graph=True``), so
the loss back-propagates to the weights. Any region, dimension, time coordinate
and (non)linear operator: nothing here is specific to 2D.

:func:`train_pinn` trains with Adam and a cosine learning-rate schedule and records
``(step, seconds, rel_l2)`` every ``callback_every`` steps against the exact
solution at fixed evaluation points, for time-to-accuracy comparisons; the seconds
are training time (the trainer's clock minus the time spent on the evaluations).

Defaults, measured on ``-lap u = f``, ``u = sin(pi x) sin(pi y)`` on the unit square
(width 32, depth 3, 256 + 128 points, 2000 steps, CPU): ``boundary_weight = 100``
and ``lr = 1e-2`` reach a relative L2 error of 1.6e-3; weight 1 stalls near 0.1
(the residual term, of size ``|f|^2 ~ 400``, swamps the boundary term: the
imbalance analysed by Wang, Teng, Perdikaris, SIAM J. Sci. Comput. 43 (2021)
A3055-A3081), and ``lr = 1e-3`` gives 3e-2. float32 by default (about 30%
faster than float64 on CPU; PINN errors stay far above its rounding).
"""
from __future__ import annotations

import time
from typing import Optional

import torch
from torch import nn

from ..domain.geometry import Points
from ..nn.field import build_field
from ..residual import Reverse, derivatives
from ..train.trainer import Cosine, TrainConfig, Trainer

__all__ = ["PDEPinn", "train_pinn"]


class PDEPinn(nn.Module):
    """PINN formulation of ``problem`` (see the module doc); ``loss(step, generator)``
    is the trainer's loss function, ``self(points)`` evaluates ``u`` ``(N,)``."""

    def __init__(self, problem, *, width: int = 64, depth: int = 4, act: str = "tanh", interior: int = 1024,
                 boundary: int = 256, boundary_weight: float = 100.0, dtype: torch.dtype = torch.float32):
        super().__init__()
        if min(interior, boundary) < 1:
            raise ValueError(f"interior and boundary point counts must be >= 1, got {interior}, {boundary}")
        if not boundary_weight >= 0:
            raise ValueError(f"boundary_weight must be >= 0, got {boundary_weight}")
        self.problem = problem
        self.region = problem.region
        self.coords = tuple(self.region.names)
        self.field = build_field(self.region.bounds.intervals, 1, width=width, depth=depth, act=act).to(dtype)
        self.interior, self.n_boundary = int(interior), int(boundary)
        self.boundary_weight = float(boundary_weight)
        self.dtype = dtype
        self._wrt = [i for i in problem.operator.indices if i]
        parts = self.region.parts
        # (condition, a, b, part ids it covers or None for all)
        self._bcs = [(bc, *bc.coefficients, None if bc.parts is None else [parts.index(p) for p in bc.parts])
                     for bc in problem.boundary]

    def _cast(self, points: Points) -> Points:
        p = next(self.parameters(), None)
        device = p.device if p is not None else None
        return {k: torch.as_tensor(points[k]).to(device=device, dtype=self.dtype) for k in self.coords}

    def forward(self, points: Points) -> torch.Tensor:
        """``u`` at named points, shape ``(N,)``."""
        return self.field(self._cast(points)).squeeze(-1)

    def residual(self, points: Points) -> torch.Tensor:
        """``N[u] - f`` at interior points ``(N,)`` (differentiable in the weights)."""
        points = self._cast(points)
        d = derivatives(self.field, points, self._wrt, engine=Reverse())
        D = {i: d[i].squeeze(-1) for i in self.problem.operator.indices}
        return self.problem.operator(D, points) - self.problem.source(points).to(self.dtype)

    def boundary_residual(self, bp) -> torch.Tensor:
        """``a u + b du/dn - g`` of every condition on its points of ``bp``
        (:class:`~sciml.domain.regions.BoundaryPoints`), concatenated."""
        pts = self._cast(bp.points)
        normal = bp.normal.to(self.dtype)
        need_dn = any(b != 0 for _, _, b, _ in self._bcs)
        d = derivatives(self.field, pts, [(c,) for c in self.coords] if need_dn else [], engine=Reverse())
        u = d[()].squeeze(-1)
        dn = sum(d[(c,)].squeeze(-1) * normal[:, k] for k, c in enumerate(self.coords)) if need_dn else None
        out = []
        for bc, a, b, ids in self._bcs:
            m = torch.ones_like(bp.part, dtype=torch.bool) if ids is None else torch.isin(
                bp.part, torch.as_tensor(ids, device=bp.part.device))
            if not bool(m.any()):
                continue
            row = a * u[m] + (b * dn[m] if b != 0 else 0.0)
            g = bc.value({k: v[m] for k, v in bp.points.items()}, bp.normal[m])
            out.append(row - torch.as_tensor(g).to(row))
        return torch.cat(out) if out else u.new_zeros(0)

    def loss(self, step: int, generator: torch.Generator) -> dict:
        """Fresh points every step (drawn with ``generator``); see the module doc."""
        xi = self.region.interior(self.interior, generator, dtype=self.dtype)
        bp = self.region.boundary(self.n_boundary, generator, dtype=self.dtype)
        rb = self.boundary_residual(bp)
        terms = {"residual": (self.residual(xi) ** 2).mean()}
        terms["boundary"] = self.boundary_weight * (rb ** 2).mean() if rb.numel() else rb.sum()
        return terms


class _Tracker:
    """Trainer callback: ``(step, training seconds, rel_l2)`` every ``every`` updates."""

    def __init__(self, model: PDEPinn, every: Optional[int], points: Optional[Points], exact, total: int):
        self.model, self.every, self.points, self.exact, self.total = model, every, points, exact, total
        self.eval_s = 0.0
        self.history: list[tuple[int, float, float]] = []

    def rel_l2(self) -> float:
        if self.points is None:
            return float("nan")
        with torch.no_grad():
            u = self.model(self.points).to(self.exact)
        return float((u - self.exact).norm() / self.exact.norm().clamp_min(1e-300))

    def record(self, step: int, seconds: float) -> None:
        t = time.perf_counter()
        err = self.rel_l2()
        self.eval_s += time.perf_counter() - t
        self.history.append((step, seconds, err))

    def on_step(self, trainer, step: int, stats: dict) -> None:
        done = step + 1                                  # updates applied so far
        if self.every and (done % self.every == 0 or done == self.total) and stats["phase"] == "adam":
            self.record(done, trainer.elapsed - self.eval_s)


def train_pinn(problem, *, steps: int = 2000, lr: float = 1e-2, width: int = 64, depth: int = 4,
               interior: int = 1024, boundary: int = 256, boundary_weight: float = 100.0, seed: int = 0,
               callback_every: Optional[int] = None, exact_eval_points: Optional[Points] = None,
               n_eval: int = 4096, dtype: torch.dtype = torch.float32, act: str = "tanh",
               device=None, out_dir=None) -> dict:
    """Train a :class:`PDEPinn` on ``problem`` with the shared trainer (Adam, cosine
    schedule to zero, ``seed`` for the weights and the point draws).

    The relative L2 error against ``problem.exact`` is measured at
    ``exact_eval_points`` (default: ``n_eval`` uniform interior points, fixed by
    ``seed``) at the start, every ``callback_every`` steps (if given) and at the end.
    ``device``: where the network and the point draws live; ``out_dir``: the
    trainer's checkpoint and ``metrics.jsonl`` (none by default).

    Returns ``{"model", "history": [(step, seconds, rel_l2), ...], "rel_l2", "rmse",
    "time_s", "steps", "train_history"}`` (``seconds``/``time_s``: training time
    without the evaluations; errors NaN when the problem has no exact solution)."""
    steps = int(steps)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = PDEPinn(problem, width=width, depth=depth, act=act, interior=interior, boundary=boundary,
                        boundary_weight=boundary_weight, dtype=dtype).to(device)
    pts = exact = None
    if problem.exact is not None:
        if exact_eval_points is None:
            exact_eval_points = problem.region.interior(n_eval, torch.Generator().manual_seed(seed + 7919),
                                                        dtype=torch.float64)
        pts = {k: torch.as_tensor(exact_eval_points[k]) for k in model.coords}
        exact = problem.exact(pts).detach().to(torch.float64)
    tracker = _Tracker(model, callback_every, pts, exact, steps)
    tracker.record(0, 0.0)
    config = TrainConfig(steps=steps, lr=lr, schedule=Cosine(), seed=seed, progress=False,
                         log_every=int(callback_every or 50), checkpoint_every=0)
    trainer = Trainer(model, model.loss, config=config, out_dir=out_dir, callbacks=[tracker])
    hist = trainer.fit()
    if tracker.history[-1][0] != steps:
        tracker.record(steps, trainer.elapsed - tracker.eval_s)
    _, seconds, err = tracker.history[-1]
    rmse = float("nan")
    if pts is not None:
        with torch.no_grad():
            rmse = float(((model(pts).double().cpu() - exact) ** 2).mean().sqrt())
    return {"model": model, "history": tracker.history, "rel_l2": err, "rmse": rmse, "time_s": seconds,
            "steps": steps, "train_history": hist}

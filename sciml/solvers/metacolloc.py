"""MetaColloc: a frozen meta-learned basis, then any PDE by least squares.

Z. Yang, "MetaColloc: Optimization-Free PDE Solving via Meta-Learned Basis
Functions", arXiv 2605.12368 (facts from the authors' code,
VincentdeCristo/MetaColloc; this implementation is ours).

Offline (:class:`MetaFit`, trained by the shared :class:`~sciml.train.Trainer`):
a :class:`~sciml.nn.basis.DualBranchBasis` ``Phi: [0,1]^d -> R^H`` is trained so
that, for random fields ``y`` (:mod:`sciml.domain.random_fields`), the ridge fit
``w = (Phi^T Phi + lam I)^{-1} Phi^T y`` on *fit* points predicts ``y`` on
*held-out* points; the loss is the held-out mean squared error, differentiated
through the solve. One departure, measured in ``benchmarks/metacolloc.py``: the
tasks of one step share their points, so the basis is evaluated once per step
instead of once per task (the ``(H, H)`` Gram matrix is factored once and every
task is one more right-hand side). The points are fresh every step, so the
expected loss is the authors'.

Online (:func:`solve`): ``u = Phi(s(x)) w`` with ``s`` the affine map of the
region's bounding box onto the unit cube. Interior rows ``sum_j p_j D_j Phi``
(``p_j`` the partial derivatives of the operator with respect to the derivative
``D_j u``), boundary rows ``a Phi + b n.grad Phi``; every row (and its right-hand
side) scaled to max-norm ``row_scale`` (boundary rows times ``boundary_weight``);
one least-squares solve for linear operators, Newton–Raphson with a backtracking
line search on the scaled residual for nonlinear ones, stopped when the relative
step or the residual falls below ``tol`` (or stagnates).
"""
from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

import torch
from torch import nn

from ..domain.geometry import Points
from ..nn.basis import DualBranchBasis, basis_jets
from ..residual import Forward, derivatives
from ..errors import SolveFailed
from .least_squares import SVD


# ---- the basis on disk -------------------------------------------------------------------------
def save_basis(path: str | Path, basis: DualBranchBasis, manifest: dict) -> None:
    """``path`` (.pt: spec + weights) and ``path.with_suffix('.json')`` (the manifest)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save({"spec": basis.spec(), "state": {k: v.detach().cpu() for k, v in basis.state_dict().items()}}, tmp)
    tmp.replace(path)
    path.with_suffix(".json").write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")


def load_basis(path: str | Path, *, dtype=torch.float64, device="cpu") -> tuple[DualBranchBasis, dict]:
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no trained basis at {path} (train one with `sciml metacolloc train`)")
    blob = torch.load(path, map_location="cpu", weights_only=True)
    basis = DualBranchBasis(**blob["spec"])
    basis.load_state_dict(blob["state"])
    man = path.with_suffix(".json")
    manifest = json.loads(man.read_text()) if man.exists() else {}
    basis = basis.to(device=device, dtype=dtype).requires_grad_(False).eval()
    return basis, manifest


# ---- meta-training -------------------------------------------------------------------------------
def ridge_fit(phi: torch.Tensor, y: torch.Tensor, lam: float) -> torch.Tensor:
    """``(Phi^T Phi + lam I)^{-1} Phi^T y`` for ``phi (N, H)``, ``y (N, T)`` -> ``(H, T)``
    (Cholesky; LU when the Gram matrix is numerically indefinite)."""
    gram = phi.T @ phi
    gram = gram + lam * torch.eye(gram.shape[0], dtype=gram.dtype, device=gram.device)
    rhs = phi.T @ y
    L, info = torch.linalg.cholesky_ex(gram)
    if int(info) == 0:
        return torch.cholesky_solve(rhs, L)
    return torch.linalg.solve(gram, rhs)


class MetaFit(nn.Module):
    """The meta-training objective (a formulation for the shared trainer)."""

    def __init__(self, basis: DualBranchBasis, fields, *, tasks: int = 32, fit_points: int = 4000,
                 test_points: int = 1500, ridge: float = 1e-8, shared_points: bool = True):
        super().__init__()
        if min(tasks, fit_points, test_points) < 1 or not ridge > 0:
            raise ValueError("MetaFit needs tasks, fit_points, test_points >= 1 and ridge > 0")
        self.basis, self.fields = basis, fields
        self.tasks, self.fit_points, self.test_points = tasks, fit_points, test_points
        self.ridge, self.shared_points = float(ridge), shared_points

    def _points(self, n, generator):
        p = next(self.basis.parameters())
        return torch.rand(n, self.basis.dim, generator=generator, device=p.device, dtype=p.dtype)

    def errors(self, generator: torch.Generator, tasks: Optional[int] = None) -> torch.Tensor:
        """Per-task held-out squared errors ``(T,)`` (mean over the points)."""
        T, nf = tasks or self.tasks, self.fit_points
        if self.shared_points:
            x = self._points(nf + self.test_points, generator)
            y = self.fields.sample(T, x, generator).T                     # (N, T)
            phi = self.basis(x)
            w = ridge_fit(phi[:nf], y[:nf], self.ridge)
            return ((phi[nf:] @ w - y[nf:]) ** 2).mean(0)
        out = []
        for _ in range(T):                                                 # the authors' way: own points
            x = self._points(nf + self.test_points, generator)
            y = self.fields.sample(1, x, generator).T
            phi = self.basis(x)
            w = ridge_fit(phi[:nf], y[:nf], self.ridge)
            out.append(((phi[nf:] @ w - y[nf:]) ** 2).mean(0))
        return torch.cat(out)

    def loss(self, step: int, generator: torch.Generator) -> dict:
        return {"heldout_mse": self.errors(generator).mean()}

    @torch.no_grad()
    def score(self, seed: int = 12345, tasks: int = 64) -> float:
        """Held-out relative RMS error over ``tasks`` fixed validation fields (fields have
        unit variance, so this is the RMS error itself)."""
        p = next(self.basis.parameters())
        g = torch.Generator(device=p.device).manual_seed(seed)
        return float(self.errors(g, tasks).mean().sqrt())


# ---- collocation ------------------------------------------------------------------------------
class UnitMapped(nn.Module):
    """The basis as a function of named coordinates on the region's bounding box."""

    def __init__(self, basis: nn.Module, bounds):
        super().__init__()
        self.basis = basis
        self.names = bounds.names
        lo, hi = bounds.lo_hi(dtype=torch.float64)
        self.register_buffer("lo", lo)
        self.register_buffer("scale", 1.0 / (hi - lo))

    def forward(self, points: Points) -> torch.Tensor:
        x = torch.stack([points[n] for n in self.names], dim=-1)
        return self.basis((x - self.lo.to(x)) * self.scale.to(x))


class Waves(nn.Module):
    """Extra columns ``cos(omega_j . x)`` and ``sin(omega_j . x)`` for given wavevectors
    ``omega (M, d)`` in the problem's coordinates, with exact derivatives:
    ``d^idx cos(theta) = prod_i omega_{idx_i} * cos^{(|idx|)}(theta)``.

    * :meth:`plane_waves` ``(k, directions)``: ``|omega| = k`` in evenly spaced
      directions (2D): every column solves the homogeneous Helmholtz equation
      ``lap u + k^2 u = 0`` exactly (a Trefftz enrichment), so the boundary data
      picks the combination;
    * :meth:`fourier` ``(kmax, box)``: ``omega = pi (m / L_x, n / L_y)``, ``0 <= m <= kmax``,
      ``-kmax <= n <= kmax``: with cos and sin this spans every product
      ``sin/cos(m pi x/L_x) sin/cos(n pi y/L_y)``, a tensor Fourier basis.
    """

    def __init__(self, names, omega: torch.Tensor):
        super().__init__()
        self.names = tuple(names)
        self.register_buffer("omega", torch.as_tensor(omega, dtype=torch.float64))

    @classmethod
    def plane_waves(cls, names, k: float, directions: int) -> "Waves":
        if len(names) != 2:
            raise ValueError("plane-wave enrichment is for 2D problems")
        th = torch.arange(directions, dtype=torch.float64) * (math.pi / directions)   # cos and sin cover +-
        return cls(names, k * torch.stack([torch.cos(th), torch.sin(th)], dim=-1))

    @classmethod
    def fourier(cls, names, kmax: int, box) -> "Waves":
        if len(names) != 2:
            raise ValueError("Fourier enrichment is for 2D problems")
        lx, ly = box[names[0]].length, box[names[1]].length
        m, n = torch.meshgrid(torch.arange(kmax + 1.0), torch.arange(-kmax, kmax + 1.0), indexing="ij")
        keep = ~((m == 0) & (n < 0))                                # (0, -n) duplicates (0, n)
        om = torch.stack([m[keep] * math.pi / lx, n[keep] * math.pi / ly], dim=-1)
        return cls(names, om.to(torch.float64))

    @property
    def n_columns(self) -> int:
        return 2 * self.omega.shape[0]

    def columns(self, points: Points, idx=()) -> torch.Tensor:
        x = torch.stack([points[n] for n in self.names], dim=-1)
        om = self.omega.to(x)
        th = x @ om.T                                               # (N, M)
        c, s = torch.cos(th), torch.sin(th)
        derivs = [(c, s), (-s, c), (-c, -s), (s, -c)][len(idx)]    # d^n of (cos, sin)
        factor = torch.ones(om.shape[0], dtype=x.dtype, device=x.device)
        for name in idx:
            factor = factor * om[:, self.names.index(name)]
        return torch.cat([derivs[0] * factor, derivs[1] * factor], dim=-1)


class Enriched(nn.Module):
    """A mapped basis with extra analytic columns (:class:`Waves`) appended."""

    def __init__(self, fn: nn.Module, waves: Waves):
        super().__init__()
        self.fn, self.waves = fn, waves
        self.names = fn.names

    def forward(self, points: Points) -> torch.Tensor:
        return torch.cat([self.fn(points), self.waves.columns(points)], dim=-1)


def basis_derivatives(fn: nn.Module, points: Points, indices, *, chunk: int = 2048, engine=Forward()) -> dict:
    """Values and input derivatives ``{idx: (N, H)}`` of the basis, in point chunks.

    A :class:`UnitMapped` dual-branch basis is differentiated in Taylor mode
    (:func:`sciml.nn.basis.basis_jets`: one forward sweep per direction, mixed
    derivatives by polarization; 3-9x faster than nested ``jvp``); any other module by
    the residual engine ``engine``."""
    if isinstance(fn, Enriched):
        d = basis_derivatives(fn.fn, points, indices, chunk=chunk, engine=engine)
        return {i: torch.cat([v, fn.waves.columns(points, i)], dim=-1) for i, v in d.items()}
    n = next(iter(points.values())).shape[0]
    wanted = [tuple(i) for i in indices if i]
    jets = isinstance(fn, UnitMapped) and hasattr(fn.basis, "taylor")
    if jets:
        pos = {name: k for k, name in enumerate(fn.names)}
        keys = [()] + wanted
        # the widest intermediate is (directions, chunk, 4H): keep it near 256 MiB
        order = max((len(i) for i in keys), default=0)
        dirs = max(1, 2 ** order * len(keys))
        chunk = max(64, min(chunk, (2 ** 25) // max(1, dirs * 4 * fn.basis.n_basis)))
    parts = []
    for a in range(0, n, chunk):
        sub = {k: v[a:a + chunk] for k, v in points.items()}
        with torch.no_grad():
            if jets:
                x = torch.stack([sub[name] for name in fn.names], dim=-1)
                scale = fn.scale.to(x)
                out = basis_jets(fn.basis, (x - fn.lo.to(x)) * scale,
                                 [tuple(pos[c] for c in i) for i in keys], scale=scale)
                d = {i: out[tuple(pos[c] for c in i)] for i in keys}
            else:
                with torch.enable_grad() if not isinstance(engine, Forward) else torch.no_grad():
                    d = derivatives(fn, sub, wanted, engine=engine)
        parts.append({k: v.detach() for k, v in d.items()})
    return {k: torch.cat([p[k] for p in parts]) for k in parts[0]}


@dataclass(frozen=True)
class MaxNormRows:
    """Every row (and its right-hand side) divided by its largest entry, times
    ``scale`` (the authors' equilibration, ``scale = 100``)."""

    scale: float = 100.0

    def __call__(self, rows: torch.Tensor) -> torch.Tensor:
        return self.scale / (rows.abs().amax(dim=1) + 1e-12)


@dataclass(frozen=True)
class UnitRows:
    """Rows as written: the PDE residual in units of the source, boundary residuals
    in units of the data (times ``boundary_weight``)."""

    scale: float = 1.0

    def __call__(self, rows: torch.Tensor) -> torch.Tensor:
        return torch.full((rows.shape[0],), float(self.scale), dtype=rows.dtype, device=rows.device)


@dataclass(frozen=True)
class Newton:
    """Newton–Raphson settings: stop when ``||dw|| <= tol ||w||`` or the scaled residual
    is below ``tol`` relative to the right-hand side, or it no longer decreases.

    ``lstsq``: the least-squares solver of every step of a nonlinear solve. Its rank
    cut sits above the rounding noise (rcond 1e-13): with the linear solves' 1e-15 the
    kept singular directions change with the BLAS thread count and Gauss–Newton
    follows them (Sine-Gordon RMSE 5.1e-8 on 2 threads, 3.6e-7 on 1, 12-18 steps); at
    1e-13 the result is the same on both (4.4e-7) and converges in 4 steps.
    ``polish``: then up to this many steps with the linear solves' finer cut, each
    kept only if it lowers the weighted residual (Sine-Gordon 4.4e-7 -> 1.0e-8 / 9.2e-9
    on 1 / 2 threads with 3)."""

    max_iter: int = 50
    tol: float = 1e-12
    line_search: bool = True
    lstsq: object = SVD(1e-13, columns=True)
    polish: int = 3


@dataclass(frozen=True)
class Collocation:
    """How the system is built and solved (see the module doc)."""

    interior: int = 4000
    boundary: int = 1200
    rows: Callable = MaxNormRows()        # row weights, fixed at w = 0 (MaxNormRows / UnitRows)
    boundary_weight: float = 0.01
    lstsq: object = SVD(1e-15, columns=True)
    newton: Newton = Newton()
    chunk: int = 2048
    seed: int = 0
    enrich: Optional[Callable] = None     # (names, box) -> Waves: extra analytic columns


@dataclass
class CollocationSolution:
    basis: nn.Module                 # UnitMapped
    w: torch.Tensor
    info: dict = field(default_factory=dict)

    @torch.no_grad()
    def __call__(self, points: Points) -> torch.Tensor:
        out = []
        n = next(iter(points.values())).shape[0]
        for a in range(0, n, 8192):
            out.append(self.basis({k: v[a:a + 8192] for k, v in points.items()}) @ self.w)
        return torch.cat(out)


def _require_finite(what: str, x: torch.Tensor) -> None:
    """A :class:`SolveFailed` naming ``what`` and at how many collocation points (rows)
    it is inf or NaN."""
    bad = ~torch.isfinite(x)
    if bad.any():
        rows = int(bad.reshape(len(x), -1).any(1).sum())
        raise SolveFailed(f"{what}: non-finite values (inf or NaN) at {rows} of {len(x)} collocation points; "
                          "look for a division by zero, log or sqrt of a negative number, or an "
                          "overflow (exp of a large value, a huge constant) in problem.operator, f "
                          "and the boundary data")


class _System:
    """The pieces of the collocation system that do not change between Newton steps."""

    def __init__(self, problem, basis, opts: Collocation, dtype, device):
        g = torch.Generator(device=device).manual_seed(opts.seed)
        region = problem.region
        self.fn = UnitMapped(basis, region.bounds).to(device=device, dtype=dtype)
        if opts.enrich is not None:
            self.fn = Enriched(self.fn, opts.enrich(tuple(region.names), region.bounds).to(device))
        self.op = problem.operator
        self.opts = opts
        self.xi = region.interior(opts.interior, g, dtype=dtype)
        self.xi = {k: v.to(device) for k, v in self.xi.items()}
        self.D = basis_derivatives(self.fn, self.xi, self.op.indices, chunk=opts.chunk)
        self.f = problem.source(self.xi).to(dtype)
        self.linear = self.op.is_linear(self.xi, g)
        rows, rhs = [], []
        coords = problem.coords
        for bc in problem.boundary:
            share = opts.boundary // max(len(problem.boundary), 1)
            bp = _boundary_points(region, share, g, bc.parts, dtype)
            pts = {k: v.to(device) for k, v in bp.points.items()}
            normal = bp.normal.to(device=device, dtype=dtype)
            a, b = bc.coefficients
            need = [(c,) for c in coords] if b != 0 else []
            d = basis_derivatives(self.fn, pts, need, chunk=opts.chunk)
            row = a * d[()]
            if b != 0:
                row = row + b * sum(d[(c,)] * normal[:, k:k + 1] for k, c in enumerate(coords))
            rows.append(row)
            rhs.append(bc.value(pts, normal).to(dtype))
        self.B = torch.cat(rows) if rows else torch.zeros(0, self.D[()].shape[1], dtype=dtype, device=device)
        self.g = torch.cat(rhs) if rhs else torch.zeros(0, dtype=dtype, device=device)
        self.n_boundary = self.B.shape[0]
        _require_finite("the source f", self.f)           # once: they do not change between Newton steps
        _require_finite("the boundary data", self.g)
        # fixed row scales for the Newton merit function (those of the system at w = 0)
        zero = torch.zeros(self.D[()].shape[1], dtype=dtype, device=device)
        J0 = self._jacobian(zero)[1]
        self.s_int = opts.rows(J0)
        self.s_bnd = opts.rows(self.B) * opts.boundary_weight

    def _jacobian(self, w):
        Du = {i: self.D[i] @ w for i in self.op.indices}
        val, partials = self.op.linearize(Du, self.xi)
        return val, sum(partials[i][:, None] * self.D[i] for i in self.op.indices)

    def merit(self, w) -> float:
        """Norm of the scaled nonlinear residual, with the scales fixed at ``w = 0``."""
        Du = {i: self.D[i] @ w for i in self.op.indices}
        r_int = (self.f - self.op(Du, self.xi)) * self.s_int
        r_bnd = (self.g - self.B @ w) * self.s_bnd
        return float(torch.sqrt((r_int ** 2).sum() + (r_bnd ** 2).sum()))

    def linearized(self, w: torch.Tensor):
        """Rows and right-hand side of the Newton step at ``w`` (for a linear operator at
        ``w = 0`` this is the whole system)."""
        val, J = self._jacobian(w)
        where = " at the current Newton iterate" if w.any() else ""
        _require_finite(f"the operator's rows{where}", J)
        _require_finite(f"the operator's value{where}", val)
        r_int = self.f - val                       # interior residual of the current iterate
        r_bnd = self.g - self.B @ w
        si, sb = self.s_int, self.s_bnd
        return torch.cat([J * si[:, None], self.B * sb[:, None]]), torch.cat([r_int * si, r_bnd * sb])


def _boundary_points(region, n, generator, parts, dtype):
    """Evenly spaced points on box faces (reproducible rows), random points elsewhere."""
    grid = getattr(region, "grid_boundary", None)
    if grid is not None:
        faces = len(region.parts) if parts is None else len(parts)
        return grid(max(1, n // faces), parts=parts, device=generator.device, dtype=dtype)
    return region.boundary(n, generator, parts=parts, dtype=dtype)


def solve(problem, basis: nn.Module, *, options: Collocation = Collocation(), device="cpu",
          dtype=torch.float64) -> CollocationSolution:
    """Solve ``problem`` (:class:`~sciml.physics.pde.PDEProblem`) with the frozen ``basis``."""
    t0 = time.perf_counter()
    sys = _System(problem, basis, options, dtype, torch.device(device))
    t_assemble = time.perf_counter() - t0
    H = sys.D[()].shape[1]
    w = torch.zeros(H, dtype=dtype, device=sys.D[()].device)
    history = []
    newton = options.newton
    lstsq = options.lstsq if sys.linear else newton.lstsq
    A, b = sys.linearized(w)
    res = lstsq.solve(A, b)
    w = res.w
    info = dict(res.info())
    iters = 1
    if not sys.linear:
        scale = sys.merit(torch.zeros_like(w)) or 1.0
        r_prev = sys.merit(w)
        history.append(r_prev / scale)
        for iters in range(2, newton.max_iter + 1):
            A, b = sys.linearized(w)
            res = lstsq.solve(A, b)
            step, lam = res.w, 1.0
            r_new = sys.merit(w + step)
            while newton.line_search and r_new > r_prev and lam > 1e-4:
                lam *= 0.5
                r_new = sys.merit(w + lam * step)
            if r_new > r_prev:            # no decrease along the Newton direction: stagnation
                break
            w = w + lam * step
            history.append(r_new / scale)
            small_step = float(torch.linalg.vector_norm(lam * step)) <= newton.tol * float(torch.linalg.vector_norm(w))
            converged = r_new <= newton.tol * scale
            stagnated = r_new > 0.999 * r_prev
            r_prev = r_new
            if small_step or converged or stagnated:
                break
        # polish: steps with the linear solves' (finer) rank cut, each kept only if it
        # lowers the weighted residual
        for _ in range(newton.polish):
            A, b = sys.linearized(w)
            step = options.lstsq.solve(A, b).w
            r_new = sys.merit(w + step)
            if not r_new < r_prev:
                break
            w, r_prev = w + step, r_new
            history.append(r_new / scale)
            iters += 1
        info.update(res.info())
    if history:
        info["newton_residual"] = history[-1]    # weighted residual relative to that of u = 0
    info.update({"linear": sys.linear, "newton_iterations": iters, "residual_history": history,
                 "rows_interior": int(sys.D[()].shape[0]), "rows_boundary": sys.n_boundary, "n_basis": H,
                 "time_assemble": t_assemble, "time_total": time.perf_counter() - t0})
    return CollocationSolution(sys.fn, w, info)


# ---- the solver object of `solver: {kind: metacolloc}` ---------------------------------------------
class BasisMismatch(ValueError):
    """The basis does not fit the problem (its dimension)."""


def basis_path(name: str, base_dir: Optional[Path] = None) -> Path:
    """``"2d"``/``"3d"`` -> the shipped basis in ``data/metacolloc/``; else a path,
    relative to the working directory when it exists there, else to ``base_dir`` (the
    problem file's folder)."""
    if name in ("2d", "3d"):
        from .. import shipped
        return shipped.path("data", "metacolloc", f"basis_{name}.pt")
    p = Path(name)
    if p.is_absolute() or base_dir is None or p.exists():
        return p
    return base_dir / p


def _grid_points(region, n: int, time: Optional[str], dtype):
    """An ``n x n`` grid over the first two coordinates of the bounding box; further
    coordinates fixed at their middle (time: its final value). Points outside the
    region are NaN in the returned mask."""
    box = region.bounds
    ivs = box.intervals
    axes = [torch.linspace(iv.lo, iv.hi, n, dtype=dtype) for iv in ivs[:2]]
    A, B = torch.meshgrid(*axes, indexing="ij")
    pts = {ivs[0].name: A.flatten(), ivs[1].name: B.flatten()}
    fixed = {}
    for iv in ivs[2:]:
        v = iv.hi if iv.name == time else 0.5 * (iv.lo + iv.hi)
        pts[iv.name] = torch.full_like(A.flatten(), v)
        fixed[iv.name] = v
    inside = region.contains(pts)
    return pts, inside, {ivs[0].name: axes[0].numpy(), ivs[1].name: axes[1].numpy()}, fixed


@dataclass
class MetaCollocSolver:
    basis: str = "2d"
    options: Collocation = Collocation()
    device: str = "auto"
    base_dir: Optional[Path] = None
    name: str = "metacolloc"

    def load(self, device):
        return load_basis(basis_path(self.basis, self.base_dir), device=device)

    def solve_pde(self, problem, *, eval_points: int = 10000, grid: int = 101) -> dict:
        from .apnn import resolve_device

        device = resolve_device(self.device)
        basis, manifest = self.load(device)
        if basis.dim != len(problem.coords):
            raise BasisMismatch(f"the basis {self.basis!r} is {basis.dim}D but the problem has coordinates "
                                f"{', '.join(problem.coords)}; use a {len(problem.coords)}D basis"
                                + (f" (basis: {len(problem.coords)}d)" if len(problem.coords) in (2, 3) else ""))
        sol = solve(problem, basis, options=self.options, device=device)
        metrics = {k: v for k, v in sol.info.items() if isinstance(v, (int, float, bool))}
        g = torch.Generator(device=device).manual_seed(self.options.seed + 1)
        pts, inside, axes, fixed = _grid_points(problem.region, grid, problem.time, torch.float64)
        pts = {k: v.to(device) for k, v in pts.items()}
        u = sol(pts).cpu()
        u[~inside.cpu()] = float("nan")
        shape = (grid, grid)
        fields = {"u": u.reshape(shape).numpy()}
        reference = {}
        if problem.exact is not None:
            xe = problem.region.interior(eval_points, g, dtype=torch.float64)
            ue, ux = sol(xe), problem.exact(xe)
            err = ue - ux
            metrics["rmse"] = float(err.pow(2).mean().sqrt())
            metrics["rel_l2_u"] = float(err.norm() / ux.norm().clamp_min(1e-300))
            metrics["max_abs_error"] = float(err.abs().max())
            ex = problem.exact(pts).cpu()
            ex[~inside.cpu()] = float("nan")
            reference["u"] = ex.reshape(shape).numpy()
            metrics["reference"] = "exact solution"
        meta = {"basis": str(basis_path(self.basis, self.base_dir)), "basis_manifest": json.dumps(manifest),
                "slice": json.dumps(fixed), "residual_history": json.dumps(sol.info["residual_history"])}
        return {"fields": fields, "grid": axes, "reference": reference, "metrics": metrics, "meta": meta,
                "solution": sol}

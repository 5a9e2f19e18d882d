r"""Classical second-order finite differences for a linear PDE on a 2D box with
Dirichlet data: the baseline MetaColloc and the PINN are compared against.

The problem is ``N[u] = f`` (a :class:`~sciml.physics.pde.PDEProblem`) with an
operator that is affine in ``u`` and its derivatives up to second order,

.. math::

    N[u](x) = c_0(x) + c_u(x) u + c_x u_x + c_y u_y + c_{xx} u_{xx} + c_{xy} u_{xy} + c_{yy} u_{yy},

whose coefficients are read off the operator itself:
``c_idx = dN/dD_idx`` and ``c_0 = N(0)`` from
:meth:`~sciml.physics.pde.Operator.linearize` at ``u = 0`` at the grid nodes.

Grid: ``(n + 2) x (n + 2)`` uniform nodes including the boundary
(``h_k = L_k / (n + 1)``), ``n x n`` unknowns. Standard central stencils
(e.g. LeVeque, *Finite Difference Methods for Ordinary and Partial
Differential Equations*, SIAM 2007, ch. 1-3; Strikwerda, *Finite Difference
Schemes and PDEs*, 2nd ed., SIAM 2004):

* ``u_x  ~ (u_{i+1,j} - u_{i-1,j}) / (2 h_x)``                     (2-point)
* ``u_xx ~ (u_{i+1,j} - 2 u_{i,j} + u_{i-1,j}) / h_x^2``           (3-point)
* ``u_xy ~ (u_{i+1,j+1} - u_{i+1,j-1} - u_{i-1,j+1} + u_{i-1,j-1}) / (4 h_x h_y)``

all second order, so for smooth solutions the nodal error is ``O(h^2)``.
Boundary nodes carry the Dirichlet values (a Robin row with ``beta = 0`` counts as
Dirichlet data ``u = g / alpha``), moved to the right-hand side; the
sparse system (CSR) is solved by SuperLU (:func:`scipy.sparse.linalg.spsolve`,
minimum-degree ordering on ``A + A^T``: the stencils are structurally symmetric;
about half the time and fill of the default COLAMD on this machine). The direct
solve is limited to ``n <= MAX_N = 2048`` (about 50 s and 6 GB there; ``n = 4096``
exhausts the memory and crashes SuperLU).

:func:`fd_to_accuracy` doubles ``n`` until the nodal relative L2 error reaches a
target: the "time at equal accuracy" of a comparison.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import torch

__all__ = ["FDResult", "solve_fd", "fd_to_accuracy", "MAX_N"]

MAX_N = 2048


@dataclass(eq=False)
class FDResult:
    """A finite-difference solution on the full grid (boundary nodes included).

    ``x``, ``y``: the grid axes ``(n + 2,)`` (named ``names``); ``u``: nodal values
    ``(n + 2, n + 2)``, ``u[i, j]`` at ``(x[i], y[j])``; ``time_s``: seconds for
    coefficients, assembly and solve."""

    x: np.ndarray
    y: np.ndarray
    u: np.ndarray
    time_s: float
    names: tuple[str, str] = ("x", "y")
    _interp: object = field(default=None, repr=False)

    @property
    def n(self) -> int:
        """Interior nodes per direction."""
        return len(self.x) - 2

    def _nodes(self, interior: bool = True) -> dict:
        sl = slice(1, -1) if interior else slice(None)
        X, Y = np.meshgrid(self.x[sl], self.y[sl], indexing="ij")
        return {self.names[0]: torch.from_numpy(X.ravel()), self.names[1]: torch.from_numpy(Y.ravel())}

    def __call__(self, points) -> torch.Tensor:
        """Interpolated values at named points ``{name: (N,)}`` (cubic spline of the
        nodal values, linear on grids too small for it). Interpolation adds its own
        error; compare at the nodes (:meth:`error`) for the scheme's accuracy."""
        from scipy.interpolate import RegularGridInterpolator

        if self._interp is None:
            method = "cubic" if self.n + 2 >= 4 else "linear"
            self._interp = RegularGridInterpolator((self.x, self.y), self.u, method=method)
        ref = points[self.names[0]]
        xy = np.stack([torch.as_tensor(points[k]).detach().cpu().double().numpy() for k in self.names], axis=-1)
        out = torch.from_numpy(np.asarray(self._interp(xy)))
        return out.to(dtype=ref.dtype if torch.is_tensor(ref) and ref.is_floating_point() else torch.float64)

    def error(self, problem) -> dict:
        """``rmse`` and ``rel_l2_u`` of the nodal values against ``problem.exact`` at the
        interior nodes (``max_abs`` too)."""
        if problem.exact is None:
            raise ValueError(f"problem {problem.name!r} has no exact solution to compare with")
        ex = problem.exact(self._nodes()).detach().double().numpy()
        err = self.u[1:-1, 1:-1].ravel() - ex
        return {"rmse": float(np.sqrt(np.mean(err ** 2))),
                "rel_l2_u": float(np.linalg.norm(err) / max(np.linalg.norm(ex), 1e-300)),
                "max_abs": float(np.abs(err).max())}


def _check(problem):
    """The box and the Dirichlet conditions per part (ValueError for anything else)."""
    from ..domain.regions import BoxRegion

    region = problem.region
    if not isinstance(region, BoxRegion):
        raise ValueError(f"finite differences need a box region (BoxRegion), got {type(region).__name__}")
    if region.dim != 2:
        raise ValueError(f"finite differences are implemented in 2D only, got a {region.dim}D box")
    by_part = {}
    for bc in problem.boundary:
        a, b = bc.coefficients
        if b != 0 or a == 0:
            raise ValueError(f"finite differences need Dirichlet data on the whole boundary; got a {bc.kind} "
                             f"condition on {list(bc.parts or region.parts)}")
        for p in bc.parts or region.parts:
            by_part.setdefault(p, (bc, a))
    missing = [p for p in region.parts if p not in by_part]
    if missing:
        raise ValueError(f"finite differences need Dirichlet data on the whole boundary; no condition on {missing}")
    bad = [i for i in problem.operator.indices if len(i) > 2]
    if bad:
        raise ValueError(f"finite differences support derivatives up to second order; the operator uses "
                         f"{['u_' + ''.join(i) for i in bad]}")
    return region, by_part


def solve_fd(problem, n: int) -> FDResult:
    """Second-order central-difference solve of a linear ``problem`` on ``n x n``
    interior nodes (see the module doc). ValueError for a nonlinear operator, a
    region other than a 2D box, third-order derivatives, or boundary data other
    than Dirichlet on every part."""
    import scipy.sparse as sp
    from scipy.sparse.linalg import spsolve

    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"n must be a positive integer, got {n!r}")
    if n > MAX_N:
        raise ValueError(f"n = {n} > MAX_N = {MAX_N}: the sparse direct solve would not fit in memory")
    n = int(n)
    region, by_part = _check(problem)
    op, (cx, cy) = problem.operator, region.names
    ivx, ivy = region.bounds.intervals
    dt = torch.float64
    g = torch.Generator().manual_seed(0)
    probe = region.interior(64, g, dtype=dt)
    if not op.is_linear(probe, g):
        text = problem.info.get("operator")
        raise ValueError("finite differences need a linear operator; " + (f"{text!r}" if text else "the operator")
                         + " is nonlinear in u")

    t0 = time.perf_counter()
    x = np.linspace(ivx.lo, ivx.hi, n + 2)
    y = np.linspace(ivy.lo, ivy.hi, n + 2)
    hx, hy = (ivx.hi - ivx.lo) / (n + 1), (ivy.hi - ivy.lo) / (n + 1)
    X, Y = np.meshgrid(x, y, indexing="ij")
    U = np.zeros((n + 2, n + 2))

    # Dirichlet values on the boundary ring (at a corner the x face's condition is
    # used; the corners enter only the u_xy stencil)
    faces = {f"{cx}_lo": (0, slice(None)), f"{cx}_hi": (-1, slice(None)),
             f"{cy}_lo": (slice(None), 0), f"{cy}_hi": (slice(None), -1)}
    for part in reversed(region.parts):
        bc, a = by_part[part]
        idx = faces[part]
        pts = {cx: torch.from_numpy(np.ascontiguousarray(X[idx])), cy: torch.from_numpy(np.ascontiguousarray(Y[idx]))}
        k = region.parts.index(part)
        normal = torch.zeros(len(pts[cx]), 2, dtype=dt)
        normal[:, k // 2] = 1.0 if k % 2 else -1.0
        U[idx] = bc.value(pts, normal).detach().double().numpy() / a

    # coefficients at the interior nodes
    Xi, Yi = X[1:-1, 1:-1].ravel(), Y[1:-1, 1:-1].ravel()
    pts = {cx: torch.from_numpy(Xi.copy()), cy: torch.from_numpy(Yi.copy())}
    zero = {i: torch.zeros(n * n, dtype=dt) for i in op.indices}
    c0, parts = op.linearize(zero, pts)
    rhs = (problem.source(pts).detach().double() - c0.double()).numpy().reshape(n, n)

    # stencil weights per offset (di, dj): sum over the operator's derivatives
    stencils = {(0, 0): {(0, 0): 1.0},
                (1, 0): {(1, 0): 1 / (2 * hx), (-1, 0): -1 / (2 * hx)},
                (0, 1): {(0, 1): 1 / (2 * hy), (0, -1): -1 / (2 * hy)},
                (2, 0): {(1, 0): 1 / hx ** 2, (0, 0): -2 / hx ** 2, (-1, 0): 1 / hx ** 2},
                (0, 2): {(0, 1): 1 / hy ** 2, (0, 0): -2 / hy ** 2, (0, -1): 1 / hy ** 2},
                (1, 1): {(1, 1): 1 / (4 * hx * hy), (1, -1): -1 / (4 * hx * hy),
                         (-1, 1): -1 / (4 * hx * hy), (-1, -1): 1 / (4 * hx * hy)}}
    weights: dict = {}
    for i, c in parts.items():
        c = c.detach().double().numpy().reshape(n, n)
        if not np.any(c):
            continue
        for off, w in stencils[(i.count(cx), i.count(cy))].items():
            weights[off] = weights.get(off, 0.0) + w * c

    I, J = np.meshgrid(np.arange(1, n + 1), np.arange(1, n + 1), indexing="ij")
    row = (I - 1) * n + (J - 1)
    rows, cols, vals = [], [], []
    for (di, dj), w in weights.items():
        Ni, Nj = I + di, J + dj
        inside = (Ni >= 1) & (Ni <= n) & (Nj >= 1) & (Nj <= n)
        rows.append(row[inside])
        cols.append(((Ni - 1) * n + (Nj - 1))[inside])
        vals.append(w[inside])
        rhs[~inside] -= w[~inside] * U[Ni[~inside], Nj[~inside]]
    A = sp.coo_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
                      shape=(n * n, n * n)).tocsr()
    U[1:-1, 1:-1] = spsolve(A, rhs.ravel(), permc_spec="MMD_AT_PLUS_A").reshape(n, n)
    elapsed = time.perf_counter() - t0
    if not np.all(np.isfinite(U)):
        raise FloatingPointError("the finite-difference system is singular (non-finite solution)")
    return FDResult(x, y, U, elapsed, names=(cx, cy))


def fd_to_accuracy(problem, target_rel_l2: float, n0: int = 16, n_max: int = MAX_N
                   ) -> tuple[list[tuple[int, float, float]], int]:
    """Solve with ``n = n0, 2 n0, ...`` until the nodal relative L2 error
    (:meth:`FDResult.error`) is below ``target_rel_l2`` or ``n`` would exceed
    ``n_max``. Returns ``([(n, rel_l2, time_s), ...], n)`` with ``n`` the first grid
    that reached the target, or the last one tried (check ``history[-1][1]``)."""
    if not target_rel_l2 > 0:
        raise ValueError(f"target_rel_l2 must be > 0, got {target_rel_l2}")
    if problem.exact is None:
        raise ValueError(f"problem {problem.name!r} has no exact solution to measure the error against")
    history, n = [], int(n0)
    while True:
        res = solve_fd(problem, n)
        err = res.error(problem)["rel_l2_u"]
        history.append((n, err, res.time_s))
        if err < target_rel_l2 or 2 * n > n_max:
            return history, n
        n *= 2

r"""Classical asymptotic-preserving (AP) reference solver for the 1D linear
transport equation in diffusive scaling

.. math::

    \varepsilon f_t + v f_x = (\langle f\rangle - f)/\varepsilon,\qquad
    \langle f\rangle = \tfrac12\int_{-1}^{1} f\,dv,\qquad x\in[a,b],\ v\in[-1,1],

whose diffusion limit (``eps -> 0``) is ``rho_t = rho_xx / 3``.

Scheme
------
*Even-odd parity formulation.*  Following Jin, Pareschi and Toscani,
"Uniformly accurate diffusive relaxation schemes for multiscale transport
equations", SIAM J. Numer. Anal. 38 (2000) 913-936, and
Klar, "An asymptotic-induced scheme for nonstationary transport equations in
the diffusive limit", SIAM J. Numer. Anal. 35 (1998) 1073-1094, write for
``v > 0``

    r = (f(v) + f(-v)) / 2,        j = (f(v) - f(-v)) / (2 eps),

which satisfy

    eps^2 r_t + eps^2 v j_x = <r> - r,        eps^2 j_t + v r_x = -j,      (1)

with ``<r> = rho = sum_k w_k r_k`` over the positive Gauss-Legendre nodes
``v_k`` (``numpy.polynomial.legendre.leggauss(nv)``, weights of the positive
half normalised to sum 1; the rule integrates ``v^2`` exactly, so the discrete
limit has the exact diffusion coefficient ``sum_k w_k v_k^2 = 1/3``).

*Space.*  Staggered grid: ``r`` at the ``nx`` cell centres, ``j`` at the
``nx + 1`` faces, central differences (second order).  The staggered central
discretisation of (1) follows Jin, Pareschi and Toscani (2000); the same
staggering (macroscopic unknowns at centres, odd/microscopic ones at faces) is
used by Lemou and Mieussens, "A new asymptotic preserving scheme based on
micro-macro formulation for linear kinetic equations in the diffusion limit",
SIAM J. Sci. Comput. 31 (2008) 334-368.  In the limit it reduces to the
standard three-point Laplacian.

*Boundaries.*  ``Inflow``: the wall is a half cell (``dx/2``) away from the
first/last centre.  At ``x = a`` the incoming data fix ``f(v) = r + eps j = g_L(t, v)``
(``v > 0``), i.e. the wall value ``r_w = g_L - eps j_0``, which is eliminated
from the face equation of ``j_0``:

    eps^2 j_t + (1 + 2 v eps/dx) j_0 = -2 v (r_0 - g_L) / dx,

and likewise at ``x = b`` with ``f(-v) = r - eps j = g_R(t, -v)``.  As ``eps -> 0``
this is the Dirichlet condition ``rho = g`` for isotropic data (the exact limit
for isotropic inflow; for anisotropic inflow the exact limit value is given
by the Milne problem, which this simple condition only approximates).
``Periodic``: both ends wrap around.

*Time.*  Fully implicit BDF2 (first step backward Euler; variable-step BDF2
when a step size changes, backward Euler if the ratio exceeds 2).  Both are
L-stable, so the scheme is AP and has no eps-dependent step restriction
(Jin, "Efficient asymptotic-preserving (AP) schemes for some multiscale
kinetic equations", SIAM J. Sci. Comput. 21 (1999) 441-454; Jin, "Asymptotic
preserving (AP) schemes for multiscale kinetic and hyperbolic equations: a
review", Riv. Mat. Univ. Parma 3 (2012) 177-216).

*Well-conditioned linear algebra (the change from the recommended scheme).*
Eliminating ``j`` face by face gives, per velocity, a tridiagonal system in
``x`` coupled through ``rho``:

    A_k r_k - rho = eps^2 s_k,   A_k = (1 + eps^2 alpha) I - eps^2 v_k^2 L_k,     (2)

(``alpha`` the leading BDF coefficient, ``L_k`` the three-point Laplacian with
face factors ``1/(1 + eps^2 alpha)``).  Solving (2) together with
``rho = sum_k w_k r_k`` is singular as ``eps -> 0`` (the matrix tends to
``I - P`` with ``P`` the projection on isotropic states; at eps = 1e-8 the
diffusion part is O(eps^2 / dt) relative to it and is lost in round-off).  We
therefore keep ``rho`` as an extra unknown and replace its definition by the
*discrete conservation law*, the weighted sum of the r-equations of (1),

    sum_k w_k (alpha r_k - v_k^2 L_k r_k) = sum_k w_k s_k,                       (3)

which is equivalent for every eps > 0 (summing (2) with weights gives back
``rho = sum_k w_k r_k`` by (3)) and is uniformly well-conditioned: at
``eps = 0`` (2)-(3) reduce to ``r_k = rho`` and the BDF2 discretisation of
``rho_t = rho_xx/3`` (the AP property at fixed grid).  The sparse system of size
``nx (nv/2 + 1)`` (unknowns interleaved cell by cell, so it is banded) is
factorised once per distinct step size with ``scipy.sparse.linalg.splu`` (two
factorisations for a constant step: the backward-Euler start and BDF2) and
back-solved each step.  Periodic problems conserve ``sum_i rho_i`` to round-off
(telescoping fluxes in (3)).

Output ``rho`` is ``sum_k w_k r_k`` at the cell centres (point values, second
order); ``f_final`` reconstructs ``f(+-v_k) = r_k +- eps j_k`` with ``j``
averaged from the faces to the centres.  Each back-solve is followed by one
step of iterative refinement, which keeps the periodic mass drift at
round-off level (below 4e-13 relative after 500 steps).

Limitations
-----------
* For eps << dx and *anisotropic* inflow data the wall value of the limit is
  ``3 sum_k w_k v_k^2 g(v_k)`` instead of the Milne-problem value
  ``int_0^1 (sqrt(3)/2) mu H(mu) g(mu) dmu`` (Chandrasekhar's H-function; for
  ``g = v``: 0.75 instead of 0.7104); for isotropic inflow (all benchmark
  problems) it is exact.  A boundary-layer correction (e.g. Lemou and Mehats,
  "Micro-macro schemes for kinetic equations including boundary layers",
  SIAM J. Sci. Comput. 34 (2012) B734-B760) would be needed otherwise.
* The central space discretisation is not monotone: in the kinetic regime
  (eps ~ 1) it ripples at the fronts of discontinuous data (``f`` undershoots by
  up to ~7e-3 for the inflow problem at nx = 100; ``rho`` stayed non-negative in
  all tests).
* At eps ~ 1 the density next to an inflow wall converges slowly in ``nv``
  (``f`` jumps at ``v = 0``); use nv >= 64 there for 1e-2 accuracy.

Measured accuracy (``tests/test_reference_lt.py``; nx = 400 averaged in groups
of 4 onto the 100 reference cells; relative L2 of the density against the APNN
authors' published reference data, ``data/apnns``)::

    eps = 1e-3, nv = 32, t = 0.02 / 0.05 / 0.1 : 3.1e-3 / 2.9e-3 / 2.8e-3
    eps = 1e-8, nv = 32, t = 0.1               : 2.9e-3
    eps = 1,    nv = 128, t = 1                : 9.2e-3  (nv = 32: 1.6e-2, nv = 64: 1.1e-2;
                                                 1600 cells x 256 velocities: 9.0e-3)

which is the accuracy of the reference files themselves (see
``data/apnns/README.md``).  The eps = 1 steady state agrees with an independent
solution of the Peierls integral equation to 6.5e-4 (nx = 100, nv = 32).
Observed orders of convergence in ``nx`` (nx = 50, 100, 200, 400, dt = dx/2,
against exact solutions): eps = 1e-8 periodic 2.08 / 2.03 / 2.01; eps = 1
periodic (exact velocity-discrete Fourier mode) 2.01 / 2.00 / 2.00; eps = 1e-8
sine problem with zero inflow (heat sine series) 2.02 / 2.01 / 2.01.
Cost: nx = 400, nv = 32, eps = 1e-3 to t = 0.1 (200 steps, two factorisations
of a 6800-unknown system): about 0.2 s on one CPU core.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Callable, Sequence, Union

import numpy as np
import scipy.sparse as sp
from scipy.sparse.linalg import splu

from ..physics.linear_transport import Inflow, Periodic

__all__ = ["Inflow", "Periodic", "Boundary", "LTReferenceResult", "solve_linear_transport"]


# boundary conditions are the physics layer's objects (one definition for every solver)
Boundary = Union[Inflow, Periodic]


@dataclass
class LTReferenceResult:
    t: np.ndarray        # (n_t,) output times, exactly the requested ones
    x: np.ndarray        # (n_x,) cell centres
    v: np.ndarray        # (nv,) all Gauss nodes (negative and positive), ascending
    rho: np.ndarray      # (n_t, n_x) density <f>
    f_final: np.ndarray  # (n_x, nv) distribution at the last output time
    info: dict = field(default_factory=dict)


# ----------------------------------------------------------------------------- helpers

def _is_periodic(b) -> bool:
    return isinstance(b, Periodic)


def _check_boundary(b, side: str):
    if _is_periodic(b):
        return
    if not hasattr(b, "g"):
        raise ValueError(f"{side} boundary must be Inflow(g) or Periodic(), got {b!r}")
    g = b.g
    if not callable(g):
        try:
            float(g)
        except (TypeError, ValueError):
            raise ValueError(f"{side} inflow data must be a float or a callable g(t, v), got {g!r}") from None


def _as_array(val, shape) -> np.ndarray:
    if hasattr(val, "detach"):  # a torch tensor
        val = val.detach().cpu().numpy()
    arr = np.asarray(val, dtype=np.float64)
    try:
        return np.broadcast_to(arr, shape).astype(np.float64, copy=True)
    except ValueError:
        raise ValueError(f"data of shape {arr.shape} does not broadcast to {shape}") from None


def _inflow_values(b, t: float, v: np.ndarray) -> np.ndarray:
    g = b.g
    if callable(g):
        val = g(t=float(t), v=v)
    else:
        val = float(g)
    out = _as_array(val, v.shape)
    if not np.all(np.isfinite(out)):
        raise ValueError(f"inflow data g(t={t}, v) is not finite")
    return out


def _step_plan(t0: float, times: np.ndarray, dt: float):
    """Step sizes for each output interval: the nominal ``dt`` where the interval
    is an integer multiple of it (to 1e-9 relative), else the interval divided
    into ``ceil(L/dt)`` equal steps.  Equal step sizes (to 1e-9 relative) share
    one representative float so that factorisations are reused."""
    reps: list[float] = [dt]

    def canon(h):
        for r in reps:
            if abs(h - r) <= 1e-9 * r:
                return r
        reps.append(h)
        return h

    plan = []
    t_prev = t0
    for tk in times:
        L = tk - t_prev
        if L <= 0:
            plan.append((0, 0.0))
            continue
        q = L / dt
        n = int(round(q))
        if n >= 1 and abs(q - n) <= 1e-9 * max(1.0, q):
            h = dt
        else:
            n = max(1, int(math.ceil(q - 1e-9 * q)))
            h = canon(L / n)
        plan.append((n, h))
        t_prev = tk
    return plan


# ----------------------------------------------------------------------------- solver

class _System:
    """Discrete operators of the staggered even-odd scheme and the cached
    factorisations of the augmented system (2)-(3)."""

    def __init__(self, eps, dx, nx, vp, w, periodic):
        self.eps, self.dx, self.nx, self.periodic = eps, dx, nx, periodic
        self.vp, self.w = vp, w
        self.m = len(vp)
        self._lu: dict[float, object] = {}
        self._A: dict[float, sp.csc_matrix] = {}
        self.fact_info: list[dict] = []

    # face "gradient" of r (linear part; the inflow data enter through J0)
    def grad(self, r):
        dx, nx = self.dx, self.nx
        g = np.empty(r.shape[:-1] + (nx + 1,))
        g[..., 1:nx] = (r[..., 1:] - r[..., :-1]) / dx
        if self.periodic:
            g[..., 0] = (r[..., 0] - r[..., -1]) / dx
            g[..., nx] = g[..., 0]
        else:
            g[..., 0] = 2.0 * r[..., 0] / dx
            g[..., nx] = -2.0 * r[..., -1] / dx
        return g

    def div(self, j):
        return (j[..., 1:] - j[..., :-1]) / self.dx

    def beta(self, alpha):
        """Face factors (m, nx+1) of the eliminated j-equation."""
        eps, m, nx = self.eps, self.m, self.nx
        b = np.full((m, nx + 1), 1.0 / (1.0 + eps * eps * alpha))
        if not self.periodic:
            bb = 1.0 / (1.0 + eps * eps * alpha + 2.0 * self.vp * eps / self.dx)
            b[:, 0] = bb
            b[:, nx] = bb
        return b

    def factor(self, alpha):
        lu = self._lu.get(alpha)
        if lu is not None:
            return lu
        eps, dx, nx, m = self.eps, self.dx, self.nx, self.m
        e2 = eps * eps
        beta = self.beta(alpha)
        gam = np.ones(nx + 1)
        if not self.periodic:
            gam[0] = gam[nx] = 2.0
        c = beta * gam / dx**2                       # (m, nx+1) face coefficients of L_k
        v2 = self.vp[:, None] ** 2                   # (m, 1)
        nb = m + 1
        i = np.arange(nx)
        rows, cols, vals = [], [], []
        K = np.arange(m)[:, None]                    # (m, 1)
        ridx = i[None, :] * nb + K                   # row/col of r_{k,i}
        # L_k: diag -(c_i + c_{i+1}), lower c_i (i-1), upper c_{i+1} (i+1)
        diagL = -(c[:, :-1] + c[:, 1:])
        lower = c[:, 1:nx]                           # entry (i, i-1) for i = 1..nx-1
        upper = c[:, 1:nx]                           # entry (i, i+1) for i = 0..nx-2
        scale = 1.0 / alpha                          # conservation rows scaled by 1/alpha
        wk = self.w[:, None]
        # k-rows: (1 + e2 alpha) r - e2 v^2 L r - rho
        rows += [ridx.ravel(), ridx.ravel(), ridx[:, 1:].ravel(), ridx[:, :-1].ravel()]
        cols += [ridx.ravel(), (i * nb + m)[None, :].repeat(m, 0).ravel(), ridx[:, :-1].ravel(),
                 ridx[:, 1:].ravel()]
        vals += [((1.0 + e2 * alpha) - e2 * v2 * diagL).ravel(), -np.ones(m * nx),
                 (-e2 * v2 * lower).ravel(), (-e2 * v2 * upper).ravel()]
        # conservation rows: sum_k w_k (alpha r_k - v_k^2 L_k r_k), times 1/alpha
        crow = (i * nb + m)[None, :].repeat(m, 0)
        rows += [crow.ravel(), crow[:, 1:].ravel(), crow[:, :-1].ravel()]
        cols += [ridx.ravel(), ridx[:, :-1].ravel(), ridx[:, 1:].ravel()]
        vals += [(scale * wk * (alpha - v2 * diagL)).ravel(), (-scale * wk * v2 * lower).ravel(),
                 (-scale * wk * v2 * upper).ravel()]
        if self.periodic:
            # (0, nx-1) with c_0 and (nx-1, 0) with c_nx (= c_0)
            r0, rl = ridx[:, 0], ridx[:, -1]
            c0 = c[:, 0]
            rows += [r0, rl, np.full(m, m), np.full(m, (nx - 1) * nb + m)]
            cols += [rl, r0, rl, r0]
            vals += [-e2 * v2[:, 0] * c0, -e2 * v2[:, 0] * c0, -scale * self.w * v2[:, 0] * c0,
                     -scale * self.w * v2[:, 0] * c0]
        n = nx * nb
        A = sp.csc_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(n, n))
        lu = splu(A, permc_spec="MMD_AT_PLUS_A")
        self._A[alpha] = A
        self._lu[alpha] = lu
        self.fact_info.append({"alpha": alpha, "n": n, "nnz_A": int(A.nnz),
                               "nnz_LU": int(lu.L.nnz + lu.U.nnz)})
        return lu

    def step(self, alpha, Hr, Hj, gL, gR):
        """One implicit step: time derivative ~ alpha y^{n+1} - H.  Returns r, j."""
        eps, dx, nx, m = self.eps, self.dx, self.nx, self.m
        e2 = eps * eps
        beta = self.beta(alpha)
        vp = self.vp[:, None]
        J0 = beta * (e2 * Hj)
        if not self.periodic:
            J0[:, 0] += beta[:, 0] * 2.0 * self.vp * gL / dx
            J0[:, nx] -= beta[:, nx] * 2.0 * self.vp * gR / dx
        s = Hr - vp * self.div(J0)                   # (m, nx)
        rhs = np.empty((nx, m + 1))
        rhs[:, :m] = (e2 * s).T
        rhs[:, m] = (self.w @ s) / alpha
        lu = self.factor(alpha)
        b = rhs.ravel()
        sol = lu.solve(b)
        # one step of iterative refinement: keeps the conservation rows satisfied to
        # round-off (periodic mass drift ~1e-16 relative per step instead of ~1e-15)
        sol += lu.solve(b - self._A[alpha] @ sol)
        sol = sol.reshape(nx, m + 1)
        r = np.ascontiguousarray(sol[:, :m].T)
        j = J0 - vp * beta * self.grad(r)
        return r, j, sol[:, m]


def solve_linear_transport(
    *, eps: float, x_range=(0.0, 1.0), nx: int = 400, nv: int = 32,
    t_end: float, dt: float | None = None, output_times: Sequence[float] | None = None,
    f0: Callable[[np.ndarray, np.ndarray], np.ndarray] | float | None = None,
    left: Boundary, right: Boundary, t0: float = 0.0,
) -> LTReferenceResult:
    """Solve ``eps f_t + v f_x = (<f> - f)/eps`` on ``[t0, t_end] x [a, b] x [-1, 1]``
    with the AP even-odd staggered BDF2 scheme described in the module docstring.

    Parameters
    ----------
    eps : Knudsen number (> 0); any value from 1 down to 1e-8 and below.
    x_range : ``(a, b)``.
    nx : number of cells (>= 4).  nv : number of Gauss-Legendre velocities (even).
    t_end : final time.  t0 : initial time (default 0).
    dt : nominal time step (default ``min(dx, (t_end - t0)/200)``); no restriction
        in eps.  Steps are shortened where needed so that every output time is
        reached exactly (no interpolation).
    output_times : times in ``[t0, t_end]`` (increasing) at which ``rho`` is
        returned; default ``[t_end]``.  Integration stops at the last one.
    f0 : initial distribution ``f0(x, v)`` called with ``x`` of shape ``(n, 1)`` and
        ``v`` of shape ``(1, nv)`` (broadcasting), or a constant; default 0.
    left, right : :class:`Inflow` or :class:`Periodic` (periodic on both sides or
        neither).  Objects of the same names from :mod:`sciml.physics` work too.
    """
    wall0 = time.perf_counter()
    # ---- validation
    try:
        eps = float(eps)
    except (TypeError, ValueError):
        raise ValueError(f"eps must be a positive number, got {eps!r}") from None
    if not (math.isfinite(eps) and eps > 0):
        raise ValueError(f"eps must be positive and finite, got {eps}")
    if isinstance(nx, bool) or int(nx) != nx or nx < 4:
        raise ValueError(f"nx must be an integer >= 4, got {nx!r}")
    if isinstance(nv, bool) or int(nv) != nv or nv < 2 or nv % 2:
        raise ValueError(f"nv must be an even integer >= 2, got {nv!r}")
    nx, nv = int(nx), int(nv)
    a, b = (float(x_range[0]), float(x_range[1]))
    if not (math.isfinite(a) and math.isfinite(b) and b > a):
        raise ValueError(f"x_range must be (a, b) with a < b, got {x_range!r}")
    t0, t_end = float(t0), float(t_end)
    if not (math.isfinite(t_end) and math.isfinite(t0) and t_end > t0):
        raise ValueError(f"t_end must be > t0 = {t0}, got {t_end}")
    _check_boundary(left, "left")
    _check_boundary(right, "right")
    periodic = _is_periodic(left)
    if periodic != _is_periodic(right):
        raise ValueError("periodic boundary must be set on both sides (left and right)")
    dx = (b - a) / nx
    if dt is None:
        dt = min(dx, (t_end - t0) / 200.0)
    dt = float(dt)
    if not (math.isfinite(dt) and dt > 0):
        raise ValueError(f"dt must be positive, got {dt}")
    if output_times is None:
        times = np.array([t_end])
    else:
        times = np.atleast_1d(np.asarray(output_times, dtype=np.float64)).ravel()
        if times.size == 0:
            raise ValueError("output_times is empty")
        if np.any(np.diff(times) <= 0):
            raise ValueError("output_times must be strictly increasing")
        tol = 1e-12 * max(1.0, abs(t_end), abs(t0))
        if times[0] < t0 - tol or times[-1] > t_end + tol:
            raise ValueError(f"output_times must lie in [t0, t_end] = [{t0}, {t_end}]")
        times = np.clip(times, t0, t_end)

    # ---- grids and velocities
    xc = a + (np.arange(nx) + 0.5) * dx
    xf = a + np.arange(nx + 1) * dx
    nodes, weights = np.polynomial.legendre.leggauss(nv)
    m = nv // 2
    vp = nodes[m:].copy()                      # positive nodes, ascending
    w = weights[m:] / weights[m:].sum()        # sum_k w_k = 1
    v_all = np.concatenate([-vp[::-1], vp])    # exactly symmetric

    # ---- initial data
    def f0_at(x):
        if f0 is None:
            return np.zeros((x.size, nv))
        if callable(f0):
            val = f0(x[:, None], v_all[None, :])
        else:
            val = float(f0)
        out = _as_array(val, (x.size, nv))
        if not np.all(np.isfinite(out)):
            raise ValueError("f0 is not finite on the grid")
        return out

    fc = f0_at(xc)
    ff = f0_at(xf)
    fpos = lambda F: F[:, m:].T            # noqa: E731  (m, n): f(+v_k)
    fneg = lambda F: F[:, m - 1::-1].T     # noqa: E731  (m, n): f(-v_k)
    r = 0.5 * (fpos(fc) + fneg(fc))
    j = (fpos(ff) - fneg(ff)) / (2.0 * eps)
    if periodic:
        j[:, nx] = j[:, 0]

    sysm = _System(eps, dx, nx, vp, w, periodic)
    gL = gR = None

    rho_out = np.empty((times.size, nx))
    plan = _step_plan(t0, times, dt)
    r_prev = j_prev = None
    h_prev = None
    t = t0
    n_steps = n_be = 0
    for k_out, (tk, (n, h)) in enumerate(zip(times, plan)):
        for s in range(n):
            t_new = tk if s == n - 1 else t + h
            if h_prev is None or h / h_prev > 2.0:
                alpha = 1.0 / h
                Hr, Hj = r / h, j / h
                n_be += 1
            else:
                om = h / h_prev
                alpha = (1.0 + 2.0 * om) / ((1.0 + om) * h)
                c1 = (1.0 + om) / h
                c2 = om * om / ((1.0 + om) * h)
                Hr = c1 * r - c2 * r_prev
                Hj = c1 * j - c2 * j_prev
            if not periodic:
                gL = _inflow_values(left, t_new, vp)
                gR = _inflow_values(right, t_new, -vp)
            r_new, j_new, _ = sysm.step(alpha, Hr, Hj, gL, gR)
            r_prev, j_prev, r, j = r, j, r_new, j_new
            h_prev = h
            t = t_new
            n_steps += 1
        rho_out[k_out] = w @ r
        if not np.all(np.isfinite(rho_out[k_out])):
            raise FloatingPointError(f"non-finite density at t = {tk}")

    jc = 0.5 * (j[:, :-1] + j[:, 1:])
    fp = (r + eps * jc).T                       # (nx, m): f(+v_k)
    fm = (r - eps * jc).T                       # (nx, m): f(-v_k)
    f_final = np.concatenate([fm[:, ::-1], fp], axis=1)
    info = {
        "n_steps": n_steps,
        "n_backward_euler_steps": n_be,
        "dt": dt,
        "step_sizes": sorted({h for n, h in plan if n}),
        "wall_time_s": time.perf_counter() - wall0,
        "n_factorisations": len(sysm.fact_info),
        "system_size": nx * (m + 1),
        "factorisations": sysm.fact_info,
        "nnz_LU": max(fi["nnz_LU"] for fi in sysm.fact_info) if sysm.fact_info else 0,
        "eps": eps, "nx": nx, "nv": nv, "dx": dx,
    }
    return LTReferenceResult(t=times.copy(), x=xc, v=v_all, rho=rho_out, f_final=f_final, info=info)

r"""Classical asymptotic-preserving (AP) reference solver for the 1D-1V BGK equation

.. math::

    f_t + v f_x = (\mathcal M(U) - f)/\varepsilon,\qquad
    \mathcal M(U) = \frac{\rho}{\sqrt{2\pi T}} e^{-(v-u)^2/(2T)},\qquad
    U = (\rho, \rho u, E) = \int (1, v, v^2/2) f\,dv,

on ``x in [a, b]`` with ``v`` truncated to ``[vmin, vmax]`` (the problem's
Gauss-Legendre rule), for any ``eps`` from the kinetic regime (``eps ~ 1``) to
the Euler limit (``eps -> 0``, monatomic gas, ``gamma = 3``).  The problem is a
:class:`sciml.physics.bgk.BGKProblem`.

Scheme
------
*Velocity.*  Discrete velocities: ``f`` is kept at the Gauss-Legendre nodes
``v_k`` with weights ``w_k`` (the problem's :class:`~sciml.domain.VelocitySpace`,
or ``nv`` new nodes on the same interval); moments are ``U = sum_k w_k m(v_k) f_k``
with ``m(v) = (1, v, v^2/2)``.

*Discrete Maxwellian (exact conservation).*  The continuous Maxwellian
sampled at the nodes of the truncated rule does not have exactly the moments
``U``, so the collision operator would not conserve mass, momentum and energy
exactly.  Following the idea of a discrete Maxwellian with exactly the
prescribed discrete moments (Mieussens, "Discrete velocity model and implicit
scheme for the BGK equation of rarefied gas dynamics", Math. Models Methods
Appl. Sci. 10 (2000) 1121-1149, who uses ``exp(a + b v + c v^2)`` and a Newton
solve), we use the linearised form of that correction, which needs no
iteration:

    M~(U)_k = M(U)(v_k) (1 + a + b v_k + c v_k^2),

with ``(a, b, c)`` per cell from the 3x3 linear system
``sum_k w_k m(v_k) M~_k = U`` (its matrix holds the discrete moments of order
0..4 of ``M``).  Unlike the least-squares projection
``M + C^T (C C^T)^{-1} (U - C M)`` the correction is *relative* to ``M``, so
``M~`` stays positive (and small in the tails) whenever the correction is
small, which it is whenever the rule resolves ``M`` (for ``[-10, 10]`` and 64
nodes, ``|a| + |b| + |c|`` is ~1e-14 for the benchmark states).  ``M~`` is used
for the collision term, for the initial data and for the wall ghost cells.

*Space.*  Finite volumes on a uniform grid of ``nx`` cells, upwind numerical
flux per velocity ``F_{i+1/2,k} = v_k^+ f^-_{i+1/2,k} + v_k^- f^+_{i+1/2,k}``
with a MUSCL reconstruction of ``f`` (van Leer, "Towards the ultimate
conservative difference scheme V", J. Comput. Phys. 32 (1979) 101-136): slopes
limited by minmod (default) or van Leer's harmonic limiter (``order=1``: no
slopes, first-order upwind).  Two ghost cells per side.

*Walls.*  The ghost cells hold the discrete Maxwellian ``M~`` of the wall's
state ``problem.left.state(t)`` / ``problem.right.state(t)`` at the stage time,
so the particles entering the domain are distributed as the wall Maxwellian
(the incoming half of the boundary flux is that of the wall Maxwellian up to
the reconstruction; a uniform state equal to both wall states is an exact
steady solution).  *This differs from the published APNN reference data*
(``data/apnns``), whose authors copied the neighbouring cell into the ghost
cells (zero gradient).  The two treatments differ where the gas next to a
wall departs from the wall state, as in Cases I and II (profiles that vary
up to the walls; at ``t_end`` the first cell of Case I has ``u = 0.04``,
``T = 1.46`` against the wall's ``0``, ``1.5``), where a thin kinetic layer forms
at the walls.  In Cases III-V the gas next to the walls is still at the wall
states at ``t_end`` and the treatments agree.  Measured (a temporary patch of
this solver with zero-gradient ghost cells, otherwise identical, nx = 400),
relative L2 against the published files, density / momentum / energy:
Case I 2.6e-4 / 1.7e-3 / 4.4e-4 (ghost Maxwellians: 1.1e-3 / 8.6e-3 / 2.5e-3),
Case II 1.3e-3 / 9.5e-3 / 2.8e-3 (1.4e-3 / 1.0e-2 / 3.0e-3), Cases III-V
unchanged to two digits.  So on Case I the boundary treatment is most of
the difference to the published data.

*Time: IMEX Runge-Kutta, ARS(2,2,2).*  Transport explicit, collision
implicit, with the second-order, L-stable, globally stiffly accurate scheme
ARS(2,2,2) of Ascher, Ruuth and Spiteri, "Implicit-explicit Runge-Kutta
methods for time-dependent partial differential equations", Appl. Numer.
Math. 25 (1997) 151-167 (``gamma = 1 - 1/sqrt 2``, ``delta = 1 - 1/(2 gamma)``).
Its use for BGK, and the AP property of globally stiffly accurate IMEX RK
schemes, are due to Pieraccini and Puppo, "Implicit-explicit schemes for BGK
kinetic equations", J. Sci. Comput. 32 (2007) 1-28, and Dimarco and Pareschi,
"Asymptotic preserving implicit-explicit Runge-Kutta methods for nonlinear
kinetic equations", SIAM J. Numer. Anal. 51 (2013) 1064-1087.  With ``T`` the
transport operator, ``Q(f) = (M~(U(f)) - f)/eps`` and ``g = gamma dt``, one step is

    f*  = f^n + g T(f^n)                                  (stage 2, explicit part)
    Y2  = (eps f* + g M~(U(f*))) / (eps + g),   Q2 = (M~(U(f*)) - f*) / (eps + g)
    f** = f^n + dt (delta T(f^n) + (1 - delta) T(Y2)) + (1 - gamma) dt Q2
    f^{n+1} = Y3 = (eps f** + g M~(U(f**))) / (eps + g).

The implicit stages are solved explicitly: the collision term conserves
``U`` (exactly, thanks to ``M~``), so the moments of a stage equal those of
its explicit part (``U(Y2) = U(f*)``, ``U(Y3) = U(f**)``), which fixes the
Maxwellian.  ``Q2`` is written in the form above (not ``(M~ - Y2)/eps``) so that
nothing is divided by ``eps``; the scheme is well defined at ``eps = 0``, where
``f = M~(U)`` after every stage and the step is a second-order kinetic
(flux-vector splitting) scheme for the Euler equations
(``solve_bgk(..., euler_limit=True)``).  The step is set by the transport CFL
alone, ``dt = cfl dx / max_k |v_k|``, for every ``eps`` (no eps restriction):
the scheme is AP.  Each output time is reached exactly (the step before it
is shortened); ghost Maxwellians are evaluated at the stage times
``t^n`` and ``t^n + gamma dt``.

*Conservation.*  Per step, ``sum_i U_i dx`` changes by
``dt (delta (F_a - F_b)(f^n) + (1 - delta) (F_a - F_b)(Y2))`` (moments of the
wall fluxes, the collision adds only round-off), which the solver accumulates
in ``boundary_flux``: ``totals(t) - totals(0) = flux_left(t) - flux_right(t)``
to round-off (see :meth:`BGKReferenceResult.conservation_error`).  Both fluxes are signed in the +x
direction, i.e. ``left`` is what enters at ``x = a`` and ``right`` what leaves
at ``x = b``.

*Initial data.*  ``f0 = M~(U0_i)`` with ``U0_i`` the cell average of
``conserved(rho0, u0, T0)`` by 3-point Gauss quadrature over each cell.

*Safety.*  Each stage checks ``rho > 0`` and ``T > 0`` in every cell and raises
``ValueError`` naming the time and the cell otherwise; ``info`` records the
smallest ``f`` (after each step) and the smallest ``T`` (every stage) seen.
ARS(2,2,2) is not positivity preserving (its explicit part has a negative
weight), so ``f`` may dip below zero near discontinuities (not seen in the
five benchmark cases: ``min f > 0`` in all of them, including the step).

Measured accuracy (``tests/test_reference_bgk.py``)
---------------------------------------------------
Against the APNN authors' published reference data (Jin, Ma, Wu, arXiv
2306.15381; ``data/apnns/bgk_case_*.npz``: 100 cells, first order, zero-gradient
ghost cells), relative L2 of density / momentum / energy at ``t_end``, our
solution with nx = 400, the problem's 64 velocities, minmod, cfl 0.5, averaged
in groups of 4 onto the 100 reference cells::

    Case I   ((sin pi x + 1)/2,  eps 1e-3, t 0.1 ): 1.1e-3 / 8.6e-3 / 2.5e-3
    Case II  (|sin|^(3/7) form,  eps 1e-3, t 0.1 ): 1.4e-3 / 1.0e-2 / 3.0e-3
    Case III ((tanh 10x + 1)/2,  eps 1e-3, t 0.1 ): 2.5e-4 / 2.1e-3 / 8.3e-4
    Case IV  ((tanh 20x + 1)/2,  eps 1,    t 0.1 ): 6.8e-5 / 5.5e-4 / 1.9e-4
    Case V   (step at x = 0,     eps 1e-2, t 0.05): 1.4e-3 / 1.4e-2 / 3.1e-3

This is the accuracy of the (coarse) reference files, not of this solver: our
nx = 400 and nx = 1600 solutions differ by 2.8e-5 / 4.2e-5 / 1.2e-5 (Case I)
and 4.7e-4 / 4.3e-3 / 9.5e-4 (Case V, the step) on the same 100 cells.  The
Case I numbers match those quoted in ``data/apnns/README.md`` for a solver
with ghost Maxwellians (1e-3 / 9e-3 / 2.5e-3).  The momentum is near zero in
much of the domain, so its relative error is the largest.  (Case V's file
holds six snapshots; only the last, at ``t_end``, is documented.  Columns 2-6
fit ``t = 0.01, 0.02, ..., 0.05`` best, column 1 about ``t = 0.005``.)

Conservation: ``|totals - initial - (left - right)|`` relative to the scale
of each moment is 1e-15 to 4e-14 after 200-800 steps (also with 24
velocities, where the sampled continuous Maxwellian misses its moments by
~3e-4, and with time-dependent walls).

AP: with the same CFL step, ``eps = 1e-8`` and the ``euler_limit`` solve agree
to 6e-8 (max relative difference of the moments), ``eps = 1e-6`` to 6e-6 (so
``O(eps)``), and ``max |f - M~(U(f))| / max M~`` is 1.6e-8 at ``eps = 1e-8``.

Observed order in ``nx`` (Case I, eps = 1e-3, 32 velocities, RMS of the
differences between successive grids nx = 50 ... 800 over ``|x| < 0.3``; density):
minmod 1.80 / 1.88 / 1.97, van Leer 1.96 / 2.10 / 2.14 (``order=1``: 0.96).
Over the whole domain the order is only ~0.5-1.2 at this eps, because the
fixed wall Maxwellians no longer match the moving gas next to the walls and
an unresolved (width ~eps) kinetic layer forms there.

Cost: nx = 400, nv = 128, eps = 1e-3, t_end = 0.1 (800 steps): 1.6-1.9 s on one
(shared) CPU core; nx = 400, nv = 64: 0.65 s.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Callable, Sequence, Union

import numpy as np

from ..domain import VelocitySpace
from ..physics.bgk import BGKProblem, MaxwellianWall, conserved, maxwellian, primitive

__all__ = ["BGKReferenceResult", "LIMITERS", "discrete_maxwellian", "solve_bgk"]

# ARS(2,2,2) coefficients (Ascher, Ruuth, Spiteri 1997, section 2.6)
_GAMMA = 1.0 - 1.0 / math.sqrt(2.0)
_DELTA = 1.0 - 1.0 / (2.0 * _GAMMA)

FIELD_NAMES = ("rho", "momentum", "energy", "u", "T")


@dataclass
class BGKReferenceResult:
    t: np.ndarray                 # (n_t,) output times, exactly the requested ones
    x: np.ndarray                 # (nx,) cell centres
    v: np.ndarray                 # (nv,) velocity nodes (the order of the velocity rule)
    fields: dict                  # name -> (n_t, nx) cell averages: rho, momentum, energy, u, T
    f_final: np.ndarray           # (nx, nv) distribution at the last output time
    boundary_flux: dict           # "left"/"right" -> (n_t, 3) int_{t0}^{t} (moments of the flux in +x) dt
    totals: np.ndarray            # (n_t, 3) sum_i U_i dx at the output times
    initial_totals: np.ndarray    # (3,) sum_i U_i dx at t0
    info: dict = field(default_factory=dict)
    moment_scale: np.ndarray | None = None  # (3,) sum_i dx sum_k w_k |m(v_k)| f0_ik (> 0)

    def conservation_error(self) -> np.ndarray:
        """``(n_t, 3)``: ``|totals - initial - (left - right)|``, relative to the scale of
        each moment, ``max(|initial_totals|, moment_scale)`` (the total momentum may be 0;
        its scale is then ``int |v| f0 dv dx``).  Round-off if the scheme is conservative."""
        bal = self.totals - self.initial_totals - (self.boundary_flux["left"] - self.boundary_flux["right"])
        scale = np.abs(self.initial_totals)
        if self.moment_scale is not None:
            scale = np.maximum(scale, self.moment_scale)
        return np.abs(bal) / np.maximum(scale, np.finfo(float).tiny)


# ----------------------------------------------------------------------------- limiters

def minmod(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``minmod(a, b)``: the smaller-in-modulus of two same-sign slopes, else 0."""
    return np.maximum(0.0, np.minimum(a, b)) + np.minimum(0.0, np.maximum(a, b))


def van_leer(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Van Leer's harmonic limiter ``2 a b / (a + b)`` for ``a b > 0``, else 0."""
    ab = a * b
    s = a + b
    out = np.zeros_like(ab)
    np.divide(2.0 * ab, s, out=out, where=ab > 0.0)
    return out


LIMITERS: dict[str, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {
    "minmod": minmod,
    "vanleer": van_leer,
    "van_leer": van_leer,
    "van leer": van_leer,
}

Limiter = Union[str, Callable[[np.ndarray, np.ndarray], np.ndarray]]


def _get_limiter(limiter: Limiter):
    if callable(limiter):
        return limiter
    if isinstance(limiter, str):
        fn = LIMITERS.get(limiter.strip().lower())
        if fn is not None:
            return fn
    raise ValueError(f"limiter must be one of {sorted(set(LIMITERS) - {'van leer'})} or a callable "
                     f"slope(a, b), got {limiter!r}")


# ----------------------------------------------------------------------------- discrete Maxwellian

class _Moments:
    """Velocity grid (sorted ascending), moment weights and the discrete Maxwellian."""

    def __init__(self, v: np.ndarray, w: np.ndarray):
        self.v = v
        self.w = w
        self.W = w[:, None] * np.stack([np.ones_like(v), v, 0.5 * v * v], 1)   # (nv, 3): U = f @ W
        self.P4 = w[:, None] * v[:, None] ** np.arange(5)[None, :]             # (nv, 5): weighted v^p
        self.P2t = np.stack([np.ones_like(v), v, v * v], 0)                    # (3, nv): 1, v, v^2

    def moments(self, f):
        return f @ self.W

    def maxwellian(self, U, where: str, t: float, x=None):
        """``M~(U)`` for ``U`` of shape (n, 3); also returns (rho, u, T)."""
        rho, u, T = primitive(U[:, 0], U[:, 1], U[:, 2])
        bad = ~((rho > 0.0) & (T > 0.0))
        if np.any(bad):
            i = int(np.flatnonzero(bad)[0])
            loc = f"cell {i}" + (f" (x = {x[i]:.6g})" if x is not None else "")
            raise ValueError(f"non-physical state in {where} at t = {t:.6g}, {loc}: rho = {rho[i]:.6g}, "
                             f"T = {T[i]:.6g} (need rho > 0 and T > 0); reduce cfl/dt or refine the grid")
        M = maxwellian(rho[:, None], u[:, None], T[:, None], self.v[None, :])
        mp = M @ self.P4                                                       # (n, 5) discrete moments
        G = np.stack([mp[:, 0:3], mp[:, 1:4], 0.5 * mp[:, 2:5]], 1)            # (n, 3, 3)
        r = U - np.stack([mp[:, 0], mp[:, 1], 0.5 * mp[:, 2]], 1)
        try:
            coef = np.linalg.solve(G, r[:, :, None])[:, :, 0]                  # (n, 3): a, b, c
        except np.linalg.LinAlgError:
            coef = np.full_like(U, np.nan)
        bad = ~np.all(np.isfinite(coef), 1)
        if np.any(bad):
            i = int(np.flatnonzero(bad)[0])
            loc = f"cell {i}" + (f" (x = {x[i]:.6g})" if x is not None else "")
            raise ValueError(f"the velocity grid does not resolve the Maxwellian in {where} at t = {t:.6g}, "
                             f"{loc}: rho = {rho[i]:.6g}, u = {u[i]:.6g}, T = {T[i]:.6g}; use more velocities")
        M *= 1.0 + coef @ self.P2t
        return M, (rho, u, T), coef


def discrete_maxwellian(U, v, w) -> np.ndarray:
    """The discrete Maxwellian ``M~(U)`` used by the solver: ``U`` of shape ``(n, 3)``
    (or ``(3,)``) conserved states, ``v``/``w`` the velocity nodes and weights.  Returns
    ``(n, nv)`` (or ``(nv,)``) values whose discrete moments ``sum_k w_k (1, v_k, v_k^2/2) M~_k``
    equal ``U`` to round-off.  Raises ``ValueError`` for ``rho <= 0`` or ``T <= 0``."""
    U = np.asarray(U, dtype=np.float64)
    v = np.asarray(v, dtype=np.float64)
    w = np.asarray(w, dtype=np.float64)
    if v.shape != w.shape or v.ndim != 1:
        raise ValueError(f"v and w must be 1-D of the same length, got {v.shape} and {w.shape}")
    M, _, _ = _Moments(v, w).maxwellian(np.atleast_2d(U), "discrete_maxwellian", float("nan"))
    return M[0] if U.ndim == 1 else M


# ----------------------------------------------------------------------------- transport

class _Transport:
    """``-(F_{i+1/2} - F_{i-1/2})/dx`` with MUSCL + upwind, velocities sorted ascending.
    Negative and positive velocities are handled as two contiguous blocks (each needs
    only one face state)."""

    def __init__(self, v, dx, nx, slope):
        self.dx, self.nx, self.slope = dx, nx, slope
        self.neg = slice(0, int(np.sum(v < 0)))
        self.pos = slice(int(np.sum(v <= 0)), len(v))
        self.vneg = v[self.neg]
        self.vpos = v[self.pos]
        self.nv = len(v)

    def __call__(self, f, gl, gr):
        """Returns ``(dfdt, F_left, F_right)``: the transport term (nx, nv) and the
        numerical fluxes (nv,) at the walls ``x = a`` and ``x = b``."""
        nx = self.nx
        out = np.zeros((nx, self.nv))
        Fa = np.zeros(self.nv)
        Fb = np.zeros(self.nv)
        for blk, vb, positive in ((self.pos, self.vpos, True), (self.neg, self.vneg, False)):
            if vb.size == 0:
                continue
            fe = np.empty((nx + 4, vb.size))
            fe[2:nx + 2] = f[:, blk]
            fe[:2] = gl[blk]
            fe[nx + 2:] = gr[blk]
            if self.slope is None:
                # first order: face state = upwind cell value
                face = fe[1:nx + 2] if positive else fe[2:nx + 3]
            else:
                d = np.diff(fe, axis=0)                  # d[j] = fe[j+1] - fe[j], (nx+3, m)
                s = self.slope(d[:-1], d[1:])            # slopes of extended cells 1..nx+2
                if positive:                             # left state of faces j|j+1, j = 1..nx+1
                    face = fe[1:nx + 2] + 0.5 * s[0:nx + 1]
                else:                                    # right state
                    face = fe[2:nx + 3] - 0.5 * s[1:nx + 2]
            F = face * vb                                # (nx+1, m) fluxes at faces 0..nx
            out[:, blk] = (F[:-1] - F[1:]) / self.dx
            Fa[blk] = F[0]
            Fb[blk] = F[-1]
        return out, Fa, Fb


# ----------------------------------------------------------------------------- driver

def _check_positive(name: str, val) -> float:
    try:
        val = float(val)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a positive number, got {val!r}") from None
    if not (math.isfinite(val) and val > 0):
        raise ValueError(f"{name} must be positive and finite, got {val}")
    return val


def _check_int(name, val, lo):
    if isinstance(val, bool) or not isinstance(val, (int, np.integer)) or val < lo:
        raise ValueError(f"{name} must be an integer >= {lo}, got {val!r}")
    return int(val)


def solve_bgk(
    problem: BGKProblem, *, nx: int = 400, nv: int | None = None,
    output_times: Sequence[float] | None = None, cfl: float = 0.5, dt: float | None = None,
    limiter: Limiter = "minmod", order: int = 2, progress: bool = False,
    euler_limit: bool = False,
) -> BGKReferenceResult:
    """Solve the BGK problem with the AP IMEX finite-volume scheme of the module docstring.

    Parameters
    ----------
    problem : :class:`~sciml.physics.bgk.BGKProblem` (``eps``, ``x``- and ``t``-ranges,
        velocity rule, initial state, Maxwellian walls).
    nx : number of cells (>= 4).
    nv : ``None`` uses ``problem.velocity`` as is; else ``nv`` Gauss-Legendre nodes on
        the problem's velocity interval.
    output_times : increasing times in ``(t0, t_end]``; default ``[t_end]``.  Each is
        reached exactly (the step before it is shortened).  Integration stops at the last.
    cfl : transport CFL number, ``dt = cfl dx / max|v|`` (ignored if ``dt`` is given).
        Independent of ``eps``.
    dt : explicit nominal step instead of the CFL rule.
    limiter : ``"minmod"`` (default), ``"vanleer"``, or a callable ``slope(a, b)`` of the
        backward and forward differences (arrays).
    order : 2 (MUSCL, default) or 1 (first-order upwind; the limiter is then unused).
    progress : show a tqdm progress bar over time.
    euler_limit : solve the ``eps -> 0`` limit of the same scheme instead (``f = M~(U)``
        after every stage: a kinetic scheme for the Euler equations); ``problem.eps``
        is then ignored.
    """
    wall0 = time.perf_counter()
    # ---- validation
    if not isinstance(problem, BGKProblem):
        raise ValueError(f"problem must be a BGKProblem, got {type(problem).__name__}")
    nx = _check_int("nx", nx, 4)
    if order not in (1, 2) or isinstance(order, bool):
        raise ValueError(f"order must be 1 or 2, got {order!r}")
    slope = _get_limiter(limiter) if order == 2 else None
    cfl = _check_positive("cfl", cfl)
    for side in ("left", "right"):
        if not isinstance(problem.wall(side), MaxwellianWall):
            raise ValueError(f"{side} boundary must be a MaxwellianWall, got {problem.wall(side)!r}")
    eps = 0.0 if euler_limit else float(problem.eps)
    a, b = problem.domain["x"].lo, problem.domain["x"].hi
    t0, t_end = problem.domain["t"].lo, problem.domain["t"].hi
    if not b > a:
        raise ValueError(f"x interval must have positive length, got [{a}, {b}]")
    if not t_end > t0:
        raise ValueError(f"time interval must have positive length, got [{t0}, {t_end}]")
    if output_times is None:
        times = np.array([t_end], dtype=np.float64)
    else:
        times = np.atleast_1d(np.asarray(output_times, dtype=np.float64)).ravel()
        if times.size == 0:
            raise ValueError("output_times is empty")
        if not np.all(np.isfinite(times)):
            raise ValueError(f"output_times must be finite, got {times}")
        if np.any(np.diff(times) <= 0):
            raise ValueError(f"output_times must be strictly increasing, got {times}")
        tol = 1e-12 * max(1.0, abs(t0), abs(t_end))
        if times[0] <= t0 or times[-1] > t_end + tol:
            raise ValueError(f"output_times must lie in (t0, t_end] = ({t0}, {t_end}], got "
                             f"[{times[0]}, {times[-1]}]")
        times = np.minimum(times, t_end)

    # ---- velocities (sorted internally; f_final is returned in the rule's order)
    if nv is None:
        vs = problem.velocity
    else:
        nv = _check_int("nv", nv, 3)
        vs = VelocitySpace.gauss_legendre(problem.velocity.lo, problem.velocity.hi, nv)
    v_rule = np.asarray(vs.nodes_np, dtype=np.float64)
    w_rule = np.asarray(vs.weights_np, dtype=np.float64)
    if v_rule.size < 3:
        raise ValueError(f"need at least 3 velocities, got {v_rule.size}")
    perm = np.argsort(v_rule, kind="stable")
    inv = np.argsort(perm)
    v, w = v_rule[perm], w_rule[perm]
    nvel = v.size
    vmax = float(np.max(np.abs(v)))

    dx = (b - a) / nx
    if dt is None:
        dt = cfl * dx / vmax
    dt = _check_positive("dt", dt)

    xc = a + (np.arange(nx) + 0.5) * dx
    mom = _Moments(v, w)
    transport = _Transport(v, dx, nx, slope)

    # ---- wall ghost Maxwellians
    def ghost(wall: MaxwellianWall, t: float, side: str):
        rho, u, T = (float(np.asarray(c)) for c in wall.state(np.asarray(t, dtype=np.float64)))
        U = np.array([conserved(rho, u, T)], dtype=np.float64)
        M, _, _ = mom.maxwellian(U, f"{side} wall state", t)
        return M[0]

    const = {s: problem.wall(s).constant for s in ("left", "right")}
    cache: dict[str, np.ndarray] = {}

    def ghosts(t):
        out = []
        for s in ("left", "right"):
            if const[s]:
                if s not in cache:
                    cache[s] = ghost(problem.wall(s), t, s)
                out.append(cache[s])
            else:
                out.append(ghost(problem.wall(s), t, s))
        return out

    # ---- initial data: cell averages of U0 (3-point Gauss) -> M~
    gz, gw = np.polynomial.legendre.leggauss(3)
    U0 = np.zeros((nx, 3))
    for z, wq in zip(gz, gw):
        rho0, u0, T0 = problem.initial_state(xc + 0.5 * dx * z)
        U0 += 0.5 * wq * np.stack(conserved(np.asarray(rho0, float), np.asarray(u0, float),
                                            np.asarray(T0, float)), 1)
    f, _, _ = mom.maxwellian(U0, "initial data", t0, xc)
    totals0 = mom.moments(f).sum(0) * dx
    scale0 = (f @ np.abs(mom.W)).sum(0) * dx

    # ---- time stepping
    n_out = times.size
    fields = {k: np.empty((n_out, nx)) for k in FIELD_NAMES}
    flux_l = np.zeros((n_out, 3))
    flux_r = np.zeros((n_out, 3))
    totals = np.empty((n_out, 3))
    acc_l = np.zeros(3)
    acc_r = np.zeros(3)
    min_f = float(f.min())
    min_T = float(np.min(primitive(*U0.T)[2]))
    max_corr = 0.0
    g, de = _GAMMA, _DELTA
    t = t0
    steps = 0
    bar = None
    if progress:
        from tqdm.auto import tqdm
        bar = tqdm(total=float(times[-1] - t0), unit="t", desc=f"BGK eps={eps:g}")
    try:
        for k_out, tk in enumerate(times):
            while t < tk:
                h = tk - t
                if h > dt * (1.0 + 1e-10):
                    h = dt
                    t_new = t + h
                else:
                    t_new = tk
                gam = g * h
                # stage 1 (explicit transport of f^n at t)
                gl, gr = ghosts(t)
                T1, Fa1, Fb1 = transport(f, gl, gr)
                fs = f + gam * T1
                M2, (_, _, Tm), c2 = mom.maxwellian(mom.moments(fs), "stage 2", t + gam, xc)
                min_T = min(min_T, float(Tm.min()))
                Q2 = (M2 - fs) / (eps + gam)             # = (M2 - Y2)/eps, no division by eps
                Y2 = fs + gam * Q2                       # = (eps fs + gam M2)/(eps + gam)
                # stage 2 (explicit transport of Y2 at t + gamma h)
                gl, gr = ghosts(t + gam)
                T2, Fa2, Fb2 = transport(Y2, gl, gr)
                fss = f + (h * de) * T1 + (h * (1.0 - de)) * T2 + (h * (1.0 - g)) * Q2
                M3, (_, _, Tm), c3 = mom.maxwellian(mom.moments(fss), "stage 3", t_new, xc)
                min_T = min(min_T, float(Tm.min()))
                if eps == 0.0:
                    f = M3
                else:
                    f = (eps * fss + gam * M3) / (eps + gam)
                acc_l += (h * de) * (Fa1 @ mom.W) + (h * (1.0 - de)) * (Fa2 @ mom.W)
                acc_r += (h * de) * (Fb1 @ mom.W) + (h * (1.0 - de)) * (Fb2 @ mom.W)
                min_f = min(min_f, float(f.min()))
                max_corr = max(max_corr, float(np.abs(c2).max()), float(np.abs(c3).max()))
                if bar is not None:
                    bar.update(t_new - t)
                t = t_new
                steps += 1
            U = mom.moments(f)
            rho, u, T = primitive(U[:, 0], U[:, 1], U[:, 2])
            if not np.all(np.isfinite(U)):
                raise ValueError(f"non-finite moments at t = {tk:.6g}")
            fields["rho"][k_out] = U[:, 0]
            fields["momentum"][k_out] = U[:, 1]
            fields["energy"][k_out] = U[:, 2]
            fields["u"][k_out] = u
            fields["T"][k_out] = T
            totals[k_out] = U.sum(0) * dx
            flux_l[k_out] = acc_l
            flux_r[k_out] = acc_r
    finally:
        if bar is not None:
            bar.close()

    info = {
        "steps": steps, "dt": dt, "nx": nx, "nv": nvel, "dx": dx, "eps": eps, "cfl_dt": dt * vmax / dx,
        "max_abs_v": vmax, "order": order,
        "limiter": (limiter if isinstance(limiter, str) else getattr(limiter, "__name__", "custom"))
        if order == 2 else None,
        "euler_limit": bool(euler_limit),
        "min_f": min_f, "min_T": min_T, "max_maxwellian_correction": max_corr,
        "wall_time_s": time.perf_counter() - wall0,
    }
    return BGKReferenceResult(t=times.copy(), x=xc, v=v_rule.copy(), fields=fields,
                              f_final=np.ascontiguousarray(f[:, inv]),
                              boundary_flux={"left": flux_l, "right": flux_r},
                              totals=totals, initial_totals=totals0, info=info,
                              moment_scale=scale0)

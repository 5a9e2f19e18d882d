"""BGK equation, 1D in space and velocity (Jin, Ma, Wu, arXiv 2306.15381):

    f_t + v f_x = (M(U) - f) / eps,
    M(U)(v) = rho / sqrt(2 pi T) exp(-(v - u)^2 / (2 T)),
    U = (rho, rho u, E) = int (1, v, v^2/2) f dv,   E = rho (u^2 + T) / 2,

on ``t in [t0, T]``, ``x in [a, b]``, ``v`` truncated to ``[vmin, vmax]``
(``[-10, 10]`` in the paper) with Gauss–Legendre quadrature. As ``eps -> 0``,
``f -> M(U)`` and ``U`` solves the compressible Euler equations of a
monatomic gas in 1D (``gamma = 3``).

Data (plain objects, no numerics): the initial macroscopic state
``(rho0, u0, T0)(x)`` with ``f0 = M(rho0, u0, T0)``, and at each wall a
*Maxwellian wall*: the incoming half of ``f`` is the Maxwellian of the wall's
state ``(rho, u, T)(t)``. The learned formulation (``sciml.solvers.apnn_bgk``)
and the classical reference solver (``sciml.reference.bgk``) both take a
:class:`BGKProblem`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

from ..domain import Box, Interval, VelocitySpace

Data = Callable[..., object]


def _lib(a):
    return torch if isinstance(a, torch.Tensor) else np


def maxwellian(rho, u, T, v):
    """``rho / sqrt(2 pi T) exp(-(v-u)^2 / (2T))`` on numpy arrays or tensors (broadcasting)."""
    lib = torch if any(isinstance(a, torch.Tensor) for a in (rho, u, T, v)) else np
    return rho / (2.0 * math.pi * T) ** 0.5 * lib.exp(-(v - u) ** 2 / (2.0 * T))


def conserved(rho, u, T):
    """``(rho, u, T) -> (rho, rho u, E)`` with ``E = rho (u^2 + T) / 2``."""
    return rho, rho * u, 0.5 * rho * (u * u + T)


def primitive(rho, m, E):
    """``(rho, rho u, E) -> (rho, u, T)``."""
    u = m / rho
    return rho, u, 2.0 * E / rho - u * u


# the moments' weights m(v) = (1, v, v^2/2) and the names of the conserved fields
MOMENT_NAMES = ("rho", "momentum", "energy")


def moment_weights(v):
    """``(1, v, v^2/2)`` stacked on a new last axis."""
    lib = _lib(v)
    return lib.stack([lib.ones_like(v), v, 0.5 * v * v], -1)


def _evaluate(data, name: str, col) -> tuple:
    """Each of ``data`` (numbers or callables of the keyword ``name``) at ``col``,
    broadcast to its shape, as the same kind of array (numpy float64 or a tensor of
    ``col``'s dtype and device)."""
    out = []
    for d in data:
        val = d(**{name: col}) if callable(d) else d
        if isinstance(col, torch.Tensor):
            val = torch.broadcast_to(torch.as_tensor(val, dtype=col.dtype, device=col.device), col.shape)
        else:
            val = np.broadcast_to(np.asarray(val, dtype=np.float64), np.shape(col))
        out.append(val)
    return tuple(out)


@dataclass(frozen=True)
class MaxwellianWall:
    """Incoming ``f`` at a wall = Maxwellian of the state ``(rho, u, T)``; each is a
    number or a callable of ``t``."""

    rho: Data | float
    u: Data | float
    T: Data | float

    def state(self, t):
        """``(rho, u, T)`` at times ``t`` (broadcast to ``t``'s shape)."""
        return _evaluate((self.rho, self.u, self.T), "t", t)

    @property
    def constant(self) -> bool:
        return not any(callable(c) and not getattr(c, "is_constant", False) for c in (self.rho, self.u, self.T))

    def f(self, t, v):
        """The wall Maxwellian at ``(t, v)`` (broadcasting)."""
        rho, u, T = self.state(t)
        return maxwellian(rho, u, T, v)


@dataclass(frozen=True)
class BGKProblem:
    eps: float
    domain: Box                 # coordinates t and x
    velocity: VelocitySpace     # Gauss–Legendre on [vmin, vmax]
    rho0: Data                  # rho0(x=)
    u0: Data                    # u0(x=)
    T0: Data                    # T0(x=)
    left: MaxwellianWall
    right: MaxwellianWall

    def __post_init__(self):
        if not self.eps > 0:
            raise ValueError(f"eps must be > 0, got {self.eps}")
        if set(self.domain.names) != {"t", "x"}:
            raise ValueError(f"BGK domain needs coordinates t and x, got {self.domain.names}")

    @property
    def t_end(self) -> float:
        return self.domain["t"].hi

    @property
    def velocity_interval(self) -> Interval:
        return Interval(self.velocity.name, self.velocity.lo, self.velocity.hi)

    @property
    def phase_box(self) -> Box:
        return self.domain * self.velocity_interval

    def initial_state(self, x):
        """``(rho0, u0, T0)`` at ``x`` (numpy or torch, same type and shape as ``x``)."""
        return _evaluate((self.rho0, self.u0, self.T0), "x", x)

    def f0(self, x, v):
        """``M(rho0, u0, T0)(x, v)`` (broadcasting)."""
        rho, u, T = self.initial_state(x)
        return maxwellian(rho, u, T, v)

    def wall(self, side: str) -> MaxwellianWall:
        return {"left": self.left, "right": self.right}[side]


def balance_metrics(totals0, totals, flux_left, flux_right) -> dict[str, float]:
    """Global conservation check. ``totals0`` (3,): ``int U dx`` at t0; ``totals``
    (n_t, 3): at the output times; ``flux_left``/``flux_right`` (n_t, 3): the flux
    ``<v m f>`` (positive in +x) through each wall integrated from t0 to each output
    time. Exact conservation means ``totals - totals0 = flux_left - flux_right``.
    Returns, per conserved quantity, the largest defect over the output times
    relative to ``|totals0| + |totals| + |flux_left| + |flux_right|`` (so a zero
    total momentum does not divide by zero): ``balance_rho``,
    ``balance_momentum``, ``balance_energy``."""
    totals0, totals = np.asarray(totals0, np.float64), np.asarray(totals, np.float64)
    fl, fr = np.asarray(flux_left, np.float64), np.asarray(flux_right, np.float64)
    defect = totals - totals0 - (fl - fr)
    scale = np.abs(totals0) + np.abs(totals) + np.abs(fl) + np.abs(fr)
    rel = np.abs(defect) / np.maximum(scale, np.finfo(np.float64).tiny)
    return {f"balance_{name}": float(rel[:, k].max()) for k, name in enumerate(MOMENT_NAMES)}

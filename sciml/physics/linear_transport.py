"""Linear transport equation in diffusive scaling (Jin, Ma, Wu, arXiv 2111.02541):

    eps f_t + v f_x = (<f> - f) / eps,   <f> = 1/2 int_{-1}^{1} f dv,

on ``t in [0, T]``, ``x in [a, b]``, ``v in [-1, 1]``. As ``eps -> 0``,
``f -> rho(t, x)`` with ``rho_t = rho_xx / 3`` (``<v^2> = 1/3``).

This module holds the *problem data* (plain objects, no numerics): the Knudsen
number, the domain, the initial distribution and the boundary conditions. The
learned formulations (``sciml.solvers.apnn``) and the classical reference
solver (``sciml.reference.linear_transport``) both take a
:class:`LinearTransportProblem`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Union

import torch

from ..domain import Box, VelocitySpace

# f0(x, v), g(t, v), rho0(x): callables on tensors or numpy arrays with broadcasting
Data = Callable[..., object]


@dataclass(frozen=True)
class Inflow:
    """Incoming distribution ``g(t, v)`` at a wall (``v`` has the incoming sign:
    ``v > 0`` at the left wall, ``v < 0`` at the right wall)."""

    g: Data | float

    def __call__(self, t, v):
        return self.g(t=t, v=v) if callable(self.g) else self.g


@dataclass(frozen=True)
class Periodic:
    """Periodic in ``x`` (must be set on both sides)."""


Boundary = Union[Inflow, Periodic]


@dataclass(frozen=True)
class LinearTransportProblem:
    eps: float
    domain: Box                 # coordinates t and x
    velocity: VelocitySpace     # full range [-1, 1]
    f0: Data                    # f0(x=, v=)
    left: Boundary
    right: Boundary
    rho0: Data | None = None    # rho0(x=); default <f0>
    zero_initial_density: bool = False  # rho0 == 0 identically (enables rho = t exp(-N))

    def __post_init__(self):
        if not self.eps > 0:
            raise ValueError(f"eps must be > 0, got {self.eps}")
        if isinstance(self.left, Periodic) != isinstance(self.right, Periodic):
            raise ValueError("periodic boundary must be set on both sides")
        if set(self.domain.names) != {"t", "x"}:
            raise ValueError(f"linear transport domain needs coordinates t and x, got {self.domain.names}")
        if not (self.velocity.lo == -1.0 and self.velocity.hi == 1.0):
            raise ValueError("linear transport velocity space must be [-1, 1]")

    @property
    def t_end(self) -> float:
        return self.domain["t"].hi

    @property
    def phase_box(self) -> Box:
        """``t x x x v``."""
        return self.domain * self.velocity_interval

    @property
    def velocity_interval(self):
        from ..domain import Interval
        return Interval(self.velocity.name, self.velocity.lo, self.velocity.hi)

    @property
    def periodic(self) -> bool:
        return isinstance(self.left, Periodic)

    def initial_density(self, x: torch.Tensor) -> torch.Tensor:
        """``rho0(x)`` if given, else ``<f0>(x)`` by the problem's quadrature."""
        if self.rho0 is not None:
            return torch.as_tensor(self.rho0(x=x), dtype=x.dtype, device=x.device)
        v = self.velocity.nodes(x.device, x.dtype)
        vals = torch.as_tensor(self.f0(x=x.unsqueeze(-1), v=v.unsqueeze(0)), dtype=x.dtype, device=x.device)
        vals = torch.broadcast_to(vals, (x.shape[0], v.shape[0]))
        return self.velocity.mean(vals)


def diffusion_coefficient() -> float:
    """``<v^2>`` for the uniform velocity average on [-1, 1]: the limit is
    ``rho_t = rho_xx / 3``."""
    return 1.0 / 3.0

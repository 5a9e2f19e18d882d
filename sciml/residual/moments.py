"""Velocity moments ``<phi(v) f(t, x, v)>`` by quadrature in ONE batched pass.

:class:`QuadratureProduct` pairs ``N`` space–time points with the ``M`` nodes of a
:class:`~sciml.domain.VelocitySpace` into ``N*M`` named columns (point-major), so
a network and all its input derivatives are evaluated once over every (point,
node) pair; :meth:`QuadratureProduct.split` views any evaluated tensor as
``(N, M, k)`` and :meth:`integrate` / :meth:`mean` take moments with any weight
``phi(v)`` without a second forward pass.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from ..domain.geometry import Points, n_points
from ..domain.velocity import VelocitySpace


@dataclass
class QuadratureProduct:
    points: Points
    velocity: VelocitySpace

    def __post_init__(self):
        self.n = n_points(self.points)
        self.m = self.velocity.n
        ref = next(iter(self.points.values()))
        self.device, self.dtype = ref.device, ref.dtype
        self.v = self.velocity.nodes(self.device, self.dtype)

    @property
    def inputs(self) -> Points:
        """Named columns of length ``N*M``: each point repeated over the ``M`` nodes."""
        cols = {k: p.repeat_interleave(self.m) for k, p in self.points.items()}
        cols[self.velocity.name] = self.v.repeat(self.n)
        return cols

    def split(self, values: torch.Tensor) -> torch.Tensor:
        """``(N*M, ...)`` -> ``(N, M, ...)``."""
        return values.reshape(self.n, self.m, *values.shape[1:])

    def nodes_like(self) -> torch.Tensor:
        """Velocity nodes shaped ``(1, M, 1)`` for broadcasting against split values."""
        return self.v.view(1, self.m, 1)

    def integrate(self, values: torch.Tensor, phi: Callable[[torch.Tensor], torch.Tensor] | None = None) -> torch.Tensor:
        """``int phi(v) f dv`` for flat ``(N*M, k)``, split ``(N, M, k)`` or ``(N, M)``
        values -> ``(N, k)`` (``(N, 1)`` for ``(N, M)``)."""
        split = values.dim() in (2, 3) and tuple(values.shape[:2]) == (self.n, self.m) and self.m > 1
        vals = values if split else self.split(values)
        if vals.dim() == 2:
            vals = vals.unsqueeze(-1)
        w = self.velocity.weights(self.device, vals.dtype)
        if phi is not None:
            w = w * phi(self.v.to(vals.dtype))
        return torch.einsum("nmk,m->nk", vals, w)

    def mean(self, values: torch.Tensor, phi: Callable[[torch.Tensor], torch.Tensor] | None = None) -> torch.Tensor:
        """``1/|V| int phi(v) f dv`` -> ``(N, k)``."""
        return self.integrate(values, phi) / (self.velocity.hi - self.velocity.lo)


def moments(fn: Callable[[Points], torch.Tensor], points: Points, velocity: VelocitySpace,
            phis: tuple[Callable[[torch.Tensor], torch.Tensor], ...] = (lambda v: torch.ones_like(v),)) -> torch.Tensor:
    """``int phi_i(v) fn(points, v) dv`` for each ``phi_i``: ONE forward pass over
    all (point, node) pairs. Returns ``(N, len(phis), k)``."""
    qp = QuadratureProduct(points, velocity)
    y = fn(qp.inputs)
    y = y.unsqueeze(-1) if y.dim() == 1 else y
    vals = qp.split(y)
    return torch.stack([qp.integrate(vals, phi) for phi in phis], dim=1)

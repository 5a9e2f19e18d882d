"""Velocity spaces with Gauss–Legendre quadrature (full and half range).

``weights`` integrate over the velocity interval (they sum to ``hi - lo``).
Kinetic models choose their own normalisation: the linear transport average
``<f> = 1/2 int_{-1}^{1} f dv`` is :meth:`VelocitySpace.mean`, the BGK moments
``int m(v) f dv`` are :meth:`VelocitySpace.integrate`.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch


@dataclass(frozen=True)
class VelocitySpace:
    """Quadrature nodes and weights on ``[lo, hi]`` for the coordinate ``name``."""

    lo: float
    hi: float
    nodes_np: np.ndarray = field(repr=False)
    weights_np: np.ndarray = field(repr=False)
    name: str = "v"

    @classmethod
    def gauss_legendre(cls, lo: float, hi: float, n: int, name: str = "v") -> "VelocitySpace":
        """``n``-point Gauss–Legendre rule mapped to ``[lo, hi]`` (exact to degree 2n-1)."""
        if n < 1:
            raise ValueError(f"number of quadrature nodes must be >= 1, got {n}")
        if not hi > lo:
            raise ValueError(f"velocity interval needs hi > lo, got [{lo}, {hi}]")
        z, w = np.polynomial.legendre.leggauss(n)
        half = 0.5 * (hi - lo)
        return cls(float(lo), float(hi), 0.5 * (hi + lo) + half * z, half * w, name)

    @classmethod
    def half_range(cls, vmax: float, n: int, sign: int = 1, name: str = "v") -> "VelocitySpace":
        """Gauss–Legendre rule on ``[0, vmax]`` (``sign=1``) or ``[-vmax, 0]`` (``sign=-1``):
        for boundary fluxes over incoming or outgoing velocities."""
        if sign not in (1, -1):
            raise ValueError("sign must be +1 or -1")
        return cls.gauss_legendre(0.0, vmax, n, name) if sign > 0 else cls.gauss_legendre(-vmax, 0.0, n, name)

    @property
    def n(self) -> int:
        return len(self.nodes_np)

    @property
    def symmetric(self) -> bool:
        return self.lo == -self.hi and np.allclose(self.nodes_np, -self.nodes_np[::-1])

    def positive(self) -> "VelocitySpace":
        """The nodes ``v > 0`` of a symmetric rule with their weights doubled, so that
        for an even function ``g``: ``positive().integrate(g) == integrate(g)``.
        Parity-exact formulations evaluate only there (half the work)."""
        if not self.symmetric or self.n % 2:
            raise ValueError("positive() needs a symmetric rule with an even number of nodes")
        keep = self.nodes_np > 0
        return VelocitySpace(self.lo, self.hi, self.nodes_np[keep], 2.0 * self.weights_np[keep], self.name)

    def nodes(self, device=None, dtype=torch.float32) -> torch.Tensor:
        return torch.as_tensor(self.nodes_np, device=device, dtype=dtype)

    def weights(self, device=None, dtype=torch.float32) -> torch.Tensor:
        return torch.as_tensor(self.weights_np, device=device, dtype=dtype)

    def integrate(self, values: torch.Tensor, dim: int = -1) -> torch.Tensor:
        """``int values dv`` along ``dim`` (the velocity axis)."""
        w = self.weights(values.device, values.dtype)
        return torch.tensordot(values.movedim(dim, -1), w, dims=1)

    def mean(self, values: torch.Tensor, dim: int = -1) -> torch.Tensor:
        """``1/(hi-lo) int values dv`` along ``dim``."""
        return self.integrate(values, dim) / (self.hi - self.lo)

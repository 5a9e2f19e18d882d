"""Samplers of collocation points in a :class:`~sciml.domain.geometry.Box`.

A sampler is a small strategy object with ``sample(box, n, generator)`` returning
named columns on the generator's device. Degenerate intervals of the box (faces,
time slices) are filled with their fixed value, so boundary and initial-slice
points come from the same sampler as interior points::

    box = Box.of(t=(0, 0.1), x=(0, 1))
    interior = Uniform().sample(box, 512, g)
    left = Uniform().sample(box.face("x", "lo"), 128, g)
    initial = Uniform().sample(box.slice(t=0.0), 128, g)

All randomness comes from the ``torch.Generator`` passed in, so resampling every
training step is reproducible and restored exactly on resume.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from .geometry import Box, Points


def _fill(box: Box, unit: torch.Tensor) -> Points:
    """Map points of the unit cube over the box's free coordinates onto the box."""
    out: Points = {}
    col = 0
    n = unit.shape[0]
    for iv in box.intervals:
        if iv.degenerate:
            out[iv.name] = torch.full((n,), iv.lo, device=unit.device, dtype=unit.dtype)
        else:
            out[iv.name] = iv.lo + iv.length * unit[:, col]
            col += 1
    return out


def _free_dim(box: Box) -> int:
    return sum(not iv.degenerate for iv in box.intervals)


@dataclass(frozen=True)
class Uniform:
    """Independent uniform random points."""

    dtype: torch.dtype = torch.float32

    def sample(self, box: Box, n: int, generator: torch.Generator) -> Points:
        unit = torch.rand(n, _free_dim(box), generator=generator, device=generator.device, dtype=self.dtype)
        return _fill(box, unit)


@dataclass(frozen=True)
class Sobol:
    """Scrambled Sobol points; the scramble seed is drawn from the generator, so every
    call gives a fresh low-discrepancy set and the sequence is reproducible."""

    dtype: torch.dtype = torch.float32

    def sample(self, box: Box, n: int, generator: torch.Generator) -> Points:
        d = _free_dim(box)
        seed = int(torch.randint(0, 2**31 - 1, (1,), generator=generator, device=generator.device).item())
        if d == 0:
            unit = torch.empty(n, 0)
        else:
            unit = torch.quasirandom.SobolEngine(d, scramble=True, seed=seed).draw(n, dtype=torch.float64)
        return _fill(box, unit.to(device=generator.device, dtype=self.dtype))


@dataclass(frozen=True)
class Grid:
    """Deterministic midpoint grid (for fixed-batch phases such as L-BFGS): the
    ``n`` points are the centres of an ``m^d`` lattice with ``m = ceil(n^(1/d))``,
    truncated to ``n``. The generator is ignored."""

    dtype: torch.dtype = torch.float32

    def sample(self, box: Box, n: int, generator: torch.Generator) -> Points:
        d = _free_dim(box)
        device = generator.device
        if d == 0:
            return _fill(box, torch.empty(n, 0, device=device, dtype=self.dtype))
        m = max(1, int(round(n ** (1.0 / d))))
        while m**d < n:
            m += 1
        axis = (torch.arange(m, device=device, dtype=self.dtype) + 0.5) / m
        mesh = torch.meshgrid(*([axis] * d), indexing="ij")
        unit = torch.stack([g.reshape(-1) for g in mesh], dim=-1)[:n]
        return _fill(box, unit)


SAMPLERS = {"uniform": Uniform, "sobol": Sobol, "grid": Grid}

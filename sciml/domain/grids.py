"""Evaluation grids: cell centres, uniform points, tensor products."""
from __future__ import annotations

import torch

from .geometry import Interval, Points


def cell_centres(interval: Interval, n: int, device=None, dtype=torch.float64) -> torch.Tensor:
    """Centres of ``n`` equal cells of ``interval``."""
    if n < 1:
        raise ValueError(f"need n >= 1 cells, got {n}")
    h = interval.length / n
    return interval.lo + h * (torch.arange(n, device=device, dtype=dtype) + 0.5)


def uniform(interval: Interval, n: int, device=None, dtype=torch.float64) -> torch.Tensor:
    """``n`` equispaced points including both end points."""
    if n < 2:
        raise ValueError(f"need n >= 2 points, got {n}")
    return torch.linspace(interval.lo, interval.hi, n, device=device, dtype=dtype)


def tensor_grid(**axes: torch.Tensor) -> Points:
    """Cartesian product of 1-D axes as named columns (first axis slowest), so that
    ``values.reshape(*[len(a) for a in axes.values()])`` recovers the grid layout."""
    mesh = torch.meshgrid(*axes.values(), indexing="ij")
    return {k: m.reshape(-1) for k, m in zip(axes, mesh)}

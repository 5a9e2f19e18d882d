"""Geometric primitives: named intervals and boxes (products of intervals).

Every coordinate carries a name (``"t"``, ``"x"``, ``"v"``, ...). Points are passed
around as *named columns*: a ``dict[str, Tensor]`` of equal-length 1-D tensors. This
is what the samplers produce, what the residual engine differentiates against and
what the physics modules read, so derivatives are always asked for by name.

A degenerate interval (``lo == hi``) is allowed: it is how faces of a box (boundary
points) and time slices (initial points) are represented, so one sampler serves the
interior, the boundary and the initial slice.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Mapping

import torch

Points = dict[str, torch.Tensor]


@dataclass(frozen=True)
class Interval:
    """Closed interval ``[lo, hi]`` of the coordinate ``name``."""

    name: str
    lo: float
    hi: float

    def __post_init__(self):
        if not self.name.isidentifier():
            raise ValueError(f"coordinate name must be an identifier, got {self.name!r}")
        if not (float(self.hi) >= float(self.lo)):
            raise ValueError(f"interval {self.name}: need hi >= lo, got [{self.lo}, {self.hi}]")
        object.__setattr__(self, "lo", float(self.lo))
        object.__setattr__(self, "hi", float(self.hi))

    @property
    def length(self) -> float:
        return self.hi - self.lo

    @property
    def degenerate(self) -> bool:
        return self.hi == self.lo

    def at(self, value: float) -> "Interval":
        """The degenerate interval ``[value, value]`` of the same coordinate."""
        if not (self.lo <= value <= self.hi):
            raise ValueError(f"{self.name}={value} lies outside [{self.lo}, {self.hi}]")
        return Interval(self.name, value, value)

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        """Affine map of ``[lo, hi]`` onto ``[-1, 1]`` (identity shift for degenerate)."""
        if self.degenerate:
            return x - self.lo
        return (2.0 * x - (self.lo + self.hi)) / self.length


def TimeInterval(t0: float, t1: float) -> Interval:  # noqa: N802 - reads like a type
    """The time interval ``[t0, t1]`` (coordinate ``t``)."""
    return Interval("t", t0, t1)


@dataclass(frozen=True)
class Box:
    """Product of named intervals, e.g. ``t x x`` or ``t x x x v``."""

    intervals: tuple[Interval, ...]

    def __post_init__(self):
        names = [iv.name for iv in self.intervals]
        if len(set(names)) != len(names):
            raise ValueError(f"duplicate coordinate names in box: {names}")

    @classmethod
    def of(cls, **ranges: tuple[float, float]) -> "Box":
        """``Box.of(t=(0, 1), x=(0, 1))``: keyword order is coordinate order."""
        return cls(tuple(Interval(k, lo, hi) for k, (lo, hi) in ranges.items()))

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(iv.name for iv in self.intervals)

    @property
    def dim(self) -> int:
        return len(self.intervals)

    def __getitem__(self, name: str) -> Interval:
        for iv in self.intervals:
            if iv.name == name:
                return iv
        raise KeyError(f"box has no coordinate {name!r} (has {self.names})")

    def __mul__(self, other: "Box | Interval") -> "Box":
        other_ivs = (other,) if isinstance(other, Interval) else other.intervals
        return Box(self.intervals + tuple(other_ivs))

    def replace(self, interval: Interval) -> "Box":
        return Box(tuple(interval if iv.name == interval.name else iv for iv in self.intervals))

    def face(self, name: str, side: str) -> "Box":
        """The face ``name = lo`` (``side="lo"``) or ``name = hi`` as a degenerate box."""
        iv = self[name]
        if side not in ("lo", "hi"):
            raise ValueError(f"side must be 'lo' or 'hi', got {side!r}")
        return self.replace(iv.at(iv.lo if side == "lo" else iv.hi))

    def slice(self, **values: float) -> "Box":
        """Fix coordinates, e.g. ``box.slice(t=0.0)`` for the initial slice."""
        box = self
        for k, val in values.items():
            box = box.replace(self[k].at(val))
        return box

    def without(self, *names: str) -> "Box":
        return Box(tuple(iv for iv in self.intervals if iv.name not in names))

    @property
    def volume(self) -> float:
        vol = 1.0
        for iv in self.intervals:
            if not iv.degenerate:
                vol *= iv.length
        return vol

    def lo_hi(self, device=None, dtype=None) -> tuple[torch.Tensor, torch.Tensor]:
        lo = torch.tensor([iv.lo for iv in self.intervals], device=device, dtype=dtype)
        hi = torch.tensor([iv.hi for iv in self.intervals], device=device, dtype=dtype)
        return lo, hi

    def contains(self, points: Mapping[str, torch.Tensor], tol: float = 0.0) -> torch.Tensor:
        ok = None
        for iv in self.intervals:
            p = points[iv.name]
            inside = (p >= iv.lo - tol) & (p <= iv.hi + tol)
            ok = inside if ok is None else ok & inside
        return ok


def stack_points(points: Mapping[str, torch.Tensor], names: Iterable[str]) -> torch.Tensor:
    """Named columns -> an ``(N, d)`` tensor in the order of ``names``."""
    return torch.stack([points[n] for n in names], dim=-1)


def unstack_points(x: torch.Tensor, names: Iterable[str]) -> Points:
    """An ``(N, d)`` tensor -> named columns."""
    return {n: x[..., i] for i, n in enumerate(names)}


def n_points(points: Mapping[str, torch.Tensor]) -> int:
    lengths = {p.shape[0] for p in points.values()}
    if len(lengths) != 1:
        raise ValueError(f"named columns of unequal length: {lengths}")
    return lengths.pop()

"""Regions for collocation solvers: interior points, and boundary points with
outward unit normals and boundary-part labels.

A region is a bounded open set ``Ω ⊂ R^d`` whose coordinates carry names, like a
:class:`~sciml.domain.geometry.Box`. Its boundary is split into named *parts*
(``"inner"``/``"outer"`` of an annulus, ``"x_lo"``, ``"x_hi"``, ... of a box), so a
solver can impose Dirichlet data on some parts and Neumann/Robin data on others.

Protocol (:class:`Region`; every region is a frozen dataclass):

- ``names`` / ``dim``: coordinate names in order (``("x", "y")`` by default for the
  planar regions, settable with ``names=``).
- ``parts``: boundary part names; together they cover ``∂Ω``. ``part_measures``
  gives their lengths (2D) or areas (3D), ``perimeter`` their sum, ``measure`` the
  area/volume of ``Ω`` and ``bounds`` the axis-aligned bounding :class:`Box`.
- ``interior(n, generator)``: exactly ``n`` i.i.d. uniform points *strictly* inside
  (rejection against the open set, repeated until ``n`` are accepted).
- ``boundary(n, generator, parts=None)``: :class:`BoundaryPoints` -- ``n`` points on
  the selected parts (all when ``None``). The count per part is proportional to its
  measure (largest-remainder rounding: deterministic, sums to ``n``); within a part
  the points are i.i.d. uniform by arc length / area. Points come grouped by part
  in the order of ``parts``. ``normal`` is the outward unit normal (columns in the
  order of ``names``); ``part`` indexes ``region.parts``.
- ``contains(points, tol=0.0)``: membership in the closed region grown by ``tol``
  (``tol < 0`` shrinks it).

All randomness comes from the ``torch.Generator`` passed in and results live on
``generator.device``, so a collocation set is reproducible from its seed::

    region = Annulus(r_in=0.5, r_out=1.0)
    g = torch.Generator().manual_seed(0)
    xi = region.interior(1024, g)                      # {"x": (1024,), "y": (1024,)}
    bp = region.boundary(256, g)
    outer = bp.subset(bp.part == region.part_id("outer"))
    # du/dn = sum_k n_k du/dx_k, with columns of bp.normal in the order region.names
"""
from __future__ import annotations

import abc

import math
from dataclasses import dataclass
from typing import Iterable, Mapping, Sequence

import torch

from .geometry import Box, Interval, Points, stack_points, unstack_points

__all__ = ["BoundaryPoints", "Region", "BoxRegion", "Rectangle", "LShape", "Annulus", "Disk", "REGIONS"]


@dataclass(frozen=True)
class BoundaryPoints:
    """Boundary collocation points: named columns ``(N,)``, outward unit normals
    ``(N, d)`` (columns in the order of the region's ``names``) and part labels
    ``(N,)`` (int64 indices into the region's ``parts``)."""

    points: Points
    normal: torch.Tensor
    part: torch.Tensor

    def __len__(self) -> int:
        return int(self.part.shape[0])

    def subset(self, mask: torch.Tensor) -> "BoundaryPoints":
        """The points selected by a boolean mask or index tensor."""
        return BoundaryPoints({k: v[mask] for k, v in self.points.items()}, self.normal[mask], self.part[mask])


def _check_n(n, what: str = "n") -> int:
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise ValueError(f"{what} must be a non-negative integer, got {n!r}")
    return n


def _check_names(names: Sequence[str], dim: int) -> tuple[str, ...]:
    names = tuple(names)
    if len(names) != dim or len(set(names)) != dim or not all(isinstance(s, str) and s.isidentifier() for s in names):
        raise ValueError(f"names must be {dim} distinct identifiers, got {names!r}")
    return names


def _allocate(n: int, weights: Sequence[float]) -> list[int]:
    """Split ``n`` into integer counts proportional to ``weights`` (largest remainder)."""
    total = float(sum(weights))
    share = [n * w / total for w in weights]
    counts = [int(math.floor(s)) for s in share]
    order = sorted(range(len(share)), key=lambda i: (-(share[i] - counts[i]), i))
    for i in order[: n - sum(counts)]:
        counts[i] += 1
    return counts


class Region(abc.ABC):
    """Abstract base class of regions (see the module docstring for the protocol).

    Subclasses provide ``names``, ``parts``, ``part_measures``, ``measure``,
    ``bounds`` and the hooks ``_inside`` and ``_sample_part`` on ``(N, d)`` tensors;
    ``_candidates``/``_acceptance`` default to uniform points of ``bounds``."""

    names: tuple[str, ...]
    parts: tuple[str, ...]

    # -- geometry -------------------------------------------------------------
    @property
    def dim(self) -> int:
        return len(self.names)

    @property
    @abc.abstractmethod
    def part_measures(self) -> tuple[float, ...]:
        ...

    @property
    def perimeter(self) -> float:
        """Measure of the whole boundary (length in 2D, area in 3D)."""
        return float(sum(self.part_measures))

    @property
    @abc.abstractmethod
    def measure(self) -> float:
        ...

    @property
    @abc.abstractmethod
    def bounds(self) -> Box:
        ...

    def part_id(self, name: str) -> int:
        """Index of the boundary part ``name`` in ``parts``."""
        return self._select(name)[0]

    # -- hooks ----------------------------------------------------------------
    @abc.abstractmethod
    def _inside(self, x: torch.Tensor, tol: float, strict: bool) -> torch.Tensor:
        """Open set (``strict``) or closed set grown by ``tol``; ``x`` is ``(N, d)``."""
        ...

    @abc.abstractmethod
    def _sample_part(self, k: int, n: int, g: torch.Generator, dtype) -> tuple[torch.Tensor, torch.Tensor]:
        """``n`` uniform points ``(n, d)`` of part ``k`` and their outward normals."""
        ...

    @property
    def _acceptance(self) -> float:
        return self.measure / self.bounds.volume

    def _candidates(self, n: int, g: torch.Generator, dtype) -> torch.Tensor:
        lo, hi = self.bounds.lo_hi(device=g.device, dtype=dtype)
        return lo + (hi - lo) * torch.rand(n, self.dim, generator=g, device=g.device, dtype=dtype)

    def _select(self, parts: str | Iterable[str] | None) -> list[int]:
        if parts is None:
            return list(range(len(self.parts)))
        wanted = [parts] if isinstance(parts, str) else list(parts)
        bad = [p for p in wanted if p not in self.parts]
        if bad or not wanted:
            raise ValueError(f"unknown boundary part(s) {bad} of {type(self).__name__}; allowed: {list(self.parts)}")
        return sorted({self.parts.index(p) for p in wanted})

    # -- public sampling ------------------------------------------------------
    def contains(self, points: Mapping[str, torch.Tensor], tol: float = 0.0) -> torch.Tensor:
        """Boolean mask: points in the closed region grown by ``tol`` (shrunk if ``tol < 0``)."""
        return self._inside(stack_points(points, self.names), float(tol), strict=False)

    def interior(self, n: int, generator: torch.Generator, *, dtype=torch.float64) -> Points:
        """Exactly ``n`` i.i.d. uniform points strictly inside the region."""
        n = _check_n(n)
        chunks, have = [], 0
        while have < n:
            m = int(math.ceil((n - have) / self._acceptance * 1.1)) + 16
            x = self._candidates(m, generator, dtype)
            x = x[self._inside(x, 0.0, strict=True)]
            chunks.append(x)
            have += x.shape[0]
        x = torch.cat(chunks)[:n] if chunks else torch.empty(0, self.dim, device=generator.device, dtype=dtype)
        return {k: v.contiguous() for k, v in unstack_points(x, self.names).items()}

    def boundary(self, n: int, generator: torch.Generator, *, parts=None, dtype=torch.float64) -> BoundaryPoints:
        """``n`` points on the selected parts, counts proportional to part measure,
        uniform within each part, grouped by part; see :class:`BoundaryPoints`."""
        n = _check_n(n)
        ids = self._select(parts)
        device = generator.device
        xs = [torch.empty(0, self.dim, device=device, dtype=dtype)]
        normals, labels = list(xs), [torch.empty(0, device=device, dtype=torch.int64)]
        for k, c in zip(ids, _allocate(n, [self.part_measures[i] for i in ids])):
            if c:
                x, nrm = self._sample_part(k, c, generator, dtype)
                xs.append(x)
                normals.append(nrm)
                labels.append(torch.full((c,), k, device=device, dtype=torch.int64))
        x = torch.cat(xs)
        pts = {k: v.contiguous() for k, v in unstack_points(x, self.names).items()}
        return BoundaryPoints(pts, torch.cat(normals), torch.cat(labels))


# ---------------------------------------------------------------------------- box
@dataclass(frozen=True)
class BoxRegion(Region):
    """Axis-aligned box of any dimension; parts ``"<name>_lo"``, ``"<name>_hi"`` for
    every coordinate in order (normals ``-e_k``, ``+e_k``)."""

    box: Box

    def __post_init__(self):
        if self.box.dim == 0:
            raise ValueError("BoxRegion needs at least one coordinate")
        flat = [iv.name for iv in self.box.intervals if not iv.length > 0]
        if flat:
            raise ValueError(f"BoxRegion needs hi > lo for every coordinate; degenerate: {flat}")

    @classmethod
    def of(cls, **ranges: tuple[float, float]) -> "BoxRegion":
        """``BoxRegion.of(x=(0, 1), y=(0, 1))``: keyword order is coordinate order."""
        return cls(Box.of(**ranges))

    @property
    def names(self) -> tuple[str, ...]:
        return self.box.names

    @property
    def parts(self) -> tuple[str, ...]:
        return tuple(f"{name}_{side}" for name in self.names for side in ("lo", "hi"))

    @property
    def part_measures(self) -> tuple[float, ...]:
        lengths = [iv.length for iv in self.box.intervals]
        faces = [math.prod(lengths[:k] + lengths[k + 1:]) for k in range(self.dim)]
        return tuple(f for f in faces for _ in range(2))

    @property
    def measure(self) -> float:
        return self.box.volume

    @property
    def bounds(self) -> Box:
        return self.box

    @property
    def _acceptance(self) -> float:
        return 1.0

    def _inside(self, x, tol, strict):
        lo, hi = self.box.lo_hi(device=x.device, dtype=x.dtype)
        if strict:
            return ((x > lo) & (x < hi)).all(dim=-1)
        return ((x >= lo - tol) & (x <= hi + tol)).all(dim=-1)

    def _face(self, k: int, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Pin coordinate ``k // 2`` of ``x`` to its lo/hi value; normals of face ``k``."""
        axis, side = divmod(k, 2)
        iv = self.box.intervals[axis]
        x[:, axis] = iv.hi if side else iv.lo
        normal = torch.zeros_like(x)
        normal[:, axis] = 1.0 if side else -1.0
        return x, normal

    def _sample_part(self, k, n, g, dtype):
        return self._face(k, self._candidates(n, g, dtype))

    def grid_boundary(self, n_per_face: int, *, parts=None, device=None, dtype=torch.float64) -> BoundaryPoints:
        """Deterministic boundary points: on every selected face the centres of an
        ``m^(d-1)`` lattice with ``m = ceil(n_per_face^(1/(d-1)))`` (``n_per_face``
        midpoints on the edges of a rectangle, an ``m x m`` grid on the faces of a
        3D box; one point per face in 1D). Each point stands for an equal share
        ``face measure / m^(d-1)`` of its face, so this is a midpoint quadrature."""
        if _check_n(n_per_face, "n_per_face") == 0:
            raise ValueError("n_per_face must be >= 1")
        d = self.dim
        lo, hi = self.box.lo_hi(device=device, dtype=dtype)
        free = torch.empty(1, 0, device=device, dtype=dtype)  # lattice over a face's free coordinates
        if d > 1:
            m = max(1, math.ceil(n_per_face ** (1.0 / (d - 1)) - 1e-9))
            while m ** (d - 1) < n_per_face:
                m += 1
            axis = (torch.arange(m, device=device, dtype=dtype) + 0.5) / m
            free = torch.stack([c.reshape(-1) for c in torch.meshgrid(*([axis] * (d - 1)), indexing="ij")], dim=-1)
        xs, normals, labels = [], [], []
        for k in self._select(parts):
            a = k // 2
            face_unit = torch.cat([free[:, :a], free.new_zeros(free.shape[0], 1), free[:, a:]], dim=-1)
            x, nrm = self._face(k, lo + (hi - lo) * face_unit)
            xs.append(x)
            normals.append(nrm)
            labels.append(torch.full((x.shape[0],), k, device=device, dtype=torch.int64))
        x = torch.cat(xs)
        pts = {k: v.contiguous() for k, v in unstack_points(x, self.names).items()}
        return BoundaryPoints(pts, torch.cat(normals), torch.cat(labels))


Rectangle = BoxRegion  # a 2D BoxRegion: ``Rectangle.of(x=(0, 1), y=(0, 2))``


# ------------------------------------------------------------------------ polygon
def _sample_segments(segments, n: int, g: torch.Generator, dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` points uniform by arc length on a union of segments ``(a, b, normal)``."""
    device = g.device
    a, b, nrm = (torch.tensor([s[i] for s in segments], device=device, dtype=dtype) for i in range(3))
    length = (b - a).norm(dim=-1)
    cum = torch.cumsum(length, 0)
    t = torch.rand(n, generator=g, device=device, dtype=dtype) * cum[-1]
    j = torch.searchsorted(cum, t, right=True).clamp(max=len(segments) - 1)
    s = ((t - (cum[j] - length[j])) / length[j]).clamp(0.0, 1.0)
    return a[j] + s[:, None] * (b[j] - a[j]), nrm[j]


@dataclass(frozen=True)
class LShape(Region):
    """L-shaped domain: the square ``[lo, hi]^2`` minus the quadrant
    ``[corner, hi] x [corner, hi]`` (default: ``[-1, 1]^2`` minus ``[0, 1]^2``).

    Parts: ``"outer"`` -- the four remaining pieces of the square's edges
    (``x = lo``, ``y = lo``, ``x = hi`` for ``y <= corner``, ``y = hi`` for
    ``x <= corner``); ``"notch"`` -- the two re-entrant edges ``x = corner`` and
    ``y = corner`` along the removed quadrant (normals point into it)."""

    lo: float = -1.0
    hi: float = 1.0
    corner: float = 0.0
    names: tuple[str, ...] = ("x", "y")
    parts = ("outer", "notch")

    def __post_init__(self):
        for f in ("lo", "hi", "corner"):
            object.__setattr__(self, f, float(getattr(self, f)))
        if not self.lo < self.hi:
            raise ValueError(f"LShape needs lo < hi, got lo={self.lo}, hi={self.hi}")
        if not self.lo < self.corner < self.hi:
            raise ValueError(f"LShape corner must lie strictly inside ({self.lo}, {self.hi}), got {self.corner}")
        object.__setattr__(self, "names", _check_names(self.names, 2))

    def _segments(self, k: int):
        lo, hi, c = self.lo, self.hi, self.corner
        if k == 0:  # outer, counter-clockwise
            return [((lo, lo), (hi, lo), (0.0, -1.0)), ((hi, lo), (hi, c), (1.0, 0.0)),
                    ((c, hi), (lo, hi), (0.0, 1.0)), ((lo, hi), (lo, lo), (-1.0, 0.0))]
        return [((hi, c), (c, c), (0.0, 1.0)), ((c, c), (c, hi), (1.0, 0.0))]

    @property
    def part_measures(self) -> tuple[float, ...]:
        side, cut = self.hi - self.lo, self.hi - self.corner
        return (2 * side + 2 * (self.corner - self.lo), 2 * cut)

    @property
    def measure(self) -> float:
        return (self.hi - self.lo) ** 2 - (self.hi - self.corner) ** 2

    @property
    def bounds(self) -> Box:
        return Box(tuple(Interval(n, self.lo, self.hi) for n in self.names))

    def _inside(self, x, tol, strict):
        px, py, c = x[:, 0], x[:, 1], self.corner
        if strict:  # open square minus the closed quadrant
            return (px > self.lo) & (px < self.hi) & (py > self.lo) & (py < self.hi) & ~((px >= c) & (py >= c))
        lo, hi = self.lo - tol, self.hi + tol
        return (px >= lo) & (px <= hi) & (py >= lo) & (py <= hi) & ~((px > c + tol) & (py > c + tol))

    def _sample_part(self, k, n, g, dtype):
        return _sample_segments(self._segments(k), n, g, dtype)


# ------------------------------------------------------------------------- radial
class _Radial(Region):
    """Shared code of :class:`Disk` and :class:`Annulus`: radii ``_r0 < _r1``
    (``_r0 = 0`` for a disk) about ``center``; ``_circles`` gives (radius, normal
    sign) per part."""

    _r0: float
    _r1: float
    center: tuple[float, float]
    _circles: tuple[tuple[float, float], ...]

    def _check_center(self):
        c = tuple(float(v) for v in self.center)
        if len(c) != 2:
            raise ValueError(f"center must have 2 coordinates, got {self.center!r}")
        object.__setattr__(self, "center", c)
        object.__setattr__(self, "names", _check_names(self.names, 2))

    @property
    def part_measures(self) -> tuple[float, ...]:
        return tuple(2 * math.pi * r for r, _ in self._circles)

    @property
    def measure(self) -> float:
        return math.pi * (self._r1**2 - self._r0**2)

    @property
    def bounds(self) -> Box:
        return Box(tuple(Interval(n, c - self._r1, c + self._r1) for n, c in zip(self.names, self.center)))

    @property
    def _acceptance(self) -> float:
        return 1.0

    def _radius(self, x):
        return torch.hypot(x[:, 0] - self.center[0], x[:, 1] - self.center[1])

    def _inside(self, x, tol, strict):
        r = self._radius(x)
        if strict:
            return (r < self._r1) & (r > self._r0) if self._r0 > 0 else r < self._r1
        return (r <= self._r1 + tol) & (r >= self._r0 - tol) if self._r0 > 0 else r <= self._r1 + tol

    def _polar(self, r, theta):
        direction = torch.stack([torch.cos(theta), torch.sin(theta)], dim=-1)
        c = torch.tensor(self.center, device=r.device, dtype=r.dtype)
        return c + r[:, None] * direction, direction

    def _candidates(self, n, g, dtype):
        u, v = torch.rand(2, n, generator=g, device=g.device, dtype=dtype)
        r = torch.sqrt(self._r0**2 + u * (self._r1**2 - self._r0**2))  # density ∝ r: uniform by area
        return self._polar(r, 2 * math.pi * v)[0]

    def _sample_part(self, k, n, g, dtype):
        radius, sign = self._circles[k]
        theta = 2 * math.pi * torch.rand(n, generator=g, device=g.device, dtype=dtype)
        x, direction = self._polar(torch.full_like(theta, radius), theta)
        return x, sign * direction


@dataclass(frozen=True)
class Annulus(_Radial):
    """``r_in < |x - center| < r_out``. Parts: ``"inner"`` (normal points toward the
    centre, i.e. out of the domain) and ``"outer"``."""

    r_in: float = 0.5
    r_out: float = 1.0
    center: tuple[float, float] = (0.0, 0.0)
    names: tuple[str, ...] = ("x", "y")
    parts = ("inner", "outer")

    def __post_init__(self):
        object.__setattr__(self, "r_in", float(self.r_in))
        object.__setattr__(self, "r_out", float(self.r_out))
        if not 0 < self.r_in < self.r_out:
            raise ValueError(f"Annulus needs 0 < r_in < r_out, got r_in={self.r_in}, r_out={self.r_out}")
        self._check_center()

    _r0 = property(lambda self: self.r_in)
    _r1 = property(lambda self: self.r_out)
    _circles = property(lambda self: ((self.r_in, -1.0), (self.r_out, 1.0)))


@dataclass(frozen=True)
class Disk(_Radial):
    """``|x - center| < radius``; one part ``"circle"``."""

    radius: float = 1.0
    center: tuple[float, float] = (0.0, 0.0)
    names: tuple[str, ...] = ("x", "y")
    parts = ("circle",)

    def __post_init__(self):
        object.__setattr__(self, "radius", float(self.radius))
        if not self.radius > 0:
            raise ValueError(f"Disk needs radius > 0, got {self.radius}")
        self._check_center()

    _r0 = 0.0
    _r1 = property(lambda self: self.radius)
    _circles = property(lambda self: ((self.radius, 1.0),))


REGIONS = {"box": BoxRegion, "lshape": LShape, "annulus": Annulus, "disk": Disk}

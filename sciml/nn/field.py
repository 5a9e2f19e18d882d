"""Fields: networks as functions of named coordinates.

A :class:`Field` maps named columns (``{"t": ..., "x": ..., "v": ...}``) to an
``(N, k)`` tensor. It normalises each input onto ``[-1, 1]`` from its interval,
applies an optional *parity* feature map in one coordinate (exact even/odd
symmetry) and an optional *output transform*. Everything is built from small
objects passed by keyword, so the residual engine can differentiate any field by
coordinate name.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import torch
from torch import nn

from ..domain.geometry import Interval, Points
from .layers import ARCHITECTURES


# ---- parity in one coordinate -------------------------------------------------------
@dataclass(frozen=True)
class Even:
    """Exactly even in ``var``: the network sees ``var**2`` (a smooth even function of
    ``v`` is a smooth function of ``v**2``), so ``F(-v) == F(v)`` bit for bit."""

    var: str = "v"

    def feature(self, v: torch.Tensor, iv: Interval) -> torch.Tensor:
        s = max(abs(iv.lo), abs(iv.hi)) or 1.0
        return 2.0 * (v / s) ** 2 - 1.0

    def output(self, y: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        return y


@dataclass(frozen=True)
class Odd:
    """Exactly odd in ``var``: ``F(v) = v * N(v**2)``."""

    var: str = "v"

    def feature(self, v: torch.Tensor, iv: Interval) -> torch.Tensor:
        return Even(self.var).feature(v, iv)

    def output(self, y: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        return y * v.unsqueeze(-1)


# ---- output transforms ---------------------------------------------------------------
@dataclass(frozen=True)
class Identity:
    def __call__(self, y: torch.Tensor, points: Points) -> torch.Tensor:
        return y


@dataclass(frozen=True)
class Exp:
    """Positive output ``exp(y)``."""

    def __call__(self, y, points):
        return torch.exp(y)


@dataclass(frozen=True)
class Softplus:
    """Positive output ``softplus(y)``."""

    def __call__(self, y, points):
        return torch.nn.functional.softplus(y)


@dataclass(frozen=True)
class TimesExp:
    """``(t - t0) * exp(-y)``: exactly zero at ``t = t0`` and positive after (the
    zero-initial-density transform of the APNN papers)."""

    var: str = "t"
    t0: float = 0.0

    def __call__(self, y, points):
        return (points[self.var] - self.t0).unsqueeze(-1) * torch.exp(-y)


@dataclass(frozen=True)
class Affine:
    """``offset + scale * y`` (e.g. to start near a known value)."""

    scale: float = 1.0
    offset: float = 0.0

    def __call__(self, y, points):
        return self.offset + self.scale * y


@dataclass(frozen=True, eq=False)
class Walls:
    """Exact values at the walls ``x = a`` and ``x = b``:

        y -> g_a(t) (b - x)/L + g_b(t) (x - a)/L + 4 (x - a)(b - x)/L^2 y,   L = b - a,

    so the field equals ``g_a`` at ``a`` and ``g_b`` at ``b`` for any network output
    ``y`` (the construction of Jin, Ma, Wu, arXiv 2306.15381, for the BGK macroscopic
    unknowns). ``log=True`` blends ``log g`` and exponentiates: positive and exact.
    ``left``/``right``: numbers or callables of the tensor ``t``."""

    a: float
    b: float
    left: Callable | float
    right: Callable | float
    log: bool = False
    var: str = "x"
    time: str = "t"

    def _value(self, g, points):
        t = points[self.time]
        val = g(t) if callable(g) else torch.full_like(t, float(g))
        val = torch.as_tensor(val, dtype=t.dtype, device=t.device).expand_as(t)
        return torch.log(val) if self.log else val

    def __call__(self, y, points):
        x = points[self.var]
        L = self.b - self.a
        wa, wb = ((self.b - x) / L).unsqueeze(-1), ((x - self.a) / L).unsqueeze(-1)
        out = wa * self._value(self.left, points).unsqueeze(-1) + wb * self._value(self.right, points).unsqueeze(-1) \
            + 4.0 * wa * wb * y
        return torch.exp(out) if self.log else out


OUTPUTS = {"identity": Identity, "exp": Exp, "softplus": Softplus, "t_exp": TimesExp}


class Field(nn.Module):
    """A network of named inputs (see module doc).

    ``inputs``: the intervals of the coordinates it takes, in order (used for
    normalisation). ``net``: any module mapping ``(N, d) -> (N, k)``.
    """

    def __init__(self, inputs: Sequence[Interval], net: nn.Module, *, parity=None,
                 output: Callable = Identity()):
        super().__init__()
        self.intervals = tuple(inputs)
        self.names = tuple(iv.name for iv in self.intervals)
        self.net = net
        self.parity = parity
        self.output = output
        if parity is not None and parity.var not in self.names:
            raise ValueError(f"parity in {parity.var!r} but the field's inputs are {self.names}")

    def forward(self, points: Points) -> torch.Tensor:
        cols = []
        for iv in self.intervals:
            p = points[iv.name]
            if self.parity is not None and iv.name == self.parity.var:
                cols.append(self.parity.feature(p, iv))
            else:
                cols.append(iv.normalize(p))
        y = self.net(torch.stack(cols, dim=-1))
        if self.parity is not None:
            y = self.parity.output(y, points[self.parity.var])
        return self.output(y, points)


def build_field(inputs: Sequence[Interval], out_dim: int = 1, *, arch: str = "mlp", width: int = 128,
                depth: int = 4, act: str = "tanh", parity=None, output: Callable = Identity()) -> Field:
    try:
        cls = ARCHITECTURES[arch]
    except KeyError:
        raise ValueError(f"unknown architecture {arch!r}; allowed: {sorted(ARCHITECTURES)}") from None
    return Field(inputs, cls(len(inputs), out_dim, width=width, depth=depth, act=act), parity=parity, output=output)

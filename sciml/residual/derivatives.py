"""Batched input derivatives of a network's outputs with respect to named inputs.

``derivatives(fn, points, wrt)`` evaluates ``fn`` on named columns and returns a
dict keyed by derivative multi-index (tuples of coordinate names)::

    d = derivatives(field, {"t": t, "x": x}, [("t",), ("x",), ("x", "x"), ("t", "x")])
    d[()]          # value, shape (N, k)
    d[("x", "x")]  # second derivative in x, shape (N, k)

The result stays differentiable with respect to the network parameters, so a loss
built from it can be back-propagated.

Two strategies (small objects passed by keyword, ``engine=...``):

* :class:`Reverse` — reverse mode: one ``autograd.grad`` call per (parent
  derivative, output column): all first derivatives come from one call, all
  second derivatives of one first derivative from one more. The default: on CPU it
  is the fastest (see ``benchmarks/residual.py``).
* :class:`Forward` — forward mode through ``torch.func.jvp`` with the tangent
  directions batched by ``torch.func.vmap``; higher orders by nesting. The
  value and all directional derivatives come out of one batched pass.

Both are checked against analytic derivatives in ``tests/test_residual.py``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Mapping, Sequence

import torch

from ..domain.geometry import Points

Index = tuple[str, ...]
Fn = Callable[[Points], torch.Tensor]


def _as_2d(y: torch.Tensor) -> torch.Tensor:
    return y.unsqueeze(-1) if y.dim() == 1 else y


def _check(points: Mapping[str, torch.Tensor], wrt: Sequence[Index]) -> list[Index]:
    out = []
    for idx in wrt:
        idx = (idx,) if isinstance(idx, str) else tuple(idx)
        for name in idx:
            if name not in points:
                raise KeyError(f"derivative with respect to {name!r}, but the points have {tuple(points)}")
        if len(idx) > 3:
            raise ValueError(f"derivatives up to third order are supported, got {idx}")
        out.append(idx)
    return out


@dataclass(frozen=True)
class Reverse:
    """Reverse-mode derivatives (``torch.autograd.grad`` with ``create_graph``)."""

    def __call__(self, fn: Fn, points: Points, wrt: Sequence[Index]) -> dict[Index, torch.Tensor]:
        wrt = _check(points, wrt)
        names = sorted({n for idx in wrt for n in idx})
        leaves = {k: (v.detach().requires_grad_(True) if k in names else v) for k, v in points.items()}
        y = _as_2d(fn(leaves))
        cache: dict[Index, torch.Tensor] = {(): y}
        wanted = [tuple(sorted(idx)) for idx in wrt]
        # every prefix of every wanted index must be built; group by parent so that all
        # derivatives of one parent column come from a single autograd.grad call
        needed = sorted({idx[:k] for idx in wanted for k in range(1, len(idx) + 1)}, key=len)
        for order in range(1, 4):
            level = [idx for idx in needed if len(idx) == order]
            by_parent: dict[Index, list[str]] = {}
            for idx in level:
                by_parent.setdefault(idx[:-1], []).append(idx[-1])
            for parent, nxt in by_parent.items():
                py = cache[parent]
                cols: dict[str, list[torch.Tensor]] = {n: [] for n in nxt}
                for c in range(py.shape[-1]):
                    # a parent that depends on no coordinate has zero derivatives (u = x^2: u_yy = 0)
                    grads = (torch.autograd.grad(py[:, c].sum(), [leaves[n] for n in nxt], create_graph=True,
                                                 allow_unused=True) if py.requires_grad else [None] * len(nxt))
                    for n, g in zip(nxt, grads):
                        cols[n].append(torch.zeros_like(leaves[n]) if g is None else g)
                for n in nxt:
                    cache[parent + (n,)] = torch.stack(cols[n], dim=-1)
        out: dict[Index, torch.Tensor] = {(): y}
        for idx, key in zip(wrt, wanted):
            out[idx] = cache[key]
        return out


@dataclass(frozen=True)
class Forward:
    """Forward-mode derivatives (``torch.func.jvp``, directions batched by ``vmap``)."""

    def __call__(self, fn: Fn, points: Points, wrt: Sequence[Index]) -> dict[Index, torch.Tensor]:
        from torch.func import jvp, vmap

        wrt = _check(points, wrt)
        names = list(points)
        base = {k: v for k, v in points.items()}

        def f(*cols):
            return _as_2d(fn(dict(zip(names, cols))))

        primals = tuple(base[n] for n in names)

        def unit(name):
            return tuple(torch.ones_like(p) if n == name else torch.zeros_like(p) for n, p in zip(names, primals))

        def directional(g, name):
            # derivative of g along coordinate `name`, as a function of the primals
            def dg(*cols):
                return jvp(g, cols, unit(name))[1]
            return dg

        out: dict[Index, torch.Tensor] = {(): f(*primals)}
        first = sorted({idx[0] for idx in wrt if len(idx) == 1})
        if first:
            tangents = tuple(torch.stack([u for u in us]) for us in zip(*[unit(n) for n in first]))
            d1 = vmap(lambda *tg: jvp(f, primals, tg)[1])(*tangents)
            for i, n in enumerate(first):
                out[(n,)] = d1[i]
        for idx in wrt:
            if len(idx) == 1:
                continue
            g = f
            for name in sorted(idx):
                g = directional(g, name)
            out[idx] = g(*primals)
        return out


DEFAULT_ENGINE = Reverse()


def derivatives(fn: Fn, points: Points, wrt: Sequence[Index | str] = (), *, engine=None) -> dict[Index, torch.Tensor]:
    """Value and requested input derivatives of ``fn`` at ``points`` (see module doc)."""
    return (engine or DEFAULT_ENGINE)(fn, points, wrt)


ENGINES = {"reverse": Reverse, "forward": Forward}

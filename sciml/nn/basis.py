"""Basis networks: ``H`` functions of the coordinates from one network.

:class:`DualBranchBasis` is the MetaColloc basis (Yang, arXiv 2605.12368; sizes
and feature set from the authors' code, VincentdeCristo/MetaColloc): two
branches, each one :class:`SwiGLU` block,

* *raw*: the coordinates themselves -> ``H // 2`` functions;
* *Fourier*: ``sin(k pi x_i), cos(k pi x_i)`` for every coordinate ``x_i`` and
  every ``k`` in ``frequencies`` (default ``1, 2, 4, ..., 128``) -> the other
  ``H - H // 2`` functions;

concatenated into ``(N, H)``. Inputs are used as given (the meta-training
domain is the unit cube), so a problem on another box is mapped onto it by the
solver.

Input derivatives in Taylor mode
--------------------------------
:meth:`DualBranchBasis.jet` and :func:`basis_jets` give the basis values and
input derivatives up to third order in ONE forward sweep ("Taylor mode", or
"jets") instead of nesting ``torch.func.jvp`` (one more pass per nesting level
and per mixed index). Along the line ``x + t v`` every intermediate quantity
``u(t)`` is carried as its *derivative coefficients* ``[u0, u1, u2, u3]``
(``u_k = d^k u / dt^k`` at ``t = 0``, not divided by ``k!``), and each layer
maps input coefficients to output coefficients:

* linear ``W u + c``: ``[W u0 + c, W u1, W u2, W u3]`` (bias only on the 0th);
* elementwise ``g(u)`` (Faa di Bruno), ``g^(j)`` taken at ``u0``::

      h1 = g' u1
      h2 = g'' u1^2 + g' u2
      h3 = g''' u1^3 + 3 g'' u1 u2 + g' u3

  For ``sin``/``cos`` of ``z = k pi x`` only ``z1 = k pi v`` is non-zero, so
  ``h_k = g^(k)(z0) z1^k``. For ``silu(b) = b s(b)``, with the sigmoid
  derivatives ``s' = s (1 - s)``, ``s'' = s' (1 - 2 s)``,
  ``s''' = s' (1 - 6 s + 6 s^2)``: ``silu^(j) = j s^(j-1) + b s^(j)``;
* products ``a * c`` (Leibniz): ``p_k = sum_j C(k, j) a_j c_(k-j)``.

Several directions share one sweep: a coefficient of order ``k >= 1`` has a
leading direction axis of length ``m[k]`` (directions sorted by the order they
are needed to, highest first, so order ``k`` is built only for the first
``m[k]``); the 0th coefficient has no such axis and broadcasts. ``None`` marks
a coefficient known to be zero (the input's ``x2 = x3 = 0``) and is skipped.
Mixed derivatives come from directional ones by polarization
(:func:`basis_jets`). Checked against nested ``torch.func.jvp`` in
``tests/test_basis_jet.py``.
"""
from __future__ import annotations

import math
from fractions import Fraction
from itertools import combinations
from typing import Optional, Sequence

import torch
from torch import Tensor, nn
from torch.nn import functional as F


# ---- Taylor-mode building blocks (derivative coefficients, see the module doc) ----

def _cut(t: Optional[Tensor], n: Optional[int]) -> Optional[Tensor]:
    """The first ``n`` directions of a coefficient of order >= 1 (``None`` = zero)."""
    return None if t is None else t[:n]


def _sum(terms) -> Optional[Tensor]:
    terms = [t for t in terms if t is not None]
    if not terms:
        return None
    out = terms[0]
    for t in terms[1:]:
        out = out + t
    return out


def _counts(m, order: int) -> list:
    return [None] * (order + 1) if m is None else list(m)


def linear_jet(layer: nn.Linear, u: list) -> list:
    """Coefficients of ``layer(u)``: the bias enters the 0th only."""
    return [None if u[0] is None else layer(u[0])] + [None if t is None else F.linear(t, layer.weight) for t in u[1:]]


def _select(u: list, keep) -> list:
    """Only the directions ``keep[k]`` (row indices, ``None`` = all) of each order;
    an empty selection gives ``None`` (for the 0th: ``[]`` drops the value)."""
    if keep is None:
        return u
    out = []
    for k, (t, rows) in enumerate(zip(u, keep)):
        if t is None or rows is None:
            out.append(t)
        elif len(rows) == 0:
            out.append(None)
        else:
            out.append(t if k == 0 else t[list(rows)])
    return out


def compose_jet(d: list, u: list, m=None) -> list:
    """Coefficients of ``g(u)`` (Faa di Bruno, order <= 3) given ``d[j] = g^(j)(u0)``."""
    order = len(u) - 1
    if order > 3:
        raise ValueError(f"jets up to third order are supported, got {order}")
    m = _counts(m, order)
    out = [d[0]]
    for k in range(1, order + 1):
        u1, u2, u3 = (_cut(u[j], m[k]) if j <= k else None for j in (1, 2, 3))
        if k == 1:
            terms = [None if u1 is None else d[1] * u1]
        elif k == 2:
            terms = [None if u1 is None else d[2] * u1 * u1, None if u2 is None else d[1] * u2]
        else:
            terms = [None if u1 is None else d[3] * u1 * u1 * u1,
                     None if u1 is None or u2 is None else 3 * d[2] * u1 * u2,
                     None if u3 is None else d[1] * u3]
        out.append(_sum(terms))
    return out


def product_jet(a: list, c: list, m=None) -> list:
    """Coefficients of ``a * c`` (Leibniz rule)."""
    order = len(a) - 1
    m = _counts(m, order)
    out = []
    for k in range(order + 1):
        terms = []
        for j in range(k + 1):
            x = a[j] if j == 0 else _cut(a[j], m[k])
            y = c[0] if j == k else _cut(c[k - j], m[k])
            if x is not None and y is not None:
                terms.append(math.comb(k, j) * x * y if 0 < j < k else x * y)
        out.append(_sum(terms))
    return out


def _silu_derivatives(b: Tensor, order: int) -> list:
    """``[silu, silu', ..]`` at ``b`` up to ``order`` (see the module doc)."""
    s = torch.sigmoid(b)
    ds = [s]
    if order >= 1:
        ds.append(s * (1 - s))
    if order >= 2:
        ds.append(ds[1] * (1 - 2 * s))
    if order >= 3:
        ds.append(ds[1] * (1 - 6 * s + 6 * s * s))
    return [b * s] + [j * ds[j - 1] + b * ds[j] for j in range(1, order + 1)]


class SwiGLU(nn.Module):
    """``W2 (a * silu(b))`` with ``[a, b] = W1 x`` (Shazeer, arXiv 2002.05202);
    ``W1: in -> 4 out``, ``W2: 2 out -> out``."""

    def __init__(self, in_dim: int, out_dim: int):
        super().__init__()
        self.up = nn.Linear(in_dim, 4 * out_dim)
        self.down = nn.Linear(2 * out_dim, out_dim)

    def forward(self, x):
        a, b = self.up(x).chunk(2, dim=-1)
        return self.down(a * b * torch.sigmoid(b))     # silu, written out: nested forward AD needs it

    def jet(self, u: list, m=None, keep=None) -> list:
        """Derivative coefficients of the output from those of the input ``u``
        (``None`` = zero; ``m``: directions per order, see the module doc;
        ``keep``: see :meth:`DualBranchBasis.taylor`)."""
        halves = [None if t is None else t.chunk(2, dim=-1) for t in linear_jet(self.up, u)]
        a = [None if h is None else h[0] for h in halves]
        b = [None if h is None else h[1] for h in halves]
        g = compose_jet(_silu_derivatives(b[0], len(u) - 1), b, m)
        return linear_jet(self.down, _select(product_jet(a, g, m), keep))


class FourierFeatures(nn.Module):
    """``[sin(k pi x_i), cos(k pi x_i)]`` for every coordinate and frequency ``k``."""

    def __init__(self, dim: int, frequencies: Sequence[float]):
        super().__init__()
        self.dim = dim
        self.register_buffer("k", torch.as_tensor([float(k) for k in frequencies]) * torch.pi)

    @property
    def out_dim(self) -> int:
        return 2 * self.dim * self.k.numel()

    def forward(self, x):
        z = (x.unsqueeze(-1) * self.k).flatten(-2)          # (N, dim * nk)
        return torch.cat([torch.sin(z), torch.cos(z)], dim=-1)

    def jet(self, x: Tensor, v: Tensor, order: int, m=None) -> list:
        """Derivative coefficients along ``v`` up to ``order``: ``g^(k)(z0) z1^k``."""
        if order == 0:
            return [self.forward(x)]
        z = (x.unsqueeze(-1) * self.k).flatten(-2)
        z1 = (v.unsqueeze(-1) * self.k).flatten(-2)
        sn, cs = torch.sin(z), torch.cos(z)
        d = [torch.cat(p, dim=-1) for p in ((sn, cs), (cs, -sn), (-sn, -cs), (-cs, sn))[:order + 1]]
        return compose_jet(d, [None, torch.cat([z1, z1], dim=-1)] + [None] * (order - 1), m)


def octaves(kmax: int) -> tuple[int, ...]:
    """``1, 2, 4, ..., kmax`` (kmax a power of two)."""
    out, k = [], 1
    while k <= kmax:
        out.append(k)
        k *= 2
    return tuple(out)


class DualBranchBasis(nn.Module):
    """``x (N, dim) -> (N, H)`` basis values (see the module doc)."""

    def __init__(self, dim: int, n_basis: int = 512, frequencies: Sequence[float] = octaves(128)):
        super().__init__()
        if dim < 1 or n_basis < 2:
            raise ValueError(f"DualBranchBasis needs dim >= 1 and n_basis >= 2, got dim={dim}, n_basis={n_basis}")
        if len(frequencies) == 0:
            raise ValueError("DualBranchBasis needs at least one Fourier frequency")
        self.dim, self.n_basis = dim, n_basis
        self.frequencies = tuple(float(k) for k in frequencies)
        low = n_basis // 2
        self.raw = SwiGLU(dim, low)
        self.features = FourierFeatures(dim, self.frequencies)
        self.fourier = SwiGLU(self.features.out_dim, n_basis - low)

    def forward(self, x):
        return torch.cat([self.raw(x), self.fourier(self.features(x))], dim=-1)

    def taylor(self, x: Tensor, v: Tensor, m: Sequence[int], keep=None) -> list:
        """Batched Taylor sweep. ``x (N, dim)``; ``v (D, 1 or N, dim)``: ``D``
        directions sorted by the order they are needed to (highest first);
        ``m = [1, m1, .., mK]`` non-increasing, ``mk`` = how many need order ``>= k``.
        Returns ``[f (N, H), d1 (m1, N, H), .., dK (mK, N, H)]``, ``dk[i] = D^k_{v_i} f``.
        ``keep`` (optional, one entry per order): row indices of the ``dk`` wanted
        (``None`` = all; ``[]`` gives ``None``): the others skip the last layers,
        the costliest step (a lower order is still propagated when a higher needs it)."""
        order = len(m) - 1
        u = [x] + [v.to(x)] * (order >= 1) + [None] * max(order - 1, 0)
        raw = self.raw.jet(u, m, keep)
        four = self.fourier.jet(self.features.jet(x, u[1] if order else None, order, m), m, keep)
        return [None if r is None else torch.cat(torch.broadcast_tensors(r, f), dim=-1) for r, f in zip(raw, four)]

    def jet(self, x: Tensor, v: Tensor, order: int) -> list[Tensor]:
        """``[f(x), D_v f(x), .., D_v^order f(x)]``, each ``(N, H)``, in one forward
        sweep (Taylor mode, see the module doc); ``v`` is ``(dim,)`` or ``(N, dim)``,
        ``order`` 0..3."""
        if not 0 <= order <= 3:
            raise ValueError(f"jets up to third order are supported, got {order}")
        v = v.reshape(1, 1, self.dim) if v.dim() == 1 else v.unsqueeze(0)
        out = self.taylor(x, v, [1] * (order + 1))
        return [out[0]] + [c[0].expand(x.shape[0], self.n_basis) for c in out[1:]]

    def spec(self) -> dict:
        """What rebuilds it: ``DualBranchBasis(**basis.spec())``."""
        return {"dim": self.dim, "n_basis": self.n_basis, "frequencies": list(self.frequencies)}


def _polarization(idx: tuple, dim: int) -> dict:
    """``{primitive direction: c}`` with ``d^k f / dx_idx = sum c D^k_direction f``.

    Polarization of the symmetric k-linear form ``T = D^k f``::

        T(e_i1, .., e_ik) = 1/k! sum_{S nonempty} (-1)^(k - |S|) D^k_{sum_{j in S} e_ij} f

    and ``D^k_{g w} = g^k D^k_w`` folds each direction onto its primitive
    integer vector ``w`` (gcd 1). The coefficients are exact fractions and zeros
    are dropped, so a pure index ``(i, i, i)`` collapses to ``D^3_{e_i}`` alone.
    """
    k = len(idx)
    coef: dict = {}
    for size in range(1, k + 1):
        for sub in combinations(idx, size):
            vec = [0] * dim
            for i in sub:
                vec[i] += 1
            g = math.gcd(*vec)
            key = tuple(c // g for c in vec)
            coef[key] = coef.get(key, 0) + Fraction((-1) ** (k - size) * g ** k, math.factorial(k))
    return {d: c for d, c in coef.items() if c != 0}


def basis_jets(basis: DualBranchBasis, x: Tensor, indices, scale: Optional[Tensor] = None) -> dict:
    """Values and input derivatives ``{idx: (N, H)}`` of ``basis`` at ``x (N, dim)``.

    ``indices``: multi-indices as tuples of coordinate positions, e.g. ``()``,
    ``(0,)``, ``(0, 1)``, ``(1, 1, 1)`` (order <= 3; keys come back as given).
    Mixed derivatives are polarized from directional ones (:func:`_polarization`);
    each distinct direction goes once through a single batched Taylor sweep
    (:meth:`DualBranchBasis.taylor`), to the highest order any index needs it.

    ``scale`` (``(dim,)``, optional): ``x`` is already the mapped input
    ``x_unit = (x_orig - lo) * scale`` and the derivatives are wanted with respect
    to ``x_orig``; by the chain rule each is multiplied by
    ``prod(scale[i] for i in idx)``.

    Memory: the widest intermediates are ``(directions, N, 4 H)``; all third
    orders in 3-D use 13 directions, so chunk the points accordingly.
    """
    keys = [tuple(int(i) for i in idx) for idx in indices]
    for idx in keys:
        if len(idx) > 3 or any(not 0 <= i < basis.dim for i in idx):
            raise ValueError(f"index {idx} not supported (order <= 3, positions < {basis.dim})")
    plans = {idx: _polarization(idx, basis.dim) for idx in keys if idx}
    need: dict = {}
    for idx, plan in plans.items():
        for d in plan:
            need[d] = max(need.get(d, 0), len(idx))
    dirs = sorted(need, key=lambda d: -need[d])
    m = [1] + [sum(need[d] >= k for d in dirs) for k in range(1, max(need.values(), default=0) + 1)]
    v = torch.tensor(dirs, dtype=x.dtype, device=x.device).reshape(len(dirs), 1, basis.dim)
    # per order, the directions some index of exactly that order uses: only they
    # go through the last layers
    use = [[] if () not in keys else None] + [
        sorted({dirs.index(d) for idx, plan in plans.items() if len(idx) == k for d in plan})
        for k in range(1, len(m))]
    keep = [None if rows is not None and rows == list(range(mk)) else rows for rows, mk in zip(use, m)]
    coeffs = basis.taylor(x, v, m, keep)
    row = [None] + [{dirs[r]: n for n, r in enumerate(rows if rows is not None else range(mk))}
                    for rows, mk in zip(keep[1:], m[1:])]
    out = {}
    for idx in keys:
        if not idx:
            out[idx] = coeffs[0]
            continue
        k = len(idx)
        val = _sum([float(c) * coeffs[k][row[k][d]] for d, c in plans[idx].items()])
        if scale is not None:
            val = val * torch.prod(scale.to(val)[list(idx)])
        out[idx] = val
    return out

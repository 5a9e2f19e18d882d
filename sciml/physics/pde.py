"""A PDE written by the user: an operator in ``u`` and its derivatives, a source,
boundary conditions on named boundary parts, and optionally the exact solution.

The operator is a parsed expression (:func:`sciml.config.pde.parse_operator`) in
the coordinates and the *derivative variables* ``u``, ``u_x``, ``u_xx``, ``u_xy``,
``u_xxx``, ... (one letter per coordinate after ``u_``, any order, up to third
order). ``lap(u)`` is shorthand for the sum of the second derivatives in the
space coordinates (every coordinate but the declared time coordinate). So

    -lap(u) + u^3                (2D: -(u_xx + u_yy) + u**3)
    u_t + u*u_x - 0.01*u_xx

The problem is ``N[u] = f`` in the region with boundary rows

* ``dirichlet``: ``u = g``,
* ``neumann``: ``du/dn = g`` (outward normal),
* ``robin``: ``alpha u + beta du/dn = g``,

each on a list of the region's boundary parts. With an ``exact`` solution the
source and any boundary data left out are *manufactured* from it: the derivatives
of the exact expression are taken by the residual engine (no symbolic algebra).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Optional

import torch

from ..domain.geometry import Points
from ..residual import derivatives

Index = tuple[str, ...]


def derivative_name(idx: Index) -> str:
    """``()`` -> ``u``, ``("x", "x")`` -> ``u_xx``."""
    return "u" if not idx else "u_" + "".join(idx)


@dataclass(frozen=True, eq=False)
class Operator:
    """``N[u](x)`` from the derivative values ``D[idx] (N,)`` and the coordinates."""

    expr: Callable                      # a parsed expression in the coordinates and derivative_name(idx)
    indices: tuple                      # derivative multi-indices used, () = u itself
    coords: tuple[str, ...]

    def __call__(self, D: dict, points: Points) -> torch.Tensor:
        vals = {c: points[c] for c in self.coords}
        vals.update({derivative_name(i): D[i] for i in self.indices})
        return self.expr(**vals)

    def linearize(self, D: dict, points: Points) -> tuple[torch.Tensor, dict]:
        """Value ``N`` and the pointwise partials ``dN/dD[idx]`` at the state ``D``
        (by autograd: the operator is pointwise in the derivative values)."""
        with torch.enable_grad():
            leaves = {i: D[i].detach().clone().requires_grad_(True) for i in self.indices}
            val = self(leaves, points)
            grads = torch.autograd.grad(val.sum(), [leaves[i] for i in self.indices], allow_unused=True)
        parts = {i: (g if g is not None else torch.zeros_like(val)) for i, g in zip(self.indices, grads)}
        return val.detach(), {i: p.detach() for i, p in parts.items()}

    def is_linear(self, points: Points, generator: torch.Generator) -> bool:
        """Affine in ``u``: the partials do not change between two random states."""
        n = next(iter(points.values())).shape[0]
        dt = next(iter(points.values())).dtype
        states = [{i: torch.randn(n, generator=generator, dtype=dt, device=generator.device) for i in self.indices}
                  for _ in range(2)]
        p0, p1 = (self.linearize(s, points)[1] for s in states)
        return all(torch.allclose(p0[i], p1[i], rtol=1e-12, atol=1e-12) for i in self.indices)


@dataclass(frozen=True, eq=False)
class BoundaryCondition:
    kind: str                           # dirichlet / neumann / robin
    parts: Optional[tuple[str, ...]]    # None: the whole boundary
    value: Callable                     # g(points, normal) -> (N,)
    alpha: float = 1.0                  # robin: alpha u + beta du/dn
    beta: float = 0.0

    def __post_init__(self):
        if self.kind not in ("dirichlet", "neumann", "robin"):
            raise ValueError(f"unknown boundary condition {self.kind!r}; allowed: dirichlet, neumann, robin")

    @property
    def coefficients(self) -> tuple[float, float]:
        """``(a, b)`` of the row ``a u + b du/dn``."""
        return {"dirichlet": (1.0, 0.0), "neumann": (0.0, 1.0), "robin": (self.alpha, self.beta)}[self.kind]


@dataclass(frozen=True, eq=False)
class PDEProblem:
    name: str
    region: object                      # sciml.domain.regions.Region
    operator: Operator
    source: Callable                    # f(points) -> (N,)
    boundary: tuple                     # BoundaryCondition, ...
    exact: Optional[Callable] = None    # u(points) -> (N,)
    time: Optional[str] = None          # the time coordinate (for lap and the docs), if any
    info: dict = field(default_factory=dict)

    @property
    def coords(self) -> tuple[str, ...]:
        return tuple(self.region.names)


def expression_function(expr) -> Callable:
    """``points -> expr(**points)`` (an exact solution or a source)."""
    names = expr.variables

    def fn(points: Points) -> torch.Tensor:
        out = expr(**{k: points[k] for k in names})
        ref = next(iter(points.values()))
        return out if out.shape == ref.shape else out.expand(ref.shape)
    return fn


def boundary_function(expr) -> Callable:
    """``(points, normal) -> expr(**points)``: boundary data given as an expression."""
    fn = expression_function(expr)
    return lambda points, normal: fn(points)


def manufactured_source(operator: Operator, exact: Callable) -> Callable:
    """``f = N[u_exact]`` with the exact solution's derivatives from the residual engine."""
    def fn(points: Points) -> torch.Tensor:
        with torch.enable_grad():
            pts = {k: v.detach().clone().requires_grad_(True) for k, v in points.items()}
            d = derivatives(exact, pts, [i for i in operator.indices if i])
            D = {i: d[i].squeeze(-1) for i in operator.indices}
            return operator(D, pts).detach()
    return fn


def manufactured_boundary(exact: Callable, a: float, b: float, coords: tuple[str, ...]) -> Callable:
    """``g = a u + b du/dn`` from the exact solution (needs the normals: called as
    ``fn(points, normal)``)."""
    def fn(points: Points, normal: torch.Tensor) -> torch.Tensor:
        with torch.enable_grad():
            pts = {k: v.detach().clone().requires_grad_(True) for k, v in points.items()}
            d = derivatives(exact, pts, [(c,) for c in coords])
            dn = sum(d[(c,)].squeeze(-1) * normal[:, k] for k, c in enumerate(coords))
            return (a * d[()].squeeze(-1) + b * dn).detach()
    return fn

"""A ``pde`` problem spec -> :class:`~sciml.physics.pde.PDEProblem`.

Parses the operator (``lap(u)`` expanded, derivative variables collected), the
source, the exact solution and the boundary data as safe expressions; every
failure names its key. Data left out is manufactured from ``exact``.
"""
from __future__ import annotations

import re
from typing import Optional

from ..domain.regions import Annulus, BoxRegion, Disk, LShape
from ..domain.geometry import Box
from ..physics.pde import (BoundaryCondition, Operator, PDEProblem, boundary_function, derivative_name,
                           expression_function, manufactured_boundary, manufactured_source)
from .errors import ConfigError
from .expr import Expression, parse_expression

_DERIV = re.compile(r"\bu_([A-Za-z]+)\b")
_LAP = re.compile(r"\blap\s*\(\s*u\s*\)")


def expand_operator(text: str, coords: tuple[str, ...], time: Optional[str], *, path: str = "") -> tuple[str, tuple]:
    """Replace ``lap(u)`` by the sum of the space second derivatives and collect the
    derivative indices the text uses (sorted: ``u_yx`` is ``u_xy``)."""
    space = [c for c in coords if c != time]
    text = _LAP.sub("(" + " + ".join(f"u_{c}{c}" for c in space) + ")", text)
    if re.search(r"\blap\b", text):
        raise ConfigError(path, f"lap() applies to u only, as lap(u), in {text!r}")
    indices = {()} if re.search(r"\bu\b", text) else set()
    for m in _DERIV.finditer(text):
        letters = tuple(m.group(1))
        bad = [c for c in letters if c not in coords]
        if bad:
            raise ConfigError(path, f"derivative u_{m.group(1)}: {bad[0]!r} is not a coordinate (coordinates: "
                                    f"{', '.join(coords)}; write e.g. u_{coords[0]}{coords[0]})")
        if len(letters) > 3:
            raise ConfigError(path, f"derivative u_{m.group(1)}: at most third order is supported")
        indices.add(tuple(sorted(letters)))
    if not indices:
        raise ConfigError(path, f"the operator {text!r} does not involve u or its derivatives")
    canon = _DERIV.sub(lambda m: derivative_name(tuple(sorted(m.group(1)))), text)
    return canon, tuple(sorted(indices, key=lambda i: (len(i), i)))


def parse_operator(text: str, coords: tuple[str, ...], time: Optional[str] = None, *, path: str = "") -> Operator:
    if not isinstance(text, str):
        raise ConfigError(path, f"expected an expression string such as '-lap(u) + u^3', got {text!r}")
    canon, indices = expand_operator(text, coords, time, path=path)
    names = tuple(coords) + tuple(derivative_name(i) for i in indices)
    return Operator(Expression(canon, names, path=path), indices, tuple(coords))


def build_region(spec):
    if spec.kind == "box":
        names = list(spec.bounds)
        bad = [n for n in names if not (len(n) == 1 and n.isalpha() and n != "u" and n != "e")]
        if bad:
            raise ConfigError("problem.domain.bounds", f"coordinate names are single letters (not u or e), got "
                                                       f"{bad[0]!r}")
        for n, (lo, hi) in spec.bounds.items():
            if not hi > lo:
                raise ConfigError(f"problem.domain.bounds.{n}", f"expected [lo, hi] with hi > lo, got [{lo}, {hi}]")
        return BoxRegion(Box.of(**{n: tuple(v) for n, v in spec.bounds.items()}))
    try:
        if spec.kind == "lshape":
            return LShape(lo=spec.lo, hi=spec.hi, corner=spec.corner)
        if spec.kind == "annulus":
            return Annulus(r_in=spec.r_in, r_out=spec.r_out, center=tuple(spec.center))
        return Disk(radius=spec.radius, center=tuple(spec.center))
    except ValueError as exc:
        raise ConfigError("problem.domain", str(exc)) from None


def build_pde_problem(spec) -> PDEProblem:
    """The physics object of a ``pde`` spec (every error a ConfigError at its key)."""
    region = build_region(spec.domain)
    coords = tuple(region.names)
    if spec.time is not None and spec.time not in coords:
        raise ConfigError("problem.time", f"{spec.time!r} is not a coordinate ({', '.join(coords)})")
    op = parse_operator(spec.operator, coords, spec.time, path="problem.operator")
    exact = None
    if spec.exact is not None:
        exact = expression_function(parse_expression(spec.exact, coords, path="problem.exact"))
    if spec.source is not None:
        source = expression_function(parse_expression(spec.source, coords, path="problem.source"))
    elif exact is not None:
        source = manufactured_source(op, exact)
    else:
        raise ConfigError("problem.source", "missing: give the source f, or problem.exact to manufacture it")
    if not spec.boundary:
        raise ConfigError("problem.boundary", "give at least one boundary condition")
    bcs, covered = [], []
    for k, b in enumerate(spec.boundary):
        path = f"problem.boundary[{k}]"
        parts = None if b.parts is None else tuple(b.parts)
        for p in parts or ():
            if p not in region.parts:
                raise ConfigError(f"{path}.parts", f"unknown boundary part {p!r}; allowed: {', '.join(region.parts)}")
        if parts is not None and not parts:
            raise ConfigError(f"{path}.parts", f"empty list; allowed parts: {', '.join(region.parts)} (or leave out)")
        covered += [(p, b.kind) for p in (parts or region.parts)]
        bc0 = BoundaryCondition(b.kind, parts, lambda p, n: None, alpha=b.alpha, beta=b.beta)
        a, c = bc0.coefficients
        if b.kind == "robin" and a == 0 and c == 0:
            raise ConfigError(f"{path}", "robin needs alpha or beta nonzero")
        if b.value is not None:
            value = boundary_function(parse_expression(b.value, coords, path=f"{path}.value"))
        elif exact is not None:
            value = manufactured_boundary(exact, a, c, coords)
        else:
            raise ConfigError(f"{path}.value", "missing: give the boundary data, or problem.exact")
        bcs.append(BoundaryCondition(b.kind, parts, value, alpha=b.alpha, beta=b.beta))
    twice = sorted({pk for pk in covered if covered.count(pk) > 1})
    if twice:    # u and du/dn on one part (Cauchy data) is fine; the same kind twice is not
        raise ConfigError("problem.boundary", f"part {twice[0][0]!r} has two {twice[0][1]} conditions; give each "
                                              f"part at most one of each kind")
    return PDEProblem(spec.name, region, op, source, tuple(bcs), exact=exact, time=spec.time,
                      info={"operator": spec.operator, "exact": spec.exact})


def check_pde_spec(spec) -> None:
    build_pde_problem(spec)

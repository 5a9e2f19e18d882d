"""MetaColloc studies: where fitting and solving stop working as the solution's
frequency grows, and MetaColloc beside a PINN and a finite-difference solve."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import torch

from ..config.expr import Expression
from ..config.pde import parse_operator
from ..domain.regions import BoxRegion
from ..physics.pde import (BoundaryCondition, PDEProblem, expression_function, manufactured_boundary,
                           manufactured_source)
from ..solvers.least_squares import SVD
from ..solvers.metacolloc import Collocation, UnitMapped, basis_derivatives, basis_path, load_basis, solve


def _poisson(k: float, shift: str = "") -> PDEProblem:
    region = BoxRegion.of(x=(0.0, 1.0), y=(0.0, 1.0))
    exact = expression_function(Expression(f"sin({k}*pi*x)*sin({k}*pi*y){shift}", ("x", "y")))
    op = parse_operator("-lap(u)", ("x", "y"))
    bc = BoundaryCondition("dirichlet", None, manufactured_boundary(exact, 1.0, 0.0, ("x", "y")))
    return PDEProblem(f"poisson_k{k:g}", region, op, manufactured_source(op, exact), (bc,), exact=exact)


def _rel(u, ref) -> float:
    return float((u - ref).norm() / ref.norm())


def frequency_sweep(entry, *, quick: bool, overrides: dict, out: Path, device=None, progress=True) -> dict:
    """For u = sin(k pi x) sin(k pi y), k in ``params.k``: the relative L2 error of
    (a) *fitting* u by least squares on the collocation points (value rows only) and
    (b) *solving* -lap u = f with Dirichlet data, with the same basis, points and
    least-squares solver. The gap between the two curves is the operator's
    instability; the figure is ``figures/frequency_sweep.png``."""
    from ..plot.figures import _save
    from matplotlib.figure import Figure

    params = dict(entry.params)
    params.update({k.split(".", 1)[1]: v for k, v in overrides.items() if k.startswith("params.")})
    ks = [float(k) for k in params.get("k", [1, 2, 4, 8, 16, 32, 64])]
    basis, _ = load_basis(basis_path(params.get("basis", "2d")), device=device or "cpu")
    opts = Collocation(interior=int(params.get("interior", 2000)), boundary=int(params.get("boundary", 1200)),
                       lstsq=SVD(float(params.get("rcond", 1e-15)), columns=bool(params.get("columns", True))))
    g = torch.Generator().manual_seed(1)
    region = BoxRegion.of(x=(0.0, 1.0), y=(0.0, 1.0))
    xe = region.interior(int(params.get("eval_points", 10000)), g)
    fit, sol_err, metrics = [], [], {}
    for k in ks:
        prob = _poisson(k)
        sol = solve(prob, basis, options=opts)
        sol_err.append(_rel(sol(xe), prob.exact(xe)))
        # the fit: value rows at the same interior and boundary points
        fn = UnitMapped(basis, region.bounds).to(torch.float64)
        gp = torch.Generator().manual_seed(opts.seed)
        pts = region.interior(opts.interior, gp)
        bp = region.grid_boundary(max(1, opts.boundary // 4)).points
        allp = {c: torch.cat([pts[c], bp[c]]) for c in ("x", "y")}
        A = basis_derivatives(fn, allp, [()])[()]
        w = opts.lstsq.solve(A, prob.exact(allp)).w
        with torch.no_grad():
            fit.append(_rel(fn(xe) @ w, prob.exact(xe)))
        metrics[f"fit_rel_l2_k{k:g}"] = fit[-1]
        metrics[f"solve_rel_l2_k{k:g}"] = sol_err[-1]
    ok = [k for k, e in zip(ks, sol_err) if e < 1e-2]
    metrics["max_k_solved_1e-2"] = max(ok) if ok else 0.0
    ok = [k for k, e in zip(ks, fit) if e < 1e-2]
    metrics["max_k_fitted_1e-2"] = max(ok) if ok else 0.0
    fig = Figure(figsize=(5.5, 3.8))
    ax = fig.add_subplot()
    ax.loglog(ks, fit, "o-", label="fit u (value rows)")
    ax.loglog(ks, sol_err, "s-", label="solve -lap u = f")
    ax.set_xlabel("k  (u = sin(k pi x) sin(k pi y))")
    ax.set_ylabel("relative L2 error")
    ax.set_title("MetaColloc: fitting vs solving" + (" (quick)" if quick else ""))
    ax.grid(alpha=0.3, which="both")
    ax.legend()
    out = Path(out)
    _save(fig, out / "figures" / "frequency_sweep.png")
    (out / "frequency_sweep.json").write_text(json.dumps({"k": ks, "fit": fit, "solve": sol_err}, indent=2))
    return metrics

"""MetaColloc studies: where fitting and solving stop working as the solution's
frequency grows, and MetaColloc beside a PINN and a finite-difference solve."""
from __future__ import annotations

import json
import math
from pathlib import Path

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
    opts = Collocation(interior=int(params.get("interior", 4000)), boundary=int(params.get("boundary", 1200)),
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


def versus_pinn_fd(entry, *, quick: bool, overrides: dict, out: Path, device=None, progress=True) -> dict:
    """MetaColloc, a PINN trained by our trainer and a second-order finite-difference
    solve on one 2D linear problem (``params.problem``), time and error side by side:

    * MetaColloc: one solve with the problem's solver settings (its first call in the
      process: "cold"), then its time to accuracy: solves with ``params.mc_interior``
      interior points (boundary rows ``max(200, 0.3 n)``), smallest first, timed warm
      (assembly + solve, basis in memory); reported: the first that reaches
      ``params.target`` -- the analogue of the FD grid doubling;
    * PINN (:func:`sciml.solvers.pinn_pde.train_pinn`): ``params.pinn_steps`` Adam
      steps, its relative L2 error logged against time; reported: its best error and
      the time it first reached ``params.target`` (``inf`` if never);
    * FD (:func:`sciml.reference.fd.fd_to_accuracy`): grids doubled until the error
      is below MetaColloc's (or ``n_max``); reported: the time of that grid.

    Writes ``versus.md``, ``versus.json`` and ``figures/versus.png`` (error vs time)."""
    from matplotlib.figure import Figure

    from ..api import solve as api_solve
    from ..config import load_run
    from ..config.pde import build_pde_problem
    from ..plot.figures import _save
    from ..reference.fd import fd_to_accuracy
    from ..solvers.pinn_pde import train_pinn

    params = dict(entry.params)
    params.update({k.split(".", 1)[1]: v for k, v in overrides.items() if k.startswith("params.")})
    path = Path(entry.root) / params.get("problem", entry.problem)
    run = load_run(path)
    problem = build_pde_problem(run.config.problem)
    out = Path(out)
    mc = api_solve(path, overrides={"output.eval_points": 10000}, out=out / "metacolloc", device=device)
    t_mc, e_mc = mc.metrics["time_total"], mc.metrics["rel_l2_u"]
    target = float(params.get("target", 1e-3))
    ladder = []
    for n in sorted(int(n) for n in params.get("mc_interior", [250, 500, 1000, 2000, 4000])):
        m = api_solve(path, overrides={"output.eval_points": 10000, "solver.interior": n,
                                       "solver.boundary": max(200, (3 * n) // 10)}, device=device).metrics
        ladder.append((n, m["rel_l2_u"], m["time_total"]))
    at_target = next((r for r in ladder if r[1] <= target), None)
    t_mc_target = at_target[2] if at_target else math.inf
    pinn = train_pinn(problem, steps=int(params.get("pinn_steps", 3000)), lr=float(params.get("pinn_lr", 1e-2)),
                      width=int(params.get("pinn_width", 64)), depth=int(params.get("pinn_depth", 4)),
                      callback_every=int(params.get("pinn_log_every", 50)), seed=0)
    hist = pinn["history"]
    reached = [s for _, s, e in hist if e <= target]
    t_pinn = reached[0] if reached else math.inf
    best_pinn = min(e for _, _, e in hist)
    runs, n_fd = fd_to_accuracy(problem, max(e_mc, 1e-12), n_max=int(params.get("fd_n_max", 1024)))
    fd_row = next((r for r in runs if r[0] == n_fd), runs[-1])
    fd_target = next((r for r in runs if r[1] <= target), None)
    metrics = {"metacolloc_rel_l2": e_mc, "metacolloc_seconds": t_mc, "pinn_best_rel_l2": best_pinn,
               "pinn_seconds_to_target": t_pinn, "pinn_seconds_total": pinn["time_s"],
               "metacolloc_seconds_to_target": t_mc_target,
               "metacolloc_interior_at_target": float(at_target[0]) if at_target else math.inf,
               "speedup_vs_pinn_at_target": (t_pinn / t_mc_target) if at_target else 0.0,
               "fd_n_at_metacolloc_error": float(fd_row[0]), "fd_rel_l2": float(fd_row[1]),
               "fd_seconds": float(fd_row[2]),
               "fd_seconds_to_target": float(fd_target[2]) if fd_target else math.inf, "target": target}
    lines = [f"# MetaColloc vs PINN vs finite differences: {run.config.problem.name}", "",
             "| method | relative L2 | seconds | note |", "|---|---|---|---|",
             f"| MetaColloc (one solve, cold) | {e_mc:.2e} | {t_mc:.2f} | basis {run.config.solver.basis}, "
             f"the problem's settings, first solve in the process |"]
    lines += [f"| MetaColloc, {r[0]} interior points (warm) | {r[1]:.2e} | {r[2]:.3f} | "
              f"{f'first below {target:g}' if r is at_target else ''} |" for r in ladder]
    lines += [f"| PINN ({len(hist) and hist[-1][0]} Adam steps) | {best_pinn:.2e} (best) | {pinn['time_s']:.1f} | "
              f"reached {target:g} after {t_pinn:.1f} s |",
              f"| FD, n = {fd_row[0]} | {fd_row[1]:.2e} | {fd_row[2]:.2f} | smallest grid at MetaColloc's error "
              f"(or the largest tried) |"]
    if fd_target:
        lines.append(f"| FD, n = {fd_target[0]} | {fd_target[1]:.2e} | {fd_target[2]:.2f} | first grid below {target:g} |")
    (out / "versus.md").write_text("\n".join(lines) + "\n")
    (out / "versus.json").write_text(json.dumps({"metrics": metrics, "pinn_history": hist,
                                                 "fd_runs": runs, "metacolloc_runs": ladder}, indent=2, default=float))
    fig = Figure(figsize=(5.8, 4.0))
    ax = fig.add_subplot()
    ax.loglog([max(s, 1e-3) for _, s, _ in hist], [e for _, _, e in hist], "-", label="PINN (training)")
    ax.loglog([max(r[2], 1e-4) for r in runs], [r[1] for r in runs], "s-", label="finite differences (n doubling)")
    ax.loglog([t_mc], [e_mc], "*", ms=14, label="MetaColloc (one solve, cold)")
    ax.loglog([r[2] for r in ladder], [r[1] for r in ladder], "o-", label="MetaColloc (points doubling, warm)")
    ax.axhline(target, color="k", lw=0.6, ls=":")
    ax.set_xlabel("seconds (CPU)")
    ax.set_ylabel("relative L2 error")
    ax.set_title(f"{run.config.problem.name}: error vs time")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    _save(fig, out / "figures" / "versus.png")
    return metrics


def suite(entry, *, quick: bool, overrides: dict, out: Path, device=None, progress=True) -> dict:
    """Every problem of ``params.problems`` (``name: published RMSE or null``) solved
    with its own settings: ``suite.md`` (published beside ours), ``suite.json`` and
    ``figures/suite.png``; metrics ``rmse_<name>`` and ``rel_l2_<name>``."""
    from ..api import solve as api_solve
    from ..plot import grouped_bars

    params = dict(entry.params)
    params.update({k.split(".", 1)[1]: v for k, v in overrides.items() if k.startswith("params.")})
    root = Path(entry.root) / str(params.get("folder", "problems/metacolloc"))
    n_eval = int(params.get("eval_points", 10000))
    out = Path(out)
    rows, metrics = [], {}
    for name, published in dict(params["problems"]).items():
        sol = api_solve(root / f"{name}.yaml", overrides={"output.eval_points": n_eval, "output.grid": 51},
                        device=device)
        m = sol.metrics
        metrics[f"rmse_{name}"], metrics[f"rel_l2_{name}"] = m["rmse"], m["rel_l2_u"]
        rows.append((name, published, m["rmse"], m["rel_l2_u"], m.get("newton_iterations", 1), m["time_total"]))
    lines = ["| problem | published RMSE | ours, RMSE | ours, rel. L2 | Newton steps | seconds |",
             "|---|---|---|---|---|---|"]
    for name, pub, rmse, rel, it, t in rows:
        lines.append(f"| {name} | {'—' if pub is None else f'{pub:.3g}'} | {rmse:.2e} | {rel:.2e} | {it} | {t:.2f} |")
    (out / "suite.md").parent.mkdir(parents=True, exist_ok=True)
    (out / "suite.md").write_text("\n".join(lines) + "\n")
    (out / "suite.json").write_text(json.dumps(
        [dict(zip(("problem", "published_rmse", "rmse", "rel_l2_u", "newton_iterations", "seconds"), r))
         for r in rows], indent=2))
    names = [r[0] for r in rows]
    grouped_bars(out / "figures" / "suite.png", names,
                 {"ours": {r[0]: r[2] for r in rows},
                  "published": {r[0]: r[1] for r in rows if r[1] is not None}},
                 ylabel="RMSE", title="MetaColloc suite: ours vs published")
    return metrics


def identifiability(entry, *, quick: bool, overrides: dict, out: Path, device=None, progress=True) -> dict:
    """Do the problem's data determine its solution, as far as the basis can tell?
    For every problem of ``params.problems`` (files in ``problems/metacolloc``), with
    the default collocation settings (boundary weight ``params.boundary_weight``):

    * ``rmse_<name>``: the solve from ``u = 0``;
    * ``stability_<name>``: the smallest ratio ``|A v| / RMS(u_v)`` over the basis's
      functions ``u_v`` (``A``: the weighted, linearised rows at the solution;
      functions told apart by the evaluation points, singular values above 1e-9 of
      the largest): how much residual a unit change of ``u`` must cost;
    * ``drift_<name>``: start Gauss–Newton at the least-squares fit of the exact
      solution and take one step; the RMS distance it moves from the exact solution
      while lowering the weighted residual (``merit_fit_<name>`` -> ``merit_step_<name>``,
      relative to ``u = 0``). Large drift at a lower residual: the residual does not
      pin the solution down to that level.

    Writes ``identifiability.md``/``.json`` and ``figures/identifiability.png``."""
    from ..config import load_run
    from ..config.pde import build_pde_problem
    from ..plot import grouped_bars
    from ..solvers.metacolloc import Newton, _System

    params = dict(entry.params)
    params.update({k.split(".", 1)[1]: v for k, v in overrides.items() if k.startswith("params.")})
    root = Path(entry.root) / str(params.get("folder", "problems/metacolloc"))
    dev = torch.device(device or "cpu")
    basis, _ = load_basis(basis_path(params.get("basis", "2d")), device=dev)
    opts = Collocation(boundary_weight=float(params.get("boundary_weight", 0.01)))
    step_lstsq, fit_lstsq = Newton().lstsq, SVD(1e-15, columns=True)
    out = Path(out)
    metrics, rows = {}, []
    for name in params["problems"]:
        problem = build_pde_problem(load_run(root / f"{name}.yaml").config.problem)
        sol = solve(problem, basis, options=opts, device=dev)
        system = _System(problem, basis, opts, torch.float64, dev)
        g = torch.Generator(device=dev).manual_seed(5)
        xe = {k: v.to(dev) for k, v in problem.region.interior(10000, g, dtype=torch.float64).items()}
        xf = {k: v.to(dev) for k, v in problem.region.interior(8000, g, dtype=torch.float64).items()}
        ue = problem.exact(xe)
        with torch.no_grad():
            E = system.fn(xe) / math.sqrt(ue.numel())          # rows: RMS norm of u_v
            _, S, Vh = torch.linalg.svd(E, full_matrices=False)
            r = int((S > 1e-9 * S[0]).sum())
            A, _ = system.linearized(sol.w)
            stability = float(torch.linalg.svdvals(A @ (Vh[:r].T / S[:r]))[-1])
            rmse = float((E @ sol.w * math.sqrt(ue.numel()) - ue).pow(2).mean().sqrt())
            w_fit = fit_lstsq.solve(system.fn(xf), problem.exact(xf)).w
            A, b = system.linearized(w_fit)
            w_step = w_fit + step_lstsq.solve(A, b).w
            scale = system.merit(torch.zeros_like(w_fit))
            m_fit, m_step = system.merit(w_fit) / scale, system.merit(w_step) / scale
            drift = float((system.fn(xe) @ w_step - ue).pow(2).mean().sqrt())
        metrics.update({f"rmse_{name}": rmse, f"stability_{name}": stability, f"drift_{name}": drift,
                        f"merit_fit_{name}": m_fit, f"merit_step_{name}": m_step})
        rows.append((name, rmse, stability, m_fit, m_step, drift))
    lines = ["| problem | RMSE from u = 0 | stability | weighted residual: exact fit -> one step | "
             "drift of that step (RMSE) |", "|---|---|---|---|---|"]
    lines += [f"| {n} | {e:.2e} | {s:.3g} | {a:.2e} -> {b:.2e} | {d:.2e} |" for n, e, s, a, b, d in rows]
    out.mkdir(parents=True, exist_ok=True)
    (out / "identifiability.md").write_text("\n".join(lines) + "\n")
    (out / "identifiability.json").write_text(json.dumps(metrics, indent=2))
    names = [r[0] for r in rows]
    grouped_bars(out / "figures" / "identifiability.png", names,
                 {"stability": {r[0]: r[2] for r in rows}, "drift from the exact fit": {r[0]: r[5] for r in rows}},
                 title="MetaColloc: does the residual pin the solution down?", ylabel="value (log scale)")
    return metrics

"""Python entry point: ``sciml.solve(config_or_path, ...)``.

The configuration is loaded and validated first (nothing is written before it
is valid); then plain objects are built from it here, at the top — the physics
problem, the solver, the output grid, the reference — and passed down.
"""
from __future__ import annotations

import dataclasses
import functools
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch

from .config import config_differences, load_run
from .config.loader import build_rule
from .config.errors import ConfigError
from .config.expr import Expression
from .config.pde import build_pde_problem
from .config.problem import (APNNSolverSpec, BGKSpec, MetaCollocSolverSpec, PDESpec, CosineSchedule, DirichletBC, InflowBC,
                             LinearTransportSpec, ReferenceSolverSpec, StepSchedule)
from .domain import SAMPLERS, Box, VelocitySpace, cell_centres
from .io.results import read_result
from .nn.conditioning import ENCODINGS
from .physics.bgk import BGKProblem, MaxwellianWall
from .physics.linear_transport import Inflow, LinearTransportProblem, Periodic
from .physics.multitask import MultiEps
from .residual import ENGINES
from .solvers.apnn import APNNSolver, resolve_device
from .solvers.apnn_lt import NetSpec, PointSpec
from .solvers.base import Solution
from .solvers.compare import FieldReference, field_metrics, tail_metrics
from .solvers.least_squares import SVD, PivotedQR, Ridge
from .solvers.metacolloc import (BasisMismatch, Collocation, MaxNormRows, MetaCollocSolver, Newton, UnitRows,
                                 Waves)
from .solvers.reference import ReferenceSolver
from .train import TrainConfig
from .train import Constant, Cosine, StepDecay
from . import distributed


# ---- problems ------------------------------------------------------------------------------
def _lt_boundary(spec):
    if isinstance(spec, InflowBC):
        return Inflow(Expression(spec.f, ("t", "v")))
    if isinstance(spec, DirichletBC):
        return Inflow(Expression(spec.rho, ("t", "v")))
    return Periodic()


def _is_zero(expr: Expression) -> bool:
    if not expr.is_constant:
        return False
    return float(np.asarray(expr(x=np.zeros(1), v=np.zeros(1), t=np.zeros(1))).reshape(-1)[0]) == 0.0


def build_linear_transport(spec: LinearTransportSpec) -> LinearTransportProblem:
    f0 = Expression(spec.initial.f, ("x", "v"))
    rho0 = Expression(spec.initial.rho, ("x",)) if spec.initial.rho is not None else None
    zero = _is_zero(rho0) if rho0 is not None else _is_zero(f0)
    return LinearTransportProblem(
        eps=spec.eps, domain=Box.of(t=spec.t, x=spec.x),
        velocity=VelocitySpace.gauss_legendre(-1.0, 1.0, spec.velocity_nodes),
        f0=f0, rho0=rho0, left=_lt_boundary(spec.boundary.left), right=_lt_boundary(spec.boundary.right),
        zero_initial_density=zero)


def _number_or_expr(text: str, variables):
    expr = Expression(text, variables)
    if expr.is_constant:
        return float(np.asarray(expr(**{v: np.zeros(1) for v in variables})).reshape(-1)[0])
    return expr


def build_bgk(spec: BGKSpec) -> BGKProblem:
    def wall(b):
        return MaxwellianWall(rho=_number_or_expr(b.rho, ("t",)), u=_number_or_expr(b.u, ("t",)),
                              T=_number_or_expr(b.T, ("t",)))

    ini = spec.initial
    return BGKProblem(eps=spec.eps, domain=Box.of(t=spec.t, x=spec.x),
                      velocity=VelocitySpace.gauss_legendre(spec.v[0], spec.v[1], spec.velocity_nodes),
                      rho0=Expression(ini.rho, ("x",)), u0=Expression(ini.u, ("x",)), T0=Expression(ini.T, ("x",)),
                      left=wall(spec.boundary.left), right=wall(spec.boundary.right))


PROBLEM_BUILDERS = {LinearTransportSpec: build_linear_transport, BGKSpec: build_bgk, PDESpec: build_pde_problem}


def build_problem(spec):
    """The problem of a spec; a list of eps gives a :class:`MultiEps` of one problem per eps."""
    if isinstance(getattr(spec, "eps", None), (list, tuple)):
        single = PROBLEM_BUILDERS[type(spec)](dataclasses.replace(spec, eps=float(spec.eps[0])))
        return MultiEps.of(single, spec.eps)
    return PROBLEM_BUILDERS[type(spec)](spec)


# ---- solvers -------------------------------------------------------------------------------
def _schedule(spec):
    if isinstance(spec, StepSchedule):
        return StepDecay(every=spec.every, gamma=spec.gamma)
    if isinstance(spec, CosineSchedule):
        return Cosine(final_factor=spec.final_factor)
    return Constant()


def _net(spec) -> NetSpec:
    return NetSpec(arch=spec.arch, width=spec.width, depth=spec.depth, act=spec.activation)


def _encoding(spec):
    options = {k: v for k, v in dataclasses.asdict(spec).items() if k != "kind"}
    return ENCODINGS[spec.kind](**options)


def build_apnn(spec: APNNSolverSpec, *, device: str | None = None) -> APNNSolver:
    tr = spec.training
    train = TrainConfig(steps=tr.steps, lr=tr.lr, schedule=_schedule(tr.schedule), lbfgs_steps=tr.lbfgs_steps,
                        grad_clip=tr.grad_clip, seed=tr.seed, checkpoint_every=tr.checkpoint_every,
                        log_every=tr.log_every, max_retries=tr.max_retries)
    rule = build_rule(tr)
    return APNNSolver(
        formulation=spec.formulation, net=_net(spec.network),
        rho_net=_net(spec.density_network) if spec.density_network is not None else None,
        points=PointSpec(interior=spec.points.interior, boundary=spec.points.boundary, initial=spec.points.initial),
        weights=dict(spec.weights), sampler=SAMPLERS[spec.points.sampler](), engine=ENGINES[spec.engine](),
        train=train, positive=spec.positive, relax_initial=spec.relax_initial,
        options={k: getattr(spec, k) for k in ("exact_walls", "f_form") if getattr(spec, k) is not None}, mtl=rule,
        encoding=_encoding(spec.eps_encoding),
        dtype=getattr(torch, spec.dtype), device=device or spec.device,
        name=f"apnn-{spec.formulation}")


def build_reference(spec: ReferenceSolverSpec, *, device: str | None = None) -> ReferenceSolver:
    return ReferenceSolver(nx=spec.nx, nv=spec.nv, dt=spec.dt, cfl=spec.cfl, limiter=spec.limiter)


_LSTSQ = {"svd": SVD, "qr": PivotedQR, "ridge": Ridge}


def _plane_waves(names, box, *, k, directions):
    return Waves.plane_waves(names, k, directions)


def _fourier(names, box, *, kmax):
    return Waves.fourier(names, kmax, box)


def build_metacolloc(spec: MetaCollocSolverSpec, *, device: str | None = None) -> MetaCollocSolver:
    def _lstsq(ls):
        return _LSTSQ[ls.kind](**{k: v for k, v in dataclasses.asdict(ls).items() if k != "kind"})

    lstsq = _lstsq(spec.lstsq)
    nw = spec.newton
    enrich = None
    if spec.enrich is not None and spec.enrich.kind == "plane_waves":
        k, n = float(Expression(spec.enrich.k, ())()), spec.enrich.directions
        enrich = functools.partial(_plane_waves, k=k, directions=n)
    elif spec.enrich is not None:
        enrich = functools.partial(_fourier, kmax=spec.enrich.kmax)
    rows = {"max_norm": MaxNormRows, "unit": UnitRows}[spec.rows](spec.row_scale)
    options = Collocation(interior=spec.interior, boundary=spec.boundary, rows=rows,
                          boundary_weight=spec.boundary_weight, lstsq=lstsq,
                          newton=Newton(max_iter=nw.max_iter, tol=nw.tol, line_search=nw.line_search,
                                        lstsq=_lstsq(nw.lstsq), polish=nw.polish), seed=spec.seed,
                          enrich=enrich)
    return MetaCollocSolver(basis=spec.basis, options=options, device=device or spec.device)


SOLVER_BUILDERS = {APNNSolverSpec: build_apnn, ReferenceSolverSpec: build_reference,
                   MetaCollocSolverSpec: build_metacolloc}


def output_times(spec, t0: float, t_end: float) -> np.ndarray:
    if spec.times is not None:
        return np.asarray(spec.times, dtype=np.float64)  # checked against problem.t by the loader
    return t0 + (t_end - t0) * np.array([0.25, 0.5, 0.75, 1.0])


REPORTED = ("rho", "momentum", "energy")   # fields compared with references


def _base(name: str) -> str:
    """``rho_eps0.001`` -> ``rho``."""
    return name.rsplit("_eps", 1)[0]


def _error_monitor(times, x, ref):
    """``fields -> {"rel_l2_rho": ..., ...}`` at the final time against the reference,
    for logging during training."""
    def monitor(fields):
        m, _ = field_metrics(times, x, fields, ref)
        return {f"rel_l2_{k}": m[f"rel_l2_{k}"] for k in ref.fields if f"rel_l2_{k}" in m}
    return monitor


def build_run_problem(cfg):
    """The kinetic problem of a resolved run configuration, on the solver's velocity
    nodes when the solver names a number of them."""
    problem = build_problem(cfg.problem)
    if getattr(cfg.solver, "velocity_nodes", None):
        vel = problem.velocity
        new = VelocitySpace.gauss_legendre(vel.lo, vel.hi, cfg.solver.velocity_nodes)
        problem = problem.replace_all(velocity=new) if isinstance(problem, MultiEps) else \
            dataclasses.replace(problem, velocity=new)
    return problem


def _saved_config(out: str | Path) -> str | None:
    """The resolved configuration of the run in ``out``: that of its result when it
    finished, else the one its training was started with; ``None`` when there is none."""
    out = Path(out)
    if (out / "result.h5").is_file():
        return str(read_result(out / "result.h5")["attrs"].get("config", ""))
    if (out / "train" / "config.yaml").is_file():
        return (out / "train" / "config.yaml").read_text()
    return None


def resume_differences(out: str | Path, config_text: str) -> list[str]:
    """The keys in which the run in ``out`` differs from ``config_text`` so that it
    cannot be resumed (a run may be continued to more steps and evaluated on other
    output points); empty when there is no run or it can be."""
    saved = _saved_config(out)
    if saved is None:
        return []
    return config_differences(saved, config_text,
                              ignore=("solver.training.steps", "solver.training.lbfgs_steps", "output"))


def check_resume(out: str | Path, config_text: str) -> None:
    """A :class:`ConfigError` when ``--resume`` into ``out`` would continue another run."""
    diff = resume_differences(out, config_text)
    if diff:
        raise ConfigError("--resume", f"{out} holds a run with another configuration ({', '.join(diff[:4])}"
                                      f"{' ...' if len(diff) > 4 else ''} differ); run without --resume "
                                      "to replace it, or choose another output directory")


def _solve_pde(run, *, out, device) -> Solution:
    cfg = run.config
    problem = build_pde_problem(cfg.problem)
    solver_obj = build_metacolloc(cfg.solver, device=device)
    solver_obj.base_dir = run.base_dir
    try:
        res = solver_obj.solve_pde(problem, eval_points=cfg.output.eval_points, grid=cfg.output.grid)
    except (FileNotFoundError, BasisMismatch) as exc:
        raise ConfigError("solver.basis", str(exc)) from None
    names = tuple(res["grid"])
    sol = Solution(solver=solver_obj.name, grid=res["grid"], fields=res["fields"],
                   dims={k: names for k in res["fields"]}, metrics=res["metrics"], reference=res["reference"],
                   history={}, config_text=run.yaml_text, meta={**res["meta"], "problem": cfg.problem.name})
    if out is not None and distributed.is_main():
        sol.save(out)
    return sol


# ---- the entry point -----------------------------------------------------------------------
def solve(config: str | Path | Mapping[str, Any], *, solver: str | None = None,
          overrides: Sequence[str] | Mapping[str, Any] = (), out: str | Path | None = None,
          device: str | None = None, resume: bool = False, progress: bool = True) -> Solution:
    """Solve a configured problem.

    ``config``: a problem YAML path or the same content as a dict. ``solver``: a
    preset name replacing the problem's (e.g. ``"reference"``). ``overrides``:
    ``["solver.training.steps=100", ...]`` or ``{"solver.training.steps": 100}``.
    ``out``: directory for ``result.h5``, figures and checkpoints (nothing is
    saved when ``None``; call ``.save(dir)`` on the result later). ``resume``:
    continue training from ``out``'s last checkpoint.

    Under torchrun (``WORLD_SIZE`` > 1) the processes form one group for the call
    (unless one exists already): each trains on its own points, rank 0 writes.
    """
    run = load_run(config, solver=solver, overrides=overrides)
    with distributed.process_group():
        return _solve(run, out=out, device=device, resume=resume, progress=progress)


def checked_device(device: str | None, spec_device: str, *, key: str = "solver.device") -> None:
    """Stop with a :class:`ConfigError` (before anything is written) when the device asked
    for (``device``, the ``--device`` argument, else the configuration's) is not here."""
    try:
        resolve_device(device or spec_device)
    except RuntimeError as exc:
        raise ConfigError("--device" if device else key, str(exc)) from None


def _solve(run, *, out, device, resume, progress) -> Solution:
    """:func:`solve` on a loaded run configuration."""
    cfg = run.config
    checked_device(device, getattr(cfg.solver, "device", "cpu"))
    output = cfg.output
    if resume and out is not None:
        check_resume(out, run.yaml_text)
    if isinstance(cfg.problem, PDESpec):
        return _solve_pde(run, out=out, device=device)
    problem = build_run_problem(cfg)
    times = output_times(output, cfg.problem.t[0], cfg.problem.t[1])
    x = cell_centres(problem.domain["x"], output.nx).numpy()
    solver_obj = SOLVER_BUILDERS[type(cfg.solver)](cfg.solver, device=device)

    # the reference: the data file when the problem names one, else our classical solver;
    # published data named by reference.published are compared too (metrics published_*)
    def npz(name, label):
        return FieldReference.from_npz(run.base_dir / name, x_range=cfg.problem.x, t_end=cfg.problem.t[1],
                                       label=label)

    if cfg.reference.data is not None:
        ref = npz(cfg.reference.data, "published")
    elif not isinstance(solver_obj, ReferenceSolver):
        r = ReferenceSolver().solve(problem, times=times, x=x, progress=False)
        ref = FieldReference(times, x, {k: v for k, v in r["fields"].items() if _base(k) in REPORTED},
                             label="reference solver")
    else:
        ref = None
    published = npz(cfg.reference.published, "published") if cfg.reference.published is not None else None

    train_dir = Path(out) / "train" if out is not None else None
    if train_dir is not None and not isinstance(solver_obj, ReferenceSolver) and distributed.is_main():
        # written before training, so that --resume of an interrupted run (checkpoint,
        # no result.h5 yet) is checked against the configuration it was started with
        train_dir.mkdir(parents=True, exist_ok=True)
        (train_dir / "config.yaml").write_text(run.yaml_text)
    monitor = _error_monitor(times, x, ref) if ref is not None else None
    res = solver_obj.solve(problem, times=times, x=x, out_dir=train_dir, resume=resume, progress=progress,
                           monitor=monitor)
    metrics = dict(res["metrics"])
    reference = {}
    if ref is not None:
        m, reference = field_metrics(times, x, res["fields"], ref)
        metrics.update(m)
        metrics["reference"] = ref.label
    metrics.update(tail_metrics(res["history"]))   # the errors' mean over the last 20 % of training
    if isinstance(problem, MultiEps):     # the worst task: what multi-task training must keep small
        for base in REPORTED:
            per = [metrics[f"rel_l2_{base}_{lab}"] for lab in problem.labels if f"rel_l2_{base}_{lab}" in metrics]
            if per:
                metrics[f"worst_rel_l2_{base}"] = max(per)
    if published is not None:
        m, _ = field_metrics(times, x, res["fields"], published)
        metrics.update({f"published_{k}": v for k, v in m.items()})
    sol = Solution(solver=solver_obj.name, grid={"t": times, "x": x}, fields=res["fields"],
                   dims={k: ("t", "x") for k in res["fields"]}, metrics=metrics, reference=reference, history=res["history"],
                   config_text=run.yaml_text, meta={**res["meta"], "problem": cfg.problem.name,
                                                    "world_size": distributed.world_size()})
    if out is not None and distributed.is_main():     # under torchrun rank 0 writes
        sol.save(out)
    return sol

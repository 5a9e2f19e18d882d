"""Classical reference solvers as solvers of the package (``--solver reference``)."""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..physics.bgk import BGKProblem, balance_metrics
from ..physics.linear_transport import LinearTransportProblem
from ..physics.multitask import MultiEps
from ..reference.linear_transport import solve_linear_transport


@dataclass(frozen=True)
class _Fine:
    """A reference solution on its own grid: fields ``(n_t, n_x_fine)`` at the output times."""

    x: np.ndarray
    fields: dict
    metrics: dict


def _lt(problem: LinearTransportProblem, times, s: "ReferenceSolver", progress: bool) -> _Fine:
    res = solve_linear_transport(eps=problem.eps, x_range=(problem.domain["x"].lo, problem.domain["x"].hi),
                                 nx=s.nx, nv=s.nv or 32, t_end=float(times[-1]), dt=s.dt,
                                 t0=problem.domain["t"].lo, output_times=list(times),
                                 f0=lambda x, v: problem.f0(x=x, v=v), left=problem.left, right=problem.right)
    return _Fine(res.x, {"rho": res.rho}, {k: v for k, v in res.info.items() if isinstance(v, (int, float))})


def _bgk(problem: BGKProblem, times, s: "ReferenceSolver", progress: bool) -> _Fine:
    from ..reference.bgk import solve_bgk

    res = solve_bgk(problem, nx=s.nx, nv=s.nv or 128, output_times=list(times), cfl=s.cfl, dt=s.dt,
                    limiter=s.limiter, progress=progress)
    metrics = {k: v for k, v in res.info.items() if isinstance(v, (int, float))}
    metrics.update(balance_metrics(res.initial_totals, res.totals, res.boundary_flux["left"], res.boundary_flux["right"]))
    fields = {k: res.fields[k] for k in ("rho", "momentum", "energy", "u", "T")}
    return _Fine(res.x, fields, metrics)


def _multi(problem: MultiEps, times, s: "ReferenceSolver", progress: bool) -> _Fine:
    """Each task solved on its own; fields and metrics suffixed with the task label."""
    fields, metrics, x = {}, {}, None
    for label, p in zip(problem.labels, problem.problems):
        res = REFERENCE_SOLVERS[type(p)](p, times, s, progress)
        x = res.x
        fields.update({f"{k}_{label}": v for k, v in res.fields.items()})
        metrics.update({f"{k}_{label}": v for k, v in res.metrics.items()})
    return _Fine(x, fields, metrics)


# reference solvers by problem type
REFERENCE_SOLVERS = {LinearTransportProblem: _lt, BGKProblem: _bgk, MultiEps: _multi}


def cell_average_to(x_fine: np.ndarray, values: np.ndarray, x_out: np.ndarray, x_range) -> np.ndarray:
    """Cell averages of the fine solution on the output cells when the fine grid
    refines them exactly, else linear interpolation."""
    nf, no = len(x_fine), len(x_out)
    a, b = x_range
    centres = a + (b - a) * (np.arange(no) + 0.5) / no
    if nf % no == 0 and np.allclose(centres, x_out, atol=1e-12):
        return values.reshape(*values.shape[:-1], no, nf // no).mean(-1)
    return np.stack([np.interp(x_out, x_fine, row) for row in np.atleast_2d(values)]).reshape(*values.shape[:-1], no)


@dataclass
class ReferenceSolver:
    """``nv=None``: the problem type's default (32 for linear transport, 128 for BGK).
    ``cfl`` and ``limiter`` apply to the explicit-transport BGK scheme."""

    nx: int = 400
    nv: int | None = None
    dt: float | None = None
    cfl: float = 0.5
    limiter: str = "minmod"
    name: str = "reference"

    def solve(self, problem, *, times: np.ndarray, x: np.ndarray, out_dir: str | Path | None = None,
              resume: bool = False, progress: bool = True, monitor=None) -> dict:
        try:
            fn = REFERENCE_SOLVERS[type(problem)]
        except KeyError:
            raise ValueError(f"no reference solver for {type(problem).__name__}") from None
        t0 = time.perf_counter()
        res = fn(problem, np.asarray(times, dtype=np.float64), self, progress)
        wall = time.perf_counter() - t0
        xr = (problem.domain["x"].lo, problem.domain["x"].hi)
        fields = {k: cell_average_to(res.x, v, np.asarray(x), xr) for k, v in res.fields.items()}
        return {"fields": fields, "metrics": {"solve_time_s": wall, **res.metrics},
                "history": {}, "meta": {"device": "cpu", "dtype": "float64", "seed": 0}}

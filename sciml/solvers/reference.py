"""Classical reference solver as a solver of the package (``--solver reference``)."""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..physics.linear_transport import LinearTransportProblem
from ..reference.linear_transport import solve_linear_transport


def _lt(problem: LinearTransportProblem, times, nx, nv, dt):
    res = solve_linear_transport(eps=problem.eps, x_range=(problem.domain["x"].lo, problem.domain["x"].hi),
                                 nx=nx, nv=nv, t_end=float(times[-1]), dt=dt,
                                 t0=problem.domain["t"].lo, output_times=list(times),
                                 f0=lambda x, v: problem.f0(x=x, v=v), left=problem.left, right=problem.right)
    return res


# reference solvers by problem type
REFERENCE_SOLVERS = {LinearTransportProblem: _lt}


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
    nx: int = 400
    nv: int = 32
    dt: float | None = None
    name: str = "reference"

    def solve(self, problem, *, times: np.ndarray, x: np.ndarray, out_dir: str | Path | None = None,
              resume: bool = False, progress: bool = True, monitor=None) -> dict:
        try:
            fn = REFERENCE_SOLVERS[type(problem)]
        except KeyError:
            raise ValueError(f"no reference solver for {type(problem).__name__}") from None
        t0 = time.perf_counter()
        res = fn(problem, times, self.nx, self.nv, self.dt)
        wall = time.perf_counter() - t0
        xr = (problem.domain["x"].lo, problem.domain["x"].hi)
        rho = cell_average_to(res.x, res.rho, np.asarray(x), xr)
        return {"fields": {"rho": rho}, "metrics": {"solve_time_s": wall, **{k: v for k, v in res.info.items()
                                                                            if isinstance(v, (int, float))}},
                "history": {}, "meta": {"device": "cpu", "dtype": "float64", "seed": 0}}

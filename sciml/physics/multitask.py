"""One equation posed at several Knudsen numbers at once (the tasks of HRGrad):
the same domain, data and boundaries, a list of eps. A learned solver trains ONE
eps-conditioned network on all of them (``sciml.solvers.multitask``)."""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass


def task_label(eps: float) -> str:
    """``eps1e-08``-style label used in loss-term and field names."""
    return f"eps{eps:g}"


@dataclass(frozen=True)
class MultiEps:
    problems: tuple          # one single-eps problem per task, identical but for eps

    def __post_init__(self):
        if len(self.problems) < 2:
            raise ValueError("a multi-task problem needs at least two eps values")
        eps = [p.eps for p in self.problems]
        if len(set(eps)) != len(eps):
            raise ValueError(f"eps values must be distinct, got {eps}")
        if len({type(p) for p in self.problems}) != 1:
            raise ValueError("all tasks must be the same equation")

    @classmethod
    def of(cls, problem, eps_values) -> "MultiEps":
        return cls(tuple(dataclasses.replace(problem, eps=float(e)) for e in eps_values))

    @property
    def eps(self) -> list[float]:
        return [p.eps for p in self.problems]

    @property
    def labels(self) -> list[str]:
        return [task_label(e) for e in self.eps]

    @property
    def domain(self):
        return self.problems[0].domain

    @property
    def velocity(self):
        return self.problems[0].velocity

    @property
    def log_eps_range(self) -> tuple[float, float]:
        le = [math.log10(e) for e in self.eps]
        return min(le), max(le)

    def replace_all(self, **changes) -> "MultiEps":
        return MultiEps(tuple(dataclasses.replace(p, **changes) for p in self.problems))

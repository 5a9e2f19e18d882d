"""One eps-conditioned network for several Knudsen numbers (the HRGrad setting).

:class:`MultiTask` wraps any single-eps formulation (linear transport even–odd,
micro–macro, PINN; BGK conservation). Its networks take one more input, the
*eps encoding* ``log10(eps)`` normalised onto ``[-1, 1]`` over the tasks' range; how a
network sees it is a strategy from :mod:`sciml.nn.conditioning` (``encoding=``: one
more input column by default, a learned embedding, or FiLM modulation of every
hidden layer). Every network of the formulation is conditioned. The K tasks share those networks: each task is
a copy of the single-eps formulation whose networks are :class:`Conditioned`
views of the shared ones with its own encoding.

Every task samples its own points and makes its own forward calls, so the loss
terms of task ``k`` (named ``"<label>/<term>"``, label ``eps<value>``) depend only on
its part of the graph: the K per-task gradients (:class:`sciml.mtl.TaskBackward`)
cost about one summed backward. Observables are reported per task
(``rho_eps0.001``, ...).
"""
from __future__ import annotations

import math

import torch
from torch import nn

from ..domain import Interval
from ..nn import Field
from ..nn.conditioning import InputEncoding
from ..physics.multitask import MultiEps
from .formulation import Formulation

ENCODING = "leps"   # the name of the eps-encoding input


class Conditioned(nn.Module):
    """A shared field evaluated with the constant input ``name = value`` appended."""

    def __init__(self, field: nn.Module, name: str, value: float):
        super().__init__()
        self.field, self.name, self.value = field, name, float(value)

    def forward(self, points):
        ref = next(iter(points.values()))
        return self.field({**points, self.name: torch.full_like(ref, self.value)})


class MultiTask(Formulation):
    def __init__(self, problem: MultiEps, formulation: type, *, encoding=InputEncoding(), **kwargs):
        super().__init__(None)
        lo, hi = problem.log_eps_range
        cond = Interval(ENCODING, lo, hi)
        self.labels = problem.labels
        self.eps = problem.eps
        tasks = [formulation(p, condition=(cond,), **kwargs) for p in problem.problems]
        shared = {path: m for path, m in tasks[0].named_modules() if isinstance(m, Field)}
        if not shared:
            raise ValueError(f"{formulation.__name__} has no networks to condition")
        for field in shared.values():
            field.net = encoding.wrap(field.net, constant_code=True)   # tasks are evaluated one by one
        self.encoding = encoding
        self.shared = nn.ModuleDict({path.replace(".", "__"): m for path, m in shared.items()})
        for task, p in zip(tasks, problem.problems):
            for path, field in shared.items():
                parent_path, _, attr = path.rpartition(".")
                parent = task.get_submodule(parent_path) if parent_path else task
                setattr(parent, attr, Conditioned(field, ENCODING, math.log10(p.eps)))
        self._tasks = tasks          # a plain list: their only parameters are the shared ones

    @property
    def tasks(self) -> list:
        return list(self._tasks)

    def sample(self, generator):
        return {label: t.sample(generator) for label, t in zip(self.labels, self._tasks)}

    def residuals(self, batch):
        return {f"{label}/{k}": v for label, t in zip(self.labels, self._tasks)
                for k, v in t.residuals(batch[label]).items()}

    def loss(self, step, generator):
        batch = self.sample(generator)
        return {f"{label}/{k}": t.weights[k] * v for label, t in zip(self.labels, self._tasks)
                for k, v in t.residuals(batch[label]).items()}

    def observables(self, t, x):
        return {f"{name}_{label}": v for label, task in zip(self.labels, self._tasks)
                for name, v in task.observables(t, x).items()}

    def diagnostics(self, times, x):
        out = {}
        for label, task in zip(self.labels, self._tasks):
            out.update({f"{k}_{label}": v for k, v in task.diagnostics(times, x).items()})
        return out

"""Multi-task training through the shared trainer: :class:`TaskBackward` is a
``backward(terms, params)`` hook for :class:`sciml.train.Trainer`.

Loss terms are named ``"<task>/<term>"``; the terms of a task sum to its loss
``L_k``. With an aggregator, the ``K`` task gradients (one ``autograd.grad`` per
task over every trainable parameter; parameters a task does not touch give zeros,
never dropped, so every row has the same length ``n``) form the ``K x n`` matrix
``G``, and the aggregator's update is written into ``p.grad``. With a loss
weighting, ``sum_k w_k L_k`` is differentiated once (GradNorm also needs the task
gradient norms, which costs the ``K`` gradients). The returned total, which the
trainer logs, is ``sum_k L_k``.

Cost: each ``autograd.grad(L_k)`` traverses only the graph ``L_k`` depends on. When
every task has its own points and its own forward call (the multi-eps problems
do), the ``K`` backwards together cost about one summed backward; when the tasks
share one forward, each backward re-traverses the shared part (see
``benchmarks/mtl.py``).

Under ``torch.distributed`` (torchrun) every rank holds its own points: the task losses
and the ``K x n`` task gradients are averaged over the ranks before the rule sees them,
so that every rank applies the rule to the global task gradients (a nonlinear rule
applied per rank and then averaged is another rule) and keeps the same state. The
update is then the same on every rank, and the hook says so (``grads_global``), so
that the trainer does not average it over the ranks again. A loss weighting that
needs no gradients (DWA, uncertainty, FAMO) weights each rank's own losses with the
global weights and leaves ``grads_global`` false: the trainer averages those
gradients as it does a summed loss's.

The hook holds the aggregator's / weighting's state (``state_dict``); pass it as the
trainer's ``extra_state`` so that ``--resume`` is exact. ``last`` holds the
diagnostics of the last step (pairwise cosines, cosine of the update with every
task gradient, task losses and gradient norms).
"""
from __future__ import annotations

from typing import Mapping

import torch

from ..distributed import current
from .base import Aggregator, diagnostics
from .weighting import Weighting


def task_of(name: str) -> str:
    if "/" not in name:
        raise ValueError(f"multi-task loss term {name!r} must be named '<task>/<term>'")
    return name.split("/", 1)[0]


def _rank_mean(x: torch.Tensor) -> torch.Tensor:
    """``x`` averaged over the ranks of an initialised ``torch.distributed`` group
    (itself when there is none, one rank, or this process works alone:
    :func:`sciml.distributed.independent`)."""
    d = current()
    if d is None or d.get_world_size() == 1:
        return x
    x = x.detach().clone()
    d.all_reduce(x)
    return x / d.get_world_size()


class TaskBackward:
    def __init__(self, *, aggregator: Aggregator | None = None, weighting: Weighting | None = None,
                 diagnose: bool = True):
        if aggregator is not None and weighting is not None:
            raise ValueError("give an aggregator or a loss weighting, not both")
        self.aggregator, self.weighting, self.diagnose = aggregator, weighting, diagnose
        self.tasks: list[str] | None = None
        self.last: dict = {}
        self.grads_global = False     # after a call: its gradients are the same on every rank already

    def task_losses(self, terms: Mapping[str, torch.Tensor]) -> tuple[list[str], list[torch.Tensor]]:
        groups: dict[str, list[torch.Tensor]] = {}
        for name, val in terms.items():
            groups.setdefault(task_of(name), []).append(val)
        names = list(groups)
        if self.tasks is None:
            self.tasks = names
        elif names != self.tasks:
            raise ValueError(f"the tasks changed from {self.tasks} to {names}")
        return names, [torch.stack(v).sum() for v in groups.values()]

    @staticmethod
    def task_gradients(losses: list[torch.Tensor], params: list[torch.nn.Parameter]) -> torch.Tensor:
        """``K x n`` matrix of the task gradients over all parameters (zeros where a
        task does not reach a parameter)."""
        rows = []
        for k, L in enumerate(losses):
            grads = torch.autograd.grad(L, params, retain_graph=k < len(losses) - 1, allow_unused=True)
            rows.append(torch.cat([(g if g is not None else torch.zeros_like(p)).reshape(-1)
                                   for g, p in zip(grads, params)]))
        return torch.stack(rows)

    def __call__(self, terms: Mapping[str, torch.Tensor], params: list[torch.nn.Parameter]) -> torch.Tensor:
        names, losses = self.task_losses(terms)
        total = torch.stack(losses).sum()
        L = _rank_mean(torch.stack([x.detach() for x in losses]))     # the rule sees global losses
        if self.weighting is not None and not self.weighting.needs_grad_norms:
            w = self.weighting(L).to(total.dtype).to(total.device)
            (torch.stack(losses) * w).sum().backward()
            self.last = {"task_losses": L.double().tolist(), "weights": w.double().tolist()}
            self.grads_global = False            # each rank's own gradients: the trainer averages them
            return total.detach()
        G = _rank_mean(self.task_gradients(losses, params))          # ... and global task gradients
        self.grads_global = True                 # the update below is the same on every rank
        if self.weighting is not None:      # GradNorm: weights from the task gradient norms
            w = self.weighting(L, G.norm(dim=1)).to(G.dtype).to(G.device)
            update = w @ G
            extra = {"weights": w.double().tolist()}
        else:
            agg = self.aggregator
            update = agg(G, L.to(G.dtype)) if agg is not None else G.sum(0)
            extra = {"stats": agg.stats()} if agg is not None else {}
        offset = 0
        for p in params:
            n = p.numel()
            p.grad = update[offset:offset + n].view_as(p).clone()
            offset += n
        if self.diagnose:
            self.last = {**diagnostics(G, update, L), **extra}
        return total.detach()

    def state_dict(self) -> dict:
        rule = self.aggregator if self.aggregator is not None else self.weighting
        return {"tasks": self.tasks, "rule": rule.state_dict() if rule is not None else {}}

    def load_state_dict(self, state: dict) -> None:
        self.tasks = state.get("tasks")
        rule = self.aggregator if self.aggregator is not None else self.weighting
        if rule is not None:
            rule.load_state_dict(state.get("rule", {}))

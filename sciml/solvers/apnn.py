"""APNN solver: build a formulation for the problem, train it with the shared
trainer, report its observables (density; for BGK also momentum and energy) on
the output grid."""
from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..physics.bgk import BGKProblem
from ..mtl import Aggregator, TaskBackward, Weighting
from ..physics.linear_transport import LinearTransportProblem
from ..physics.multitask import MultiEps
from ..train import Trainer
from .apnn_bgk import FORMULATIONS as BGK_FORMULATIONS
from .apnn_lt import FORMULATIONS as LT_FORMULATIONS
from .apnn_lt import NetSpec, PointSpec
from .multitask import MultiTask
from ..nn.conditioning import InputEncoding

# formulations by problem type: later equations register here
FORMULATIONS = {LinearTransportProblem: LT_FORMULATIONS, BGKProblem: BGK_FORMULATIONS}


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(name)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"device {name!r} requested but CUDA is not available here; use auto or cpu")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise RuntimeError(f"device {name!r} requested but this machine has {torch.cuda.device_count()} "
                           f"GPU(s): cuda:0 ... cuda:{torch.cuda.device_count() - 1}")
    return dev


class _Monitor:
    """Trainer callback: ``monitor({name: field on the output grid})`` at every logged step."""

    def __init__(self, model, t, x, monitor):
        self.model, self.t, self.x, self.monitor = model, t, x, monitor

    def on_log(self, trainer, record):
        fields = {k: v.double().cpu().numpy() for k, v in self.model.observables_grid(self.t, self.x).items()}
        return {k: float(v) for k, v in self.monitor(fields).items()}


class _MTLMonitor:
    """Trainer callback: the multi-task diagnostics of the last step at every logged
    step (smallest cosine of the update with a task gradient, mean pairwise cosine of
    the task gradients) and, per task ``T``: ``weight_T``, a loss weighting's weight;
    ``grad_norm_T`` (``|g_T|``), ``cos_update_T`` (cosine of the update with
    ``g_T``) and ``rate_T = g_T . update / L_T``, the first-order relative decrease
    of the task's loss per unit learning rate (how the rule shares progress among
    the tasks), and the rule's own counters (``Aggregator.stats``, e.g. HRGrad's
    ``direction_fallbacks``)."""

    def __init__(self, hook):
        self.hook = hook

    def on_log(self, trainer, record):
        d = self.hook.last
        out = {}
        if "min_cos_update" in d:
            out["min_cos_update"] = float(d["min_cos_update"])
        if d.get("cos_tasks"):
            out["mean_cos_tasks"] = float(np.mean(d["cos_tasks"]))
            out["min_cos_tasks"] = float(np.min(d["cos_tasks"]))
        if "rates" in d and self.hook.tasks is not None:
            for name, gn, cu, rate in zip(self.hook.tasks, d["grad_norms"], d["cos_update"], d["rates"]):
                out[f"grad_norm_{name}"], out[f"cos_update_{name}"], out[f"rate_{name}"] = gn, cu, rate
        names = self.hook.tasks or []
        for k, w in enumerate(d.get("weights", [])):      # by task name (runs before 2026-12-05: weight_<i>)
            out[f"weight_{names[k] if k < len(names) else k}"] = float(w)
        out.update({k: float(v) for k, v in d.get("stats", {}).items()})
        return out


@dataclass
class APNNSolver:
    """Learned solver (see ``sciml.solvers.apnn_lt`` for the formulations)."""

    formulation: str
    net: NetSpec
    rho_net: NetSpec | None
    points: PointSpec
    weights: dict
    sampler: object
    engine: object
    train: object                 # sciml.train.TrainConfig
    positive: bool = False
    relax_initial: bool | None = None
    options: dict = dataclasses.field(default_factory=dict)   # formulation-specific keywords
    mtl: object = None            # multi-task rule: a sciml.mtl.Aggregator or Weighting (None: plain sum)
    encoding: object = None       # multi-task: how networks see eps (sciml.nn.conditioning; None: input column)
    dtype: torch.dtype = torch.float32
    device: str = "auto"
    name: str = "apnn"

    def build(self, problem, device: torch.device):
        single = problem.problems[0] if isinstance(problem, MultiEps) else problem
        try:
            table = FORMULATIONS[type(single)]
        except KeyError:
            raise ValueError(f"no APNN formulation for {type(problem).__name__}") from None
        try:
            cls = table[self.formulation]
        except KeyError:
            raise ValueError(f"unknown formulation {self.formulation!r}; allowed: {sorted(table)}") from None
        kwargs = dict(net=self.net, rho_net=self.rho_net, points=self.points, weights=self.weights,
                      sampler=type(self.sampler)(dtype=self.dtype), engine=self.engine, positive=self.positive,
                      relax_initial=self.relax_initial, **self.options)
        if isinstance(problem, MultiEps):
            enc = {} if self.encoding is None else {"encoding": self.encoding}
            model = MultiTask(problem, cls, **enc, **kwargs)
        elif self.encoding is not None and not isinstance(self.encoding, InputEncoding):
            raise ValueError("an eps encoding needs a multi-task problem (a list of eps)")
        else:
            model = cls(problem, **kwargs)
        return model.to(device=device, dtype=self.dtype)

    def solve(self, problem, *, times: np.ndarray, x: np.ndarray, out_dir: str | Path | None = None,
              resume: bool = False, progress: bool = True, monitor=None) -> dict:
        """Train and report the observables on ``times x x``. ``monitor(fields) -> dict``,
        when given, is evaluated on the output grid at every logged step (e.g. the
        error against the reference), and its values go to ``metrics.jsonl`` and the
        history."""
        device = resolve_device(self.device)
        torch.manual_seed(self.train.seed)
        model = self.build(problem, device)
        tt = torch.as_tensor(times, device=device, dtype=self.dtype)
        xx = torch.as_tensor(x, device=device, dtype=self.dtype)
        callbacks = [_Monitor(model, tt, xx, monitor)] if monitor is not None else []
        config = dataclasses.replace(self.train, progress=self.train.progress and progress)
        hook = None
        if self.mtl is not None:
            if not isinstance(problem, MultiEps):
                raise ValueError("a multi-task aggregator or weighting needs a multi-task problem (a list of eps)")
            hook = TaskBackward(aggregator=self.mtl if isinstance(self.mtl, Aggregator) else None,
                                weighting=self.mtl if isinstance(self.mtl, Weighting) else None)
            callbacks.append(_MTLMonitor(hook))
        trainer = Trainer(model, model.loss, config=config, out_dir=out_dir, callbacks=callbacks, backward=hook,
                          extra_state=hook)
        t0 = time.perf_counter()
        history = trainer.fit(resume=resume)
        wall = time.perf_counter() - t0
        model.eval()
        fields = {k: v.double().cpu().numpy() for k, v in model.observables_grid(tt, xx).items()}
        hist = history.to_dict()
        curves = {"step": np.asarray(hist["steps"]), "loss": np.asarray(hist["loss"])}
        for k, v in hist.get("terms", {}).items():
            curves[f"term_{k}"] = np.asarray(v)
        for k, v in hist.get("extra", {}).items():
            if all(isinstance(e, (int, float)) for e in v):
                curves[f"monitor_{k}"] = np.asarray(v, dtype=np.float64)
        metrics = {"train_time_s": wall, "steps": int(trainer.step),
                   "final_loss": float(hist["loss"][-1]) if len(hist["loss"]) else float("nan"),
                   "parameters": sum(p.numel() for p in model.parameters())}
        metrics.update(model.diagnostics(tt, xx))
        return {"fields": fields, "metrics": metrics, "history": curves,
                "meta": {"device": str(device), "dtype": str(self.dtype).replace("torch.", ""),
                         "seed": self.train.seed}}

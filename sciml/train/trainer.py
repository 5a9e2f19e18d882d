"""One training loop for every learned solver of the package.

The model is trained by minimising named loss terms returned by a callable::

    def loss_fn(step: int, generator: torch.Generator) -> dict[str, Tensor]:
        pts = sampler.sample(box, 512, generator)       # resample with THE generator
        return {"residual": w_r * res(pts), "bc": w_b * bc(pts)}

    trainer = Trainer(model, loss_fn, config=TrainConfig(steps=5000, schedule=Cosine()),
                      out_dir="runs/a")
    history = trainer.fit(resume=True)

Phases: ``config.steps`` Adam steps (learning-rate schedule per step), then an optional
L-BFGS finish (``config.lbfgs_steps`` iterations of :class:`torch.optim.LBFGS` with a
strong-Wolfe line search) on a FIXED batch: during L-BFGS ``loss_fn`` is always called
with ``step = config.steps`` and the generator reset to the same state, so the
objective is one deterministic function.

Step convention: the record of step ``i`` holds the loss evaluated at the parameters
after ``i`` updates (on the batch of step ``i``), and the learning rate used for
update ``i``. L-BFGS steps continue the numbering (``config.steps + j``); after the
last L-BFGS iteration one more evaluation is recorded at
``config.steps + config.lbfgs_steps``.

Logged with every Adam record besides the loss and the gradient norm: ``step_rms``,
the root-mean-square over all parameters of the update the optimiser made at that
step, divided by the learning rate (about 1 when Adam moves each parameter by ``lr``;
far below 1 when its second-moment average still holds much larger past gradients).
It costs one copy of the parameters at logged steps only.

State that makes a run exactly resumable (bitwise on the same device/threads) is
saved atomically to ``out_dir/checkpoint.pt`` every ``checkpoint_every`` steps and at
the end: model, Adam (+ scheduler) and L-BFGS states, step counters, the trainer's
generator, global torch / CUDA / numpy / ``random`` RNG states, the history, the
current learning-rate scale and the optional ``extra_state``.

NaN/Inf guard: a non-finite term, total, gradient norm (or, for L-BFGS, parameter)
rolls the run back to the last good in-memory state (taken with every checkpoint, or
every ``log_every`` steps when checkpointing is off), multiplies the learning rate of the
phase where it happened (Adam or L-BFGS) by ``retry_lr_factor`` and continues; after
``max_retries`` rollbacks in total :class:`TrainingDiverged` is raised.

Ctrl-C (``KeyboardInterrupt``) saves the last completed step before re-raising (the
samples drawn by the unfinished step are undone), so ``fit(resume=True)`` continues
exactly; an interrupt inside an optimiser update saves the last good state instead.

Distributed (``torch.distributed`` initialised): the model is broadcast from rank 0
at a fresh start, gradients and logged loss values are averaged over ranks every
step (so all ranks take identical steps; a ``backward`` callable that has made the
gradients global itself says so by ``grads_global = True`` after the call, as the
multi-task hook does, and they are left as they are), the generator is seeded with
``seed + rank``, only rank 0 writes files and shows the progress bar.
"""
from __future__ import annotations

import abc
import copy
import json
import logging
import math
import os
import random
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np
import torch
from torch import Tensor
from torch.optim.lr_scheduler import LambdaLR

from ..distributed import current as _dist
from ..errors import SolveFailed

logger = logging.getLogger(__name__)

CHECKPOINT_NAME = "checkpoint.pt"
METRICS_NAME = "metrics.jsonl"
_FORMAT = 1

__all__ = ["Constant", "Cosine", "StepDecay", "SCHEDULES", "TrainConfig", "TrainHistory", "Trainer",
           "TrainingDiverged", "Callback", "sum_backward"]


# ---- learning-rate schedules ------------------------------------------------------------------
class _Schedule(abc.ABC):
    """Multiplicative factor of the base learning rate at (0-based) step ``step``."""

    @abc.abstractmethod
    def factor(self, step: int, total_steps: int) -> float:
        """The factor for update ``step`` of ``total_steps``."""

    def scheduler(self, optimizer: torch.optim.Optimizer, total_steps: int) -> LambdaLR:
        """``LambdaLR`` giving ``lr * factor(step, total_steps)`` for update ``step``."""

        def fn(step, _self=self, _total=int(total_steps)):
            return _self.factor(step, _total)

        return LambdaLR(optimizer, fn)


@dataclass(frozen=True)
class Constant(_Schedule):
    """Constant learning rate."""

    def factor(self, step: int, total_steps: int) -> float:
        return 1.0


@dataclass(frozen=True)
class StepDecay(_Schedule):
    """``lr * gamma ** (step // every)``."""

    every: int
    gamma: float

    def __post_init__(self):
        if int(self.every) < 1:
            raise ValueError(f"StepDecay.every must be >= 1, got {self.every}")
        if not self.gamma > 0:
            raise ValueError(f"StepDecay.gamma must be > 0, got {self.gamma}")

    def factor(self, step: int, total_steps: int) -> float:
        return float(self.gamma) ** (int(step) // int(self.every))


@dataclass(frozen=True)
class Cosine(_Schedule):
    """Cosine from ``lr`` (step ``warmup``) to ``lr * final_factor`` (step
    ``total_steps``), after an optional linear warmup from ``0.1 lr``."""

    final_factor: float = 0.0
    warmup: int = 0

    def __post_init__(self):
        if not self.final_factor >= 0:
            raise ValueError(f"Cosine.final_factor must be >= 0, got {self.final_factor}")
        if int(self.warmup) < 0:
            raise ValueError(f"Cosine.warmup must be >= 0, got {self.warmup}")

    def factor(self, step: int, total_steps: int) -> float:
        w = int(self.warmup)
        if step < w:
            return 0.1 + 0.9 * int(step) / w
        frac = min(max(int(step) - w, 0), total_steps - w) / max(int(total_steps) - w, 1)
        ff = float(self.final_factor)
        return ff + (1.0 - ff) * 0.5 * (1.0 + math.cos(math.pi * frac))


SCHEDULES = {"constant": Constant, "step": StepDecay, "cosine": Cosine}


# ---- configuration, history, errors -----------------------------------------------------------
@dataclass
class TrainConfig:
    """Optimisation settings (see the module doc)."""

    steps: int                          # Adam steps
    lr: float = 1e-3
    weight_decay: float = 0.0           # > 0: AdamW (decoupled weight decay) instead of Adam
    schedule: object = Constant()       # Constant() / StepDecay(every, gamma) / Cosine(final_factor)
    lbfgs_steps: int = 0                # L-BFGS iterations after Adam, on a fixed batch
    lbfgs_lr: float = 1.0
    grad_clip: float | None = None      # clip the global gradient 2-norm (Adam phase)
    seed: int = 0                       # seeds the trainer's generator (+ rank)
    checkpoint_every: int = 1000        # 0: only at the end (and at the Adam -> L-BFGS switch)
    log_every: int = 50
    max_retries: int = 3                # NaN/Inf rollbacks before TrainingDiverged
    retry_lr_factor: float = 0.5
    progress: bool = True

    def __post_init__(self):
        if int(self.steps) < 0 or int(self.lbfgs_steps) < 0:
            raise ValueError("steps and lbfgs_steps must be >= 0")
        if not self.weight_decay >= 0:
            raise ValueError(f"weight_decay must be >= 0, got {self.weight_decay}")
        if not self.lr > 0 or not self.lbfgs_lr > 0:
            raise ValueError("lr and lbfgs_lr must be > 0")
        if int(self.log_every) < 1:
            raise ValueError(f"log_every must be >= 1, got {self.log_every}")
        if int(self.checkpoint_every) < 0:
            raise ValueError(f"checkpoint_every must be >= 0, got {self.checkpoint_every}")
        if int(self.max_retries) < 0:
            raise ValueError(f"max_retries must be >= 0, got {self.max_retries}")
        if not 0 < self.retry_lr_factor <= 1:
            raise ValueError(f"retry_lr_factor must be in (0, 1], got {self.retry_lr_factor}")
        if self.grad_clip is not None and not self.grad_clip > 0:
            raise ValueError(f"grad_clip must be > 0 or None, got {self.grad_clip}")
        if not callable(getattr(self.schedule, "scheduler", None)):
            raise TypeError(f"schedule must have .scheduler(optimizer, total_steps), got {self.schedule!r}")


class TrainingDiverged(SolveFailed):
    """Non-finite losses persisted after ``max_retries`` rollbacks."""

    def __init__(self, message: str, *, step: int, terms: list[str]):
        super().__init__(message)
        self.step = step
        self.terms = terms


_CORE = ("step", "phase", "time", "lr", "loss", "grad_norm", "terms")


@dataclass
class TrainHistory:
    """Logged records, column-wise (one entry per logged step).

    ``terms[name]`` is aligned with ``steps`` (NaN where a term was absent);
    ``extra[key]`` holds what callbacks added (None where absent); ``events`` lists
    NaN-guard rollbacks (not rolled back themselves)."""

    steps: list = field(default_factory=list)
    loss: list = field(default_factory=list)
    lr: list = field(default_factory=list)
    time: list = field(default_factory=list)        # seconds of training (cumulative over resumes)
    grad_norm: list = field(default_factory=list)   # before clipping
    phase: list = field(default_factory=list)       # "adam" / "lbfgs"
    terms: dict = field(default_factory=dict)
    extra: dict = field(default_factory=dict)
    events: list = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.steps)

    def append(self, record: Mapping[str, Any]) -> None:
        n = len(self.steps)
        self.steps.append(int(record["step"]))
        self.phase.append(str(record.get("phase", "adam")))
        self.time.append(float(record.get("time", float("nan"))))
        self.lr.append(float(record.get("lr", float("nan"))))
        self.loss.append(float(record["loss"]))
        self.grad_norm.append(float(record.get("grad_norm", float("nan"))))
        terms = record.get("terms", {}) or {}
        for k in terms:
            if k not in self.terms:
                self.terms[k] = [float("nan")] * n
        for k, col in self.terms.items():
            col.append(float(terms[k]) if k in terms else float("nan"))
        extra = {k: v for k, v in record.items() if k not in _CORE}
        for k in extra:
            if k not in self.extra:
                self.extra[k] = [None] * n
        for k, col in self.extra.items():
            col.append(extra.get(k))

    def record(self, i: int) -> dict:
        """The ``i``-th record as written to ``metrics.jsonl``."""
        rec = {"step": self.steps[i], "phase": self.phase[i], "time": self.time[i], "lr": self.lr[i],
               "loss": self.loss[i], "grad_norm": self.grad_norm[i],
               "terms": {k: col[i] for k, col in self.terms.items() if not math.isnan(col[i])}}
        for k, col in self.extra.items():
            if col[i] is not None:
                rec[k] = col[i]
        return rec

    def records(self) -> list[dict]:
        return [self.record(i) for i in range(len(self))]

    @property
    def final_loss(self) -> float:
        return self.loss[-1] if self.loss else float("nan")

    @property
    def final_terms(self) -> dict[str, float]:
        """Terms of the last record (``{}`` if nothing was logged)."""
        return self.record(len(self) - 1)["terms"] if len(self) else {}

    def to_dict(self) -> dict:
        """Plain copy: lists of floats (``steps``, ``loss``, ``lr``, ``time``, ``grad_norm``,
        ``phase``), ``terms``/``extra`` dicts of lists, ``events``, ``final_terms``."""
        return {"steps": list(self.steps), "loss": list(self.loss), "lr": list(self.lr), "time": list(self.time),
                "grad_norm": list(self.grad_norm), "phase": list(self.phase),
                "terms": {k: list(v) for k, v in self.terms.items()},
                "extra": {k: list(v) for k, v in self.extra.items()},
                "events": copy.deepcopy(self.events), "final_terms": self.final_terms}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "TrainHistory":
        return cls(steps=list(d["steps"]), loss=list(d["loss"]), lr=list(d["lr"]), time=list(d["time"]),
                   grad_norm=list(d["grad_norm"]), phase=list(d["phase"]),
                   terms={k: list(v) for k, v in d["terms"].items()},
                   extra={k: list(v) for k, v in d.get("extra", {}).items()},
                   events=copy.deepcopy(list(d.get("events", []))))


# ---- strategies -------------------------------------------------------------------------------
def sum_backward(terms: Mapping[str, Tensor], params: list[torch.nn.Parameter]) -> Tensor:
    """Default combination: ``total = sum(terms)``; ``total.backward()``; returns ``total``."""
    total = sum(terms.values())
    total.backward()
    return total.detach()


class Callback:
    """Optional hooks (any object with a subset of these methods works)."""

    def on_step(self, trainer: "Trainer", step: int, stats: dict) -> None:
        """After every completed step; ``stats``: phase, loss, terms, lr, grad_norm (floats)."""

    def on_log(self, trainer: "Trainer", record: dict) -> dict | None:
        """Before a record is stored/written; return a dict of extra JSON fields."""

    def on_rollback(self, trainer: "Trainer", event: dict) -> None:
        """After a NaN-guard rollback (state already restored)."""

    def on_end(self, trainer: "Trainer", history: TrainHistory) -> None:
        """After ``fit`` finished normally."""


# ---- helpers ----------------------------------------------------------------------------------
def _module_device(model: torch.nn.Module) -> torch.device:
    for t in model.parameters():
        return t.device
    for t in model.buffers():
        return t.device
    return torch.device("cpu")


class CheckpointMismatch(ValueError):
    """A checkpoint that does not fit the model or optimiser it is loaded into."""




def _np_state() -> dict:
    name, key, pos, has_gauss, gauss = np.random.get_state()
    return {"name": name, "key": torch.from_numpy(np.asarray(key, dtype=np.int64)), "pos": int(pos),
            "has_gauss": int(has_gauss), "gauss": float(gauss)}


def _set_np_state(s: dict) -> None:
    np.random.set_state((s["name"], s["key"].numpy().astype(np.uint32), s["pos"], s["has_gauss"], s["gauss"]))


def _json_default(o):
    if isinstance(o, Tensor):
        return o.detach().cpu().tolist()
    if isinstance(o, (np.generic, np.ndarray)):
        return o.tolist()
    return str(o)


def _atomic_write(path: Path, write: Callable[[Any], None], mode: str = "wb") -> None:
    """Write via a temporary file in the same directory and ``os.replace``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, mode) as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def _grad_norm(params, dtype, device) -> Tensor:
    grads = [p.grad.detach() for p in params if p.grad is not None]
    if not grads:
        return torch.zeros((), dtype=dtype, device=device)
    norms = torch._foreach_norm(grads) if hasattr(torch, "_foreach_norm") else [torch.linalg.vector_norm(g)
                                                                               for g in grads]
    return torch.linalg.vector_norm(torch.stack([n.to(device=device, dtype=dtype) for n in norms]))


def _fmt_terms(names, vals) -> str:
    return ", ".join(f"{n!r} = {v}" for n, v in zip(names, vals))


# ---- the trainer ------------------------------------------------------------------------------
class Trainer:
    """Adam (+ optional L-BFGS finish) on named loss terms; see the module doc.

    ``loss_fn(step, generator) -> dict[str, Tensor]`` (scalar terms, already weighted;
    a single tensor is taken as ``{"loss": t}``); resample collocation points with
    ``generator`` only. ``backward(terms, params) -> total`` replaces "sum, then
    ``.backward()``" (it must leave the gradients in ``p.grad``). ``extra_state``: an
    object with ``state_dict()/load_state_dict()`` saved and restored with the run.
    ``callbacks``: objects with any of :class:`Callback`'s methods.
    """

    def __init__(self, model: torch.nn.Module, loss_fn: Callable[[int, torch.Generator], Mapping[str, Tensor]], *,
                 config: TrainConfig, out_dir: str | Path | None = None, extra_state: Any = None,
                 callbacks=(), backward: Callable | None = None):
        if not isinstance(config, TrainConfig):
            raise TypeError(f"config must be a TrainConfig, got {type(config).__name__}")
        self.model = model
        self.loss_fn = loss_fn
        self.config = config
        self.out_dir = Path(out_dir) if out_dir is not None else None
        self.extra_state = extra_state
        self.callbacks = list(callbacks)
        self.backward = backward if backward is not None else sum_backward
        self.device = _module_device(model)
        d = _dist()
        self.rank = d.get_rank() if d else 0
        self.world_size = d.get_world_size() if d else 1
        self.params = [p for p in model.parameters() if p.requires_grad]
        if not self.params:
            raise ValueError("the model has no trainable parameters")
        self.generator = torch.Generator(device=self.device)
        self.generator.manual_seed(int(config.seed) + self.rank)
        self.optimizer = (torch.optim.AdamW(self.params, lr=config.lr, weight_decay=config.weight_decay)
                          if config.weight_decay > 0 else torch.optim.Adam(self.params, lr=config.lr))
        self.scheduler = config.schedule.scheduler(self.optimizer, int(config.steps))
        self.lbfgs: torch.optim.LBFGS | None = None
        self.history = TrainHistory()
        self.step = 0                # completed Adam steps
        self.lbfgs_step = 0          # completed L-BFGS iterations
        self.lr_scale = 1.0          # product of NaN-guard reductions of the Adam lr
        self.lbfgs_lr_scale = 1.0    # ... of the L-BFGS lr (rollbacks during L-BFGS)
        self.retries = 0             # rollbacks so far
        self._lbfgs_batch: Tensor | None = None     # generator state of the fixed L-BFGS batch
        self._stat_dtype = torch.float32 if self.device.type == "mps" else torch.float64
        self._elapsed = 0.0
        self._t0: float | None = None
        self._snapshot: dict | None = None
        self._saved_key = None
        self._in_update = False      # inside optimizer.step (parameters may be half-updated)
        self._step_rms = None        # RMS of the last logged Adam update / lr (module doc)
        self._open: dict | None = None       # RNG (+ extra_state) at the start of the running step
        self._bar = None

    # -- public helpers --
    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def checkpoint_path(self) -> Path | None:
        return self.out_dir / CHECKPOINT_NAME if self.out_dir is not None else None

    @property
    def metrics_path(self) -> Path | None:
        return self.out_dir / METRICS_NAME if self.out_dir is not None else None

    @property
    def global_step(self) -> int:
        return self.step + self.lbfgs_step

    @property
    def phase(self) -> str:
        if self.step < self.config.steps:
            return "adam"
        if self.lbfgs_step < self.config.lbfgs_steps:
            return "lbfgs"
        return "done"

    @property
    def elapsed(self) -> float:
        """Seconds of training, cumulative over resumed runs."""
        return self._elapsed + (time.perf_counter() - self._t0 if self._t0 is not None else 0.0)

    @property
    def lr(self) -> float:
        opt = self.lbfgs if self.phase == "lbfgs" and self.lbfgs is not None else self.optimizer
        return float(opt.param_groups[0]["lr"])

    # -- the loop --
    def fit(self, *, resume: bool = False) -> TrainHistory:
        """Train to ``config.steps`` (+ ``lbfgs_steps``). ``resume=True`` continues from
        ``out_dir/checkpoint.pt`` when it exists (otherwise starts fresh)."""
        cfg = self.config
        resumed = False
        path = self.checkpoint_path
        if resume and path is not None and path.exists():
            self.load_checkpoint(path)
            resumed = True
            logger.info("resuming from %s at step %d", path, self.global_step)
        elif resume:
            logger.info("resume requested but no checkpoint in %s; starting fresh", self.out_dir)
        if self.world_size > 1 and not resumed and self.global_step == 0:
            self._broadcast_model()
        self._in_update, self._open = False, None
        self._rewrite_metrics()
        if resumed:
            self._snapshot = self._capture()
            self._saved_key = (self.global_step, len(self.history))
        else:           # a fresh run replaces any older checkpoint at once
            self._saved_key = None
            self._checkpoint()
        self._t0 = time.perf_counter()
        self._bar = self._make_bar()
        try:
            while True:
                if self.step < cfg.steps:
                    self._adam_step()
                elif self.lbfgs_step < cfg.lbfgs_steps:
                    self._lbfgs_step()
                elif cfg.lbfgs_steps and not self._final_logged():
                    self._final_eval()
                else:
                    break
        except KeyboardInterrupt:
            self._save_on_interrupt()
            raise
        finally:
            if self._bar is not None:
                self._bar.close()
                self._bar = None
            self._elapsed = self.elapsed
            self._t0 = None
        self._checkpoint(force=True)
        d = _dist()
        if d is not None:
            d.barrier()
        for cb in self.callbacks:
            fn = getattr(cb, "on_end", None)
            if fn is not None:
                fn(self, self.history)
        return self.history

    def _call_loss(self, step: int) -> dict[str, Tensor]:
        terms = self.loss_fn(step, self.generator)
        if isinstance(terms, Tensor):
            terms = {"loss": terms}
        if not isinstance(terms, Mapping) or not terms:
            raise TypeError("loss_fn must return a non-empty dict of scalar tensors")
        for k, v in terms.items():
            if not isinstance(v, Tensor) or v.numel() != 1:
                raise TypeError(f"loss term {k!r} must be a scalar tensor, got "
                                f"{type(v).__name__}{'' if not isinstance(v, Tensor) else tuple(v.shape)}")
        return dict(terms)

    def _as_total(self, total) -> Tensor:
        if isinstance(total, Tensor):
            return total.detach().reshape(())
        return torch.tensor(float(total), device=self.device)

    def _stats(self, terms: Mapping[str, Tensor], total, gnorm: Tensor, extra: list[Tensor] = ()) -> list[float]:
        """[terms..., total, grad_norm, *extra] as floats (ONE device sync); terms and total
        averaged over ranks."""
        sd = self._stat_dtype
        vals = [t.detach().reshape(()).to(device=self.device, dtype=sd) for t in terms.values()]
        vals.append(self._as_total(total).to(device=self.device, dtype=sd))
        vec = torch.stack(vals)
        d = _dist()
        if d is not None and self.world_size > 1:
            vec = vec.clone()
            d.all_reduce(vec)
            vec = vec / self.world_size
        tail = [gnorm.to(device=self.device, dtype=sd).reshape(())] + [e.to(device=self.device, dtype=sd).reshape(())
                                                                        for e in extra]
        return torch.cat([vec, torch.stack(tail)]).tolist()

    @staticmethod
    def _nonfinite(names: list[str], vals: list[float]) -> tuple[list[str], str]:
        n = len(names)
        bad = [k for k, v in zip(names, vals[:n]) if not math.isfinite(v)]
        if bad:
            return bad, "loss term(s) " + _fmt_terms(bad, [vals[names.index(k)] for k in bad])
        if not math.isfinite(vals[n]):
            return ["total"], f"total loss = {vals[n]}"
        if not math.isfinite(vals[n + 1]):
            return ["grad_norm"], f"gradient norm = {vals[n + 1]} (terms finite: {_fmt_terms(names, vals[:n])})"
        return [], ""

    def _adam_step(self) -> None:
        cfg = self.config
        i = self.step
        self._open = self._step_start_state()
        self.optimizer.zero_grad(set_to_none=True)
        terms = self._call_loss(i)
        total = self.backward(terms, self.params)
        if not getattr(self.backward, "grads_global", False):    # a multi-task rule's update is already global
            self._sync_grads()
        gnorm = _grad_norm(self.params, self._stat_dtype, self.device)
        names = list(terms)
        vals = self._stats(terms, total, gnorm)
        bad, desc = self._nonfinite(names, vals)
        if bad:
            self._rollback(i, "adam", bad, desc)
            return
        if cfg.grad_clip is not None:
            coef = float(cfg.grad_clip) / (vals[len(names) + 1] + 1e-6)
            if coef < 1.0:
                for p in self.params:
                    if p.grad is not None:
                        p.grad.mul_(coef)
        lr = float(self.optimizer.param_groups[0]["lr"])
        logged = self._logged(i, first=i == 0, last=i + 1 == cfg.steps)
        before = torch.cat([p.detach().reshape(-1) for p in self.params]) if logged else None
        self._in_update = True
        self.optimizer.step()
        if before is not None:      # step_rms: RMS of the update over the parameters / lr (module doc)
            after = torch.cat([p.detach().reshape(-1) for p in self.params])
            self._step_rms = (after - before).double().pow(2).mean().sqrt() / lr
        self.scheduler.step()
        self.step += 1
        self._in_update = False
        self._open = None
        self._finish_step(i, "adam", lr, names, vals, first=i == 0, last=self.step == cfg.steps)

    def _make_lbfgs(self) -> torch.optim.LBFGS:
        return torch.optim.LBFGS(self.params, lr=float(self.config.lbfgs_lr) * self.lbfgs_lr_scale, max_iter=1,
                                 max_eval=26, line_search_fn="strong_wolfe")   # <= 25 line-search evaluations

    def _lbfgs_closure(self, first: dict):
        def closure():
            self.lbfgs.zero_grad(set_to_none=True)
            self.generator.set_state(self._lbfgs_batch)
            terms = self._call_loss(self.config.steps)
            total = self._as_total(self.backward(terms, self.params))
            if not getattr(self.backward, "grads_global", False):
                self._sync_grads()
            d = _dist()
            if d is not None and self.world_size > 1:
                total = total.clone()
                d.all_reduce(total)
                total = total / self.world_size
            if not first:
                first.update(terms={k: v.detach() for k, v in terms.items()}, total=total,
                             gnorm=_grad_norm(self.params, self._stat_dtype, self.device))
            return total
        return closure

    def _lbfgs_step(self) -> None:
        cfg = self.config
        if self.lbfgs is None:
            self._lbfgs_batch = self.generator.get_state()
            self.lbfgs = self._make_lbfgs()
        j = self.lbfgs_step
        gi = cfg.steps + j
        first: dict = {}
        lr = float(self.lbfgs.param_groups[0]["lr"])
        self._in_update = True
        self.lbfgs.step(self._lbfgs_closure(first))
        self.lbfgs_step += 1
        self._in_update = False
        ok = torch.stack([torch.isfinite(p.detach()).all() for p in self.params]).all()
        names = list(first["terms"])
        vals = self._stats(first["terms"], first["total"], first["gnorm"], [ok])
        bad, desc = self._nonfinite(names, vals)
        if not bad and vals[-1] != 1.0:
            bad, desc = ["parameters"], "parameters after the L-BFGS iteration"
        if bad:
            self._rollback(gi, "lbfgs", bad, desc)
            return
        self._finish_step(gi, "lbfgs", lr, names, vals[:-1], first=j == 0, last=self.lbfgs_step == cfg.lbfgs_steps)

    def _final_logged(self) -> bool:
        h = self.history
        return bool(h.steps) and h.steps[-1] == self.config.steps + self.config.lbfgs_steps and h.phase[-1] == "lbfgs"

    def _final_eval(self) -> None:
        """Record the loss at the parameters left by the last L-BFGS iteration."""
        if self.lbfgs is None:     # e.g. lbfgs_steps raised on resume of a finished run
            self._lbfgs_batch = self.generator.get_state()
            self.lbfgs = self._make_lbfgs()
        gi = self.config.steps + self.config.lbfgs_steps
        first: dict = {}
        self._lbfgs_closure(first)()
        names = list(first["terms"])
        vals = self._stats(first["terms"], first["total"], first["gnorm"])
        bad, desc = self._nonfinite(names, vals)
        if bad:
            self._rollback(gi, "lbfgs", bad, desc)
            return
        self._log(gi, "lbfgs", float(self.lbfgs.param_groups[0]["lr"]), names, vals)

    def _logged(self, gi: int, *, first: bool, last: bool) -> bool:
        """Whether step ``gi`` gets a record (first and last of a phase, every ``log_every``)."""
        return first or last or gi % self.config.log_every == 0

    def _finish_step(self, gi: int, phase: str, lr: float, names, vals, *, first: bool, last: bool) -> None:
        cfg = self.config
        n = len(names)
        stats = {"phase": phase, "loss": vals[n], "terms": dict(zip(names, vals[:n])), "lr": lr,
                 "grad_norm": vals[n + 1]}
        if self._logged(gi, first=first, last=last):
            self._log(gi, phase, lr, names, vals)
        for cb in self.callbacks:
            fn = getattr(cb, "on_step", None)
            if fn is not None:
                fn(self, gi, stats)
        done = self.global_step
        if cfg.checkpoint_every and done % cfg.checkpoint_every == 0:
            self._checkpoint()
        elif phase == "adam" and last and cfg.lbfgs_steps:
            self._checkpoint()           # phase boundary
        elif not cfg.checkpoint_every and done % cfg.log_every == 0:
            self._snapshot = self._capture()
        if self._bar is not None:
            big = max(range(n), key=lambda k: vals[k])
            self._bar.set_postfix_str(f"loss={vals[n]:.3e} {names[big]}={vals[big]:.2e} lr={lr:.2e}"
                                      + (" [L-BFGS]" if phase == "lbfgs" else ""), refresh=False)
            self._bar.update(done - self._bar.n)

    def _log(self, gi: int, phase: str, lr: float, names, vals) -> None:
        n = len(names)
        rec = {"step": gi, "phase": phase, "time": self.elapsed, "lr": lr, "loss": vals[n], "grad_norm": vals[n + 1],
               "terms": dict(zip(names, vals[:n]))}
        if phase == "adam" and self._step_rms is not None:
            rec["step_rms"] = float(self._step_rms)
        self._step_rms = None
        for cb in self.callbacks:
            fn = getattr(cb, "on_log", None)
            if fn is not None:
                extra = fn(self, rec)
                if extra:
                    rec.update(extra)
        self.history.append(rec)
        logger.debug("step %d: loss %.4e lr %.3e", gi, vals[n], lr)
        if self.is_main and self.metrics_path is not None:
            self.metrics_path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.metrics_path, "a") as f:
                f.write(json.dumps(self.history.record(len(self.history) - 1), default=_json_default) + "\n")

    def _rewrite_metrics(self) -> None:
        """``metrics.jsonl`` := the in-memory history (fresh start, resume, rollback)."""
        if not (self.is_main and self.metrics_path is not None):
            return
        lines = "".join(json.dumps(r, default=_json_default) + "\n" for r in self.history.records())
        _atomic_write(self.metrics_path, lambda f: f.write(lines), mode="w")

    def _make_bar(self):
        cfg = self.config
        if not cfg.progress or not self.is_main:
            return None
        from tqdm.auto import tqdm

        return tqdm(total=cfg.steps + cfg.lbfgs_steps, initial=self.global_step, desc="train", unit="step",
                    dynamic_ncols=True, disable=None, leave=True)

    # -- NaN guard --
    def _rollback(self, gi: int, phase: str, bad: list[str], desc: str) -> None:
        cfg = self.config
        self._in_update, self._open = False, None
        event = {"event": "nonfinite", "step": gi, "phase": phase, "terms": list(bad), "detail": desc}
        scale_name = "lbfgs_lr_scale" if phase == "lbfgs" else "lr_scale"
        if self.retries >= cfg.max_retries:
            self.history.events.append({**event, "action": "abort"})
            raise TrainingDiverged(f"non-finite {desc} at step {gi} ({phase}); giving up after {self.retries} "
                                   f"rollback(s) (max_retries={cfg.max_retries}, lr scale "
                                   f"{getattr(self, scale_name):g}); try a lower learning rate "
                                   f"(solver.training.lr) or a gradient clip (solver.training.grad_clip)",
                                   step=gi, terms=list(bad))
        snap = self._snapshot
        self.retries += 1
        setattr(self, scale_name, getattr(self, scale_name) * float(cfg.retry_lr_factor))
        scale = getattr(self, scale_name)
        back_to = snap["step"] + snap["lbfgs_step"]
        logger.warning("non-finite %s at step %d (%s): rolling back to step %d, %s lr scale -> %g (retry %d/%d)",
                       desc, gi, phase, back_to, "L-BFGS" if phase == "lbfgs" else "Adam", scale, self.retries,
                       cfg.max_retries)
        events = self.history.events + [{**event, "action": "rollback", "to_step": back_to, "lr_scale": scale}]
        self._restore(snap, copy_state=True)
        self.history.events = events
        self._apply_lr_scale(snap["lr_scale"], snap["lbfgs_lr_scale"])
        self._rewrite_metrics()
        if self._bar is not None:
            self._bar.n = self.global_step
            self._bar.refresh()
        for cb in self.callbacks:
            fn = getattr(cb, "on_rollback", None)
            if fn is not None:
                fn(self, events[-1])

    def _apply_lr_scale(self, restored_scale: float, restored_lbfgs_scale: float) -> None:
        """Scale the restored learning rates by the reductions made since the snapshot."""
        f = self.lr_scale / restored_scale
        if f != 1.0:
            for g in self.optimizer.param_groups:
                g["lr"] *= f
            if hasattr(self.scheduler, "base_lrs"):
                self.scheduler.base_lrs = [b * f for b in self.scheduler.base_lrs]
        f = self.lbfgs_lr_scale / restored_lbfgs_scale
        if f != 1.0 and self.lbfgs is not None:
            for g in self.lbfgs.param_groups:
                g["lr"] *= f

    # -- distributed --
    def _broadcast_model(self) -> None:
        d = _dist()
        with torch.no_grad():
            for t in self.model.state_dict().values():
                d.broadcast(t, src=0)

    def _sync_grads(self) -> None:
        d = _dist()
        if d is None or self.world_size == 1:
            return
        buckets: dict = {}
        for p in self.params:
            if p.grad is None:
                p.grad = torch.zeros_like(p)
            buckets.setdefault((p.grad.dtype, p.grad.device), []).append(p.grad)
        for grads in buckets.values():
            flat = torch.cat([g.reshape(-1) for g in grads])
            d.all_reduce(flat)
            flat /= self.world_size
            off = 0
            for g in grads:
                g.copy_(flat[off:off + g.numel()].view_as(g))
                off += g.numel()

    # -- state --
    def _rng_state(self) -> dict:
        s = {"generator": self.generator.get_state(), "torch": torch.get_rng_state(), "numpy": _np_state(),
             "random": random.getstate()}
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            s["cuda"] = torch.cuda.get_rng_state_all()
        return s

    def _step_start_state(self) -> dict:
        """What a step may change before the parameters are touched (for a clean Ctrl-C)."""
        return {"rng": self._rng_state(),
                "extra_state": copy.deepcopy(self.extra_state.state_dict()) if self.extra_state is not None else None}

    def _set_rng(self, s: dict) -> None:
        self.generator.set_state(s["generator"])
        torch.set_rng_state(s["torch"])
        _set_np_state(s["numpy"])
        st = s["random"]
        random.setstate((st[0], tuple(st[1]), st[2]))
        if "cuda" in s and torch.cuda.is_available() and len(s["cuda"]) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(s["cuda"])

    def _capture(self) -> dict:
        """Deep copy of this rank's full state at a step boundary."""
        return copy.deepcopy({
            "format": _FORMAT,
            "step": self.step, "lbfgs_step": self.lbfgs_step,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "lbfgs": self.lbfgs.state_dict() if self.lbfgs is not None else None,
            "lbfgs_batch": self._lbfgs_batch,
            "rng": self._rng_state(),
            "history": self.history.to_dict(),
            "lr_scale": self.lr_scale, "lbfgs_lr_scale": self.lbfgs_lr_scale, "retries": self.retries,
            "elapsed": self.elapsed,
            "extra_state": self.extra_state.state_dict() if self.extra_state is not None else None,
            "config": asdict(self.config),
        })

    def _restore(self, state: Mapping[str, Any], *, copy_state: bool) -> None:
        cp = copy.deepcopy if copy_state else (lambda x: x)
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(cp(state["optimizer"]))
        self.scheduler.load_state_dict(cp(state["scheduler"]))
        if state["lbfgs"] is not None:
            self.lbfgs = self._make_lbfgs()
            self.lbfgs.load_state_dict(cp(state["lbfgs"]))
        else:
            self.lbfgs = None
        self._lbfgs_batch = state["lbfgs_batch"].clone() if state["lbfgs_batch"] is not None else None
        self.step, self.lbfgs_step = int(state["step"]), int(state["lbfgs_step"])
        self._set_rng(state["rng"])
        self.history = TrainHistory.from_dict(state["history"])
        if self.extra_state is not None and state.get("extra_state") is not None:
            self.extra_state.load_state_dict(cp(state["extra_state"]))

    def state_dict(self) -> dict:
        """This rank's full training state (a deep copy)."""
        return self._capture()

    def save_checkpoint(self, path: str | Path | None = None, state: dict | None = None) -> Path | None:
        """Write the state (default: current) atomically to ``path`` (default
        ``out_dir/checkpoint.pt``). Collective under torch.distributed (RNG states of all
        ranks are gathered); only rank 0 writes."""
        path = Path(path) if path is not None else self.checkpoint_path
        if path is None:
            return None
        state = state if state is not None else self._capture()
        rngs = [state["rng"]]
        d = _dist()
        if d is not None and self.world_size > 1:
            rngs = [None] * self.world_size
            d.all_gather_object(rngs, state["rng"])
        if not self.is_main:
            return path
        obj = dict(state)
        obj["rng"] = rngs
        obj["world_size"] = self.world_size
        _atomic_write(path, lambda f: torch.save(obj, f))
        return path

    def load_checkpoint(self, path: str | Path) -> None:
        """Restore the full state (model, optimisers, RNGs, history, ...) from ``path``."""
        path = Path(path)
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception:  # custom objects in extra_state: our own file, load it fully
            state = torch.load(path, map_location="cpu", weights_only=False)
        if state.get("format") != _FORMAT:
            raise ValueError(f"{path}: not a sciml trainer checkpoint (format {state.get('format')!r})")
        rngs = state["rng"]
        if len(rngs) != self.world_size:
            logger.warning("%s was written by %d rank(s), now %d: RNG streams are not continued exactly",
                           path, len(rngs), self.world_size)
        state = dict(state)
        state["rng"] = rngs[self.rank % len(rngs)]
        try:
            self._restore(state, copy_state=False)
        except (RuntimeError, ValueError, KeyError) as exc:   # another network, optimiser or encoding
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise CheckpointMismatch(f"{path} was written for another model or optimiser ({first[:160]}); "
                                     "start fresh (without resume) or use another output directory") from None
        self.lr_scale = float(state["lr_scale"])
        self.lbfgs_lr_scale = float(state["lbfgs_lr_scale"])
        self.retries = int(state["retries"])
        self._elapsed = float(state["elapsed"])

    def _checkpoint(self, force: bool = False) -> None:
        """Take the in-memory rollback state and write it to disk (if ``out_dir``)."""
        key = (self.global_step, len(self.history))
        if force and key == self._saved_key:
            return
        self._snapshot = self._capture()
        if self.out_dir is not None:
            self.save_checkpoint(state=self._snapshot)
        self._saved_key = key

    def _save_on_interrupt(self) -> None:
        if self.out_dir is None:
            return
        if self.world_size > 1:
            logger.warning("interrupted: distributed run, keeping the last periodic checkpoint")
            return
        if self._in_update:
            state = self._snapshot
            logger.warning("interrupted inside an optimiser step: saving the last good state (step %d)",
                           state["step"] + state["lbfgs_step"])
        else:
            if self._open is not None:      # the running step had drawn samples: undo
                self._set_rng(self._open["rng"])
                if self.extra_state is not None:
                    self.extra_state.load_state_dict(self._open["extra_state"])
                self._open = None
            state = self._capture()
            logger.warning("interrupted: saving step %d", self.global_step)
        self.save_checkpoint(state=state)

"""The aggregator interface: a callable mapping the ``K x n`` matrix of task
gradients (one row per task, the flattened gradient of that task's loss with
respect to all ``n`` parameters) and optionally the ``K`` task losses to one update
of length ``n`` (a descent direction: the trainer steps along ``-update``, i.e. the
update is used in place of the summed gradient).

Aggregators are separate from models (in the spirit of TorchJD): they see only
matrices. Stateful ones (loss history, previous weights) expose ``state_dict`` and
``load_state_dict`` so that a resumed training run is exact.
"""
from __future__ import annotations

import abc

import torch


def check_matrix(G: torch.Tensor, losses: torch.Tensor | None = None) -> None:
    """Reject what no aggregator can handle, with a clear message (never NaN out)."""
    if not isinstance(G, torch.Tensor) or G.dim() != 2:
        raise ValueError(f"expected a K x n matrix of task gradients, got "
                         f"{tuple(G.shape) if isinstance(G, torch.Tensor) else type(G).__name__}")
    if G.shape[0] < 1 or G.shape[1] < 1:
        raise ValueError(f"empty task-gradient matrix {tuple(G.shape)}")
    bad = ~torch.isfinite(G).all(dim=1)
    if bad.any():
        raise ValueError(f"task gradient(s) {bad.nonzero().flatten().tolist()} contain NaN or Inf")
    if losses is not None:
        if losses.shape != (G.shape[0],):
            raise ValueError(f"expected {G.shape[0]} task losses, got shape {tuple(losses.shape)}")
        if not torch.isfinite(losses).all():
            raise ValueError(f"task loss(es) {(~torch.isfinite(losses)).nonzero().flatten().tolist()} are NaN or Inf")


def signature_options(obj) -> dict:
    """The keyword arguments of ``type(obj).__init__`` that have defaults, read back from
    ``obj``'s attributes of the same name (numbers and strings only): the options that
    rebuild ``obj``, its defaults written out."""
    import inspect

    out = {}
    for p in inspect.signature(type(obj).__init__).parameters.values():
        if p.name != "self" and p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD) and p.default is not p.empty:
            value = getattr(obj, p.name, None)
            if isinstance(value, (int, float, str)) and not isinstance(value, bool):
                out[p.name] = value
    return out


def unit_length(update: torch.Tensor) -> torch.Tensor:
    """``update / |update|`` (zero stays zero): the scale-free length that ``sum``, HRGrad
    and the baselines offer as ``length="unit"``."""
    return update / update.norm().clamp_min(torch.finfo(update.dtype).tiny)


class Aggregator(abc.ABC):
    """``update = aggregator(G, losses=None)`` (see module doc)."""

    name: str = "aggregator"

    def __call__(self, G: torch.Tensor, losses: torch.Tensor | None = None) -> torch.Tensor:
        check_matrix(G, losses)
        return self.aggregate(G, losses)

    @abc.abstractmethod
    def aggregate(self, G: torch.Tensor, losses: torch.Tensor | None) -> torch.Tensor:
        """The rule itself, on a checked matrix."""

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        if state:
            raise ValueError(f"{self.name} is stateless but got state {sorted(state)}")

    def stats(self) -> dict:
        """Counters the rule keeps about its own work (plain numbers, logged with the
        per-step diagnostics; e.g. how often a direction fell back); none by default."""
        return {}

    def options(self) -> dict:
        """The keyword options that rebuild this rule by name
        (``sciml.mtl.aggregator(self.name, **self.options())``), its defaults written out.
        A run's saved configuration records them, so that a later change of a default
        makes an earlier run a different configuration (``--resume`` and comparisons
        then do not take it for the new one)."""
        return signature_options(self)

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class Sum(Aggregator):
    """The plain summed loss: ``sum_i g_i`` (what an APNN trained on all tasks at
    once does without any aggregation). ``length="unit"`` divides it by its norm
    (normalised gradient descent; the control for HRGrad's ``length="unit"``: the
    same scale-free length with the summed loss's direction)."""

    name = "sum"

    def __init__(self, *, length: str = "sum"):
        if length not in ("sum", "unit"):
            raise ValueError(f"length must be 'sum' or 'unit', got {length!r}")
        self.length = length

    def aggregate(self, G, losses):
        g = G.sum(0)
        return unit_length(g) if self.length == "unit" else g

    def __repr__(self) -> str:
        return "Sum()" if self.length == "sum" else f"Sum(length={self.length!r})"


class Mean(Aggregator):
    """``mean_i g_i``."""

    name = "mean"

    def aggregate(self, G, losses):
        return G.mean(0)


def cosines(G: torch.Tensor, eps: float = 1e-30) -> torch.Tensor:
    """Pairwise cosines of the rows of ``G`` (``K x K``; rows of zero norm give 0)."""
    Gd = G.double()
    norms = Gd.norm(dim=1)
    U = Gd / norms.clamp_min(eps).unsqueeze(1)
    return (U @ U.T).to(G.dtype)


def diagnostics(G: torch.Tensor, update: torch.Tensor, losses: torch.Tensor | None = None) -> dict:
    """Per-step diagnostics: pairwise cosines of the task gradients, the cosine of the
    update with each task gradient, the task gradient norms and losses and, with the
    losses, each task's relative rate ``g_k . update / L_k`` (the first-order relative
    decrease of its loss per unit learning rate) (plain floats and lists, for
    metrics.jsonl)."""
    Gd, ud = G.double(), update.double()
    norms = Gd.norm(dim=1)
    un = ud.norm()
    dots = Gd @ ud
    cos_u = dots / (norms * un).clamp_min(1e-300)
    C = cosines(Gd)
    K = G.shape[0]
    iu = torch.triu_indices(K, K, 1)
    out = {"cos_tasks": C[iu[0], iu[1]].tolist(), "cos_update": cos_u.tolist(), "grad_norms": norms.tolist(),
           "update_norm": float(un), "min_cos_update": float(cos_u.min())}
    if losses is not None:
        L = losses.detach().double().to(dots.device)
        out["task_losses"] = L.tolist()
        out["rates"] = (dots / L.clamp_min(1e-300)).tolist()
    return out

"""Baselines from TorchJD (``torchjd.aggregation``, v0.18; the reference
implementations of its authors), behind our :class:`~sciml.mtl.Aggregator`
interface. We do not reimplement what it has:

============  ==========================================================  =====================
name          rule                                                         paper
============  ==========================================================  =====================
pcgrad        project each gradient off the others it conflicts with       Yu et al., NeurIPS 2020
imtlg         update with equal projections on every unit task gradient    Liu et al., ICLR 2021
mgda          minimum-norm point of the convex hull of the gradients       Désidéri 2012; Sener & Koltun, NeurIPS 2018
cagrad        maximise the worst local improvement near the mean gradient  Liu et al., NeurIPS 2021
nashmtl       Nash bargaining solution among the tasks                      Navon et al., ICML 2022
alignedmtl    align the principal components (condition number 1)          Senushkin et al., CVPR 2023
config        equal-cosine minimum-norm direction, projection-sum length  Liu, Chu, Thuerey, ICLR 2025
upgrad        average of projections onto the dual cone                    Quinton & Rey, TorchJD 2024
============  ==========================================================  =====================

Every baseline also takes ``length="unit"``: its update divided by its norm (the
direction is TorchJD's, the length is 1), the same scale-free length as HRGrad's
default and ``sum``'s ``length="unit"``, so that the directions can be compared at equal
length under Adam (docs/hrgrad-measurements.md); ``length="native"`` (default) keeps TorchJD's.

Caveat measured in the tests: TorchJD's UPGrad regularises the normalised Gramian
(``reg_eps = 1e-4``), so on task gradients whose norms span two decades it left one
task with cosine -0.027 to the update; HRGrad's positivity is exact there.
"""
from __future__ import annotations

import torch

from .base import Aggregator, unit_length


def _torchjd(name: str):
    try:
        from torchjd import aggregation
    except ImportError as exc:  # pragma: no cover - a declared dependency
        raise ImportError("the multi-task baselines need torchjd (pip install 'torchjd[full]')") from exc
    return getattr(aggregation, name)


LENGTHS = ("native", "unit")


def _check_options(name: str, cls_name: str, options: dict, supplied: tuple = ()) -> None:
    """An option TorchJD's class does not take is a ValueError naming the ones it does
    (``supplied``: arguments we pass ourselves), before the class is built; Nash-MTL
    is built only at its first step, so without this a wrong option would surface there."""
    import difflib
    import inspect

    params = inspect.signature(_torchjd(cls_name).__init__).parameters.values()
    if any(q.kind is q.VAR_KEYWORD for q in params):
        return
    allowed = [q.name for q in params if q.name != "self" and q.name not in supplied
               and q.kind in (q.KEYWORD_ONLY, q.POSITIONAL_OR_KEYWORD)] + ["length"]
    for key in options:
        if key not in allowed:
            close = difflib.get_close_matches(key, allowed, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ValueError(f"no option {key!r}{hint}; {name} takes: {', '.join(allowed)}")


def _full_options(cls_name: str, options: dict, length: str) -> dict:
    """``options`` with the defaults of TorchJD's class that are numbers or strings
    written out (Nash-MTL's ``n_tasks``, which we supply, has none), and ``length``
    (see :meth:`sciml.mtl.Aggregator.options`)."""
    import inspect

    params = inspect.signature(_torchjd(cls_name).__init__).parameters.values()
    defaults = {q.name: q.default for q in params if q.name != "self"
                and isinstance(q.default, (int, float, str)) and not isinstance(q.default, bool)}
    return {**defaults, **options, "length": length}


def _length(name: str, length: str) -> str:
    if length not in LENGTHS:
        raise ValueError(f"{name}: length must be one of {', '.join(map(repr, LENGTHS))}, got {length!r}")
    return length


def _scaled(update, length: str):
    return unit_length(update) if length == "unit" else update


class TorchJD(Aggregator):
    """A TorchJD aggregator. ``cls_name``: its class in ``torchjd.aggregation``;
    ``options``: its keyword arguments (kept as ``kwargs``); ``length``: ``"native"`` (TorchJD's update) or
    ``"unit"`` (divided by its norm). Computation in the matrix's dtype and device;
    stateful TorchJD aggregators (Nash-MTL) are reset by ``reset()``."""

    def __init__(self, name: str, cls_name: str, *, length: str = "native", **options):
        self.name = name
        self.cls_name = cls_name
        self.kwargs = options          # TorchJD's keyword arguments as given
        _check_options(name, cls_name, options)
        self.length = _length(name, length)
        self.impl = _torchjd(cls_name)(**options)

    def aggregate(self, G, losses):
        return _scaled(self.impl(G), self.length)

    def options(self) -> dict:
        return _full_options(self.cls_name, self.kwargs, self.length)

    def reset(self) -> None:
        if hasattr(self.impl, "reset"):
            self.impl.reset()

    def __repr__(self) -> str:
        opts = ", ".join(f"{k}={v!r}" for k, v in self.kwargs.items())
        unit = ", length='unit'" if self.length == "unit" else ""
        return f"TorchJD({self.cls_name}({opts}){unit})"


class NashMTL(TorchJD):
    """Nash-MTL needs the number of tasks up front; it is built at the first call.
    Its internal state (previous weights, step counter, the warm-started convex
    problem) is stateful, so ``state_dict`` holds the pickled TorchJD object (about
    20 kB) and a resumed run continues exactly."""

    def __init__(self, *, length: str = "native", **options):
        self.name = "nashmtl"
        self.cls_name = "NashMTL"
        self.kwargs = options          # TorchJD's keyword arguments as given
        _check_options(self.name, self.cls_name, options, supplied=("n_tasks",))
        self.length = _length(self.name, length)
        self.impl = None

    def aggregate(self, G, losses):
        if not bool(G.any()):           # no task moves: no update (TorchJD's convex problem fails on zeros)
            return torch.zeros(G.shape[1], dtype=G.dtype, device=G.device)
        if G.shape[0] == 1:             # alpha^2 |g|^2 = 1: the unit gradient (cvxpy rejects the 1 x 1 problem)
            update = G[0] / G[0].norm()
            cap = float(self.options()["max_norm"])
            return _scaled(update * cap if 0 < cap < 1 else update, self.length)
        gram_norm = float(torch.linalg.norm(G @ G.T))
        if not 0.0 < gram_norm < float("inf"):
            # G G^T under- or overflows in G's dtype (TorchJD divides by its norm): scale G
            # by a power of two; the Nash update alpha @ G does not depend on G's scale
            k = round(float(torch.log2(G.double().norm(dim=1).max())))
            G = G * 2.0 ** -k
        if self.impl is None or self.impl_tasks != G.shape[0]:
            self.impl = _torchjd("NashMTL")(n_tasks=G.shape[0], **self.kwargs)
            self.impl_tasks = G.shape[0]
        import warnings

        with warnings.catch_warnings():  # cvxpy's note that the problem is not DPP
            warnings.simplefilter("ignore", UserWarning)
            return _scaled(self.impl(G), self.length)

    def state_dict(self) -> dict:
        import pickle

        return {} if self.impl is None else {"pickle": pickle.dumps(self.impl), "tasks": self.impl_tasks}

    def load_state_dict(self, state: dict) -> None:
        import pickle

        if state:
            self.impl = pickle.loads(state["pickle"])
            self.impl_tasks = int(state["tasks"])
        else:
            self.impl = None


def baseline(name: str, cls_name: str):
    def make(**options) -> Aggregator:
        return TorchJD(name, cls_name, **options)
    make.__doc__ = f"TorchJD's {cls_name}."
    return make


BASELINES = {
    "pcgrad": baseline("pcgrad", "PCGrad"),
    "imtlg": baseline("imtlg", "IMTLG"),
    "mgda": baseline("mgda", "MGDA"),
    "cagrad": lambda c=0.4, **kw: TorchJD("cagrad", "CAGrad", c=c, **kw),
    "nashmtl": NashMTL,
    "alignedmtl": baseline("alignedmtl", "AlignedMTL"),
    "config": baseline("config", "ConFIG"),
    "upgrad": baseline("upgrad", "UPGrad"),
}

__all__ = ["BASELINES", "NashMTL", "TorchJD"]

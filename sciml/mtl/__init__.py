"""Multi-task gradient aggregation (see ``docs/hrgrad.md``).

``aggregator(name, **options)`` returns an :class:`Aggregator`: a callable mapping
the ``K x n`` task-gradient matrix (and optionally the ``K`` task losses) to one
update of length ``n``. HRGrad and the plain sum are ours; the published baselines
come from TorchJD (:mod:`sciml.mtl.library`).
"""
from __future__ import annotations

import difflib
import inspect

from .base import Aggregator, Mean, Sum, check_matrix, cosines, diagnostics
from .hrgrad import (ConflictScaled, EqualRates, HRGrad, LossRatioRates, MaxMinDirection, MinNormDirection,
                     ProjectionSum, ProportionalDirection, RelativeRates, GainRates, UnitLength, min_norm_weights,
                     proportional_weights)
from .backward import TaskBackward, task_of
from .library import BASELINES, TorchJD
from .weighting import DWA, FAMO, WEIGHTINGS, GradNorm, Uncertainty, Weighting

AGGREGATORS = {"sum": Sum, "mean": Mean, "hrgrad": HRGrad, **BASELINES}


def _lookup(table: dict, name: str, what: str):
    try:
        return table[name]
    except KeyError:
        close = difflib.get_close_matches(name, list(table), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ValueError(f"unknown {what} {name!r}{hint}; allowed: {', '.join(sorted(table))}") from None


def _build(factory, name: str, options: dict):
    """``factory(**options)``; an option it does not take is a ValueError naming the
    options it does take (when its signature lists them)."""
    params = inspect.signature(factory).parameters.values()
    if not any(p.kind is p.VAR_KEYWORD for p in params):
        allowed = [p.name for p in params if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)]
        for key in options:
            if key not in allowed:
                close = difflib.get_close_matches(key, allowed, n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                raise ValueError(f"no option {key!r}{hint}; {name} takes: {', '.join(allowed) or 'none'}")
    return factory(**options)


def aggregator(name: str, **options) -> Aggregator:
    """An aggregator by name (``sorted(AGGREGATORS)`` lists them) with its options."""
    return _build(_lookup(AGGREGATORS, name, "aggregator"), name, options)


def weighting(name: str, **options) -> Weighting:
    """A loss weighting by name (``sorted(WEIGHTINGS)``) with its options."""
    return _build(_lookup(WEIGHTINGS, name, "loss weighting"), name, options)


__all__ = ["AGGREGATORS", "Aggregator", "ConflictScaled", "DWA", "EqualRates", "FAMO", "GradNorm", "HRGrad",
           "LossRatioRates", "MaxMinDirection", "Mean", "MinNormDirection", "ProjectionSum", "ProportionalDirection", "RelativeRates", "GainRates", "Sum", "TaskBackward", "TorchJD", "UnitLength",
           "Uncertainty", "WEIGHTINGS", "Weighting", "aggregator", "check_matrix", "cosines", "diagnostics",
           "min_norm_weights", "proportional_weights", "task_of", "weighting"]

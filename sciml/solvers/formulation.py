"""What every learned (collocation) formulation shares: named, validated loss
weights, the trainer's ``loss(step, generator)`` contract (points resampled every
call), and chunked evaluation of its observables on the output grid.

A formulation is an ``nn.Module`` holding the networks of its unknowns. It
implements :meth:`sample` (a batch of named points), :meth:`residuals` (unweighted
mean-square terms on a batch) and :meth:`observables` (the reported fields at
points ``(t, x)``, e.g. ``{"rho": ...}``).
"""
from __future__ import annotations

import abc

import torch
from torch import nn


def mean_square(r: torch.Tensor) -> torch.Tensor:
    return r.pow(2).mean()


class Formulation(nn.Module, abc.ABC):
    default_weights: dict[str, float] = {}

    def __init__(self, weights: dict[str, float] | None = None):
        super().__init__()
        unknown = set(weights or {}) - set(self.default_weights)
        if unknown:
            raise ValueError(f"unknown loss weight(s) {sorted(unknown)}; allowed: {sorted(self.default_weights)}")
        self.weights = {**self.default_weights, **(weights or {})}

    @abc.abstractmethod
    def sample(self, generator: torch.Generator) -> dict:
        """A batch of named points for one step."""

    @abc.abstractmethod
    def residuals(self, batch) -> dict[str, torch.Tensor]:
        """Unweighted mean-square loss terms on a sampled batch."""

    @abc.abstractmethod
    def observables(self, t: torch.Tensor, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Reported fields at the points ``(t, x)``, each of shape ``(N,)``."""

    @property
    def device(self):
        return next(self.parameters()).device

    def loss(self, step: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
        """Weighted loss terms for the trainer (points resampled every call)."""
        terms = self.residuals(self.sample(generator))
        return {k: self.weights[k] * v for k, v in terms.items()}

    @torch.no_grad()
    def observables_grid(self, t: torch.Tensor, x: torch.Tensor, chunk: int = 65536) -> dict[str, torch.Tensor]:
        """Observables on the tensor grid ``t x x`` -> ``{name: (n_t, n_x)}``."""
        tt, xx = torch.meshgrid(t, x, indexing="ij")
        tt, xx = tt.reshape(-1), xx.reshape(-1)
        parts = [self.observables(tt[i:i + chunk], xx[i:i + chunk]) for i in range(0, tt.numel(), chunk)]
        return {k: torch.cat([p[k] for p in parts]).reshape(len(t), len(x)) for k in parts[0]}

    def diagnostics(self, times: torch.Tensor, x: torch.Tensor) -> dict[str, float]:
        """Physical checks reported as metrics after training (none by default)."""
        return {}

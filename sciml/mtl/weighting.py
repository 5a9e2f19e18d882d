r"""Loss weightings: rules that turn the ``K`` task losses (and, for GradNorm, the
task gradient norms) into scalar weights ``w``, the update then being the gradient
of ``sum_k w_k L_k`` (one backward). Each is stateful (loss history or its own
parameters) and exposes ``state_dict``/``load_state_dict``.

=============  =================================================================  =========================
name           rule                                                                paper
=============  =================================================================  =========================
dwa            ``w = K softmax(r / T)``, ``r_k = L_k(t-1) / L_k(t-2)``             Liu, Johns, Davison, CVPR 2019
uncertainty    ``sum_k exp(-s_k) L_k + s_k`` with learned ``s_k = log sigma_k^2``   Kendall, Gal, Cipolla, CVPR 2018
gradnorm       weights learned so that ``w_k |grad L_k|`` follows                  Chen et al., ICML 2018
               ``mean_j(w_j |grad L_j|) (L_k/L_k(0) / mean)^alpha``
famo           logits ``xi``, ``z = softmax(xi)``; update along                    Liu et al., NeurIPS 2023
               ``sum_k c z_k / L_k grad L_k``; ``xi`` follows the observed
               decrease of ``log L``
=============  =================================================================  =========================

A weighting is called as ``w = weighting(losses, grad_norms=None)`` once per step
BEFORE the backward (its own parameters, if any, are updated inside the call from
the information it has); ``w`` is detached.
"""
from __future__ import annotations

import abc

import torch

from .base import signature_options


class Weighting(abc.ABC):
    name = "weighting"
    needs_grad_norms = False

    def __call__(self, losses: torch.Tensor, grad_norms: torch.Tensor | None = None) -> torch.Tensor:
        losses = losses.detach().double().cpu()
        if losses.dim() != 1 or not torch.isfinite(losses).all():
            raise ValueError(f"expected K finite task losses, got {losses.tolist()}")
        if self.needs_grad_norms:
            if grad_norms is None or grad_norms.shape != losses.shape:
                raise ValueError(f"{self.name} needs the {losses.numel()} task gradient norms")
            grad_norms = grad_norms.detach().double().cpu()
        return self.weights(losses, grad_norms)

    @abc.abstractmethod
    def weights(self, losses: torch.Tensor, grad_norms: torch.Tensor | None) -> torch.Tensor:
        ...

    def options(self) -> dict:
        """The keyword options that rebuild this weighting by name, its defaults written
        out (see :meth:`sciml.mtl.Aggregator.options`)."""
        return signature_options(self)

    def state_dict(self) -> dict:
        return {k: (v.clone() if isinstance(v, torch.Tensor) else v) for k, v in vars(self).items()
                if not k.startswith("_")}

    def load_state_dict(self, state: dict) -> None:
        for k, v in state.items():
            setattr(self, k, v.clone() if isinstance(v, torch.Tensor) else v)


class DWA(Weighting):
    """Dynamic weight average (see module doc); equal weights for the first two steps."""

    name = "dwa"

    def __init__(self, temperature: float = 2.0):
        if not temperature > 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        self.temperature = float(temperature)
        self.history: list = []

    def weights(self, losses, grad_norms):
        K = losses.numel()
        self.history = (self.history + [losses.clone()])[-3:]
        if len(self.history) < 3:
            return torch.ones(K, dtype=torch.float64)
        r = self.history[-2] / self.history[-3].clamp_min(1e-300)
        return K * torch.softmax(r / self.temperature, 0)


class Uncertainty(Weighting):
    """Homoscedastic uncertainty weighting: ``w_k = exp(-s_k)``; ``s`` follows the
    gradient of ``sum_k exp(-s_k) L_k + s_k`` (``d/ds_k = 1 - exp(-s_k) L_k``, so at
    the optimum ``exp(s_k) = L_k``) with its own Adam (learning rate ``lr``)."""

    name = "uncertainty"

    def __init__(self, lr: float = 1e-2):
        self.lr = float(lr)
        self.s: torch.Tensor | None = None
        self.m: torch.Tensor | None = None
        self.v: torch.Tensor | None = None
        self.t = 0

    def weights(self, losses, grad_norms):
        if self.s is None:
            self.s = torch.zeros_like(losses)
            self.m, self.v = torch.zeros_like(losses), torch.zeros_like(losses)
        w = torch.exp(-self.s)
        g = 1.0 - w * losses
        self.t += 1
        self.m = 0.9 * self.m + 0.1 * g
        self.v = 0.999 * self.v + 0.001 * g * g
        mh, vh = self.m / (1 - 0.9 ** self.t), self.v / (1 - 0.999 ** self.t)
        self.s = self.s - self.lr * mh / (vh.sqrt() + 1e-8)
        return w


class GradNorm(Weighting):
    """GradNorm (see module doc): ``w`` descends ``sum_k |w_k n_k - target_k|`` with
    ``n_k`` the task gradient norms (of the shared parameters), ``target_k =
    mean_j(w_j n_j) (l_k / mean l)^alpha``, ``l_k = L_k / L_k(0)``; then renormalised
    to ``sum w = K``. Learning rate ``lr`` (plain gradient steps on ``w``)."""

    name = "gradnorm"
    needs_grad_norms = True

    def __init__(self, alpha: float = 1.5, lr: float = 0.025):
        self.alpha, self.lr = float(alpha), float(lr)
        self.w: torch.Tensor | None = None
        self.initial: torch.Tensor | None = None

    def weights(self, losses, grad_norms):
        K = losses.numel()
        if self.w is None:
            self.w, self.initial = torch.ones(K, dtype=torch.float64), losses.clone()
        current = self.w.clone()
        rel = losses / self.initial.clamp_min(1e-300)
        target = (current * grad_norms).mean() * (rel / rel.mean()) ** self.alpha
        # d/dw_k |w_k n_k - target_k| (target held constant, as in the paper)
        grad = torch.sign(current * grad_norms - target) * grad_norms
        w = (current - self.lr * grad).clamp_min(1e-6)
        self.w = w * K / w.sum()
        return current


class FAMO(Weighting):
    """Fast adaptive multitask optimisation (see module doc). Weights returned for
    ``sum_k w_k L_k`` are ``w_k = c z_k / L_k`` with ``c = 1 / sum_k(z_k / L_k)``
    (the gradient of ``sum_k z_k log L_k`` rescaled); at the next call the logits
    ``xi`` take a step ``beta`` along ``-J_softmax^T (log L_prev - log L_now)`` with
    weight decay ``gamma``."""

    name = "famo"

    def __init__(self, beta: float = 0.025, gamma: float = 0.001, min_loss: float = 1e-12):
        self.beta, self.gamma, self.min_loss = float(beta), float(gamma), float(min_loss)
        self.xi: torch.Tensor | None = None
        self.prev: torch.Tensor | None = None

    def weights(self, losses, grad_norms):
        L = losses.clamp_min(self.min_loss)
        if self.xi is None:
            self.xi = torch.zeros_like(L)
        if self.prev is not None:
            delta = torch.log(self.prev) - torch.log(L)            # observed decrease of log L
            z = torch.softmax(self.xi, 0)
            J = torch.diag(z) - torch.outer(z, z)                  # d softmax / d xi
            self.xi = self.xi - self.beta * (J.T @ delta + self.gamma * self.xi)
        self.prev = L.clone()
        z = torch.softmax(self.xi, 0)
        c = 1.0 / (z / L).sum()
        return c * z / L


WEIGHTINGS = {"dwa": DWA, "uncertainty": Uncertainty, "gradnorm": GradNorm, "famo": FAMO}

"""How a network sees a conditioning scalar (the eps encoding of multi-task runs).

A conditioned network takes ``(N, d + 1)`` inputs whose *last* column is the
encoding ``c`` (``log10 eps`` normalised onto ``[-1, 1]``). Three strategies, each a
small object whose ``wrap(net)`` returns the module to use in place of ``net`` (an
:class:`~sciml.nn.layers.MLP` or :class:`~sciml.nn.layers.ResNet` built for
``d + 1`` inputs):

* :class:`InputEncoding` — ``c`` is one more input column; the first layer mixes it
  with the coordinates (the plain choice, and the default).
* :class:`Embedding` — ``c`` goes through a small network ``E: R -> R^m``
  (``Linear, tanh, Linear``) and the ``m`` features are appended to the
  coordinates: a learned, nonlinear code of eps (a "hidden representation of eps",
  property (1) of the HRGrad abstract, arXiv 2604.24745).
* :class:`FiLM` — feature-wise linear modulation (Perez et al., AAAI 2018,
  arXiv 1709.07871): after every hidden stage ``h -> (1 + gamma_l(c)) * h + beta_l(c)``
  with ``(gamma_l, beta_l)`` from one small network of ``c``. The base network
  sees the coordinates only. The modulation network's last layer starts at zero,
  so at initialisation every task sees the same function of the coordinates and
  eps enters through training alone.

``wrap(net, constant_code=True)`` promises that every call carries one code in all
its rows (a multi-task run evaluates each task on its own, so
:class:`~sciml.solvers.multitask.MultiTask` passes it): FiLM then runs its modulation
network on one row and broadcasts, instead of on every point (the modulation is as
large as the base network, so this halves the forward work; training steps of the
seven-eps linear transport run 2.6x faster, ``benchmarks/mtl.py --encodings``).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .layers import xavier_


def _rebuild(net: nn.Module, in_dim: int) -> nn.Module:
    """A fresh network of ``net``'s class and sizes with ``in_dim`` inputs."""
    try:
        return type(net)(in_dim, net.out_dim, width=net.width, depth=net.depth, act=net.act)
    except AttributeError:
        raise TypeError(f"cannot condition a {type(net).__name__}: it needs out_dim, width, depth, act") from None


def _small(out_dim: int, width: int) -> nn.Sequential:
    return xavier_(nn.Sequential(nn.Linear(1, width), nn.Tanh(), nn.Linear(width, out_dim)))


@dataclass(frozen=True)
class InputEncoding:
    """The encoding is one more input column (nothing to wrap)."""

    def wrap(self, net: nn.Module, *, constant_code: bool = False) -> nn.Module:
        return net


class EmbeddedNet(nn.Module):
    def __init__(self, net: nn.Module, dim: int, width: int):
        super().__init__()
        self.embed = _small(dim, width)
        self.net = _rebuild(net, net.in_dim - 1 + dim)
        self.in_dim, self.out_dim = net.in_dim, net.out_dim

    def forward(self, x):
        coords, c = x[..., :-1], x[..., -1:]
        return self.net(torch.cat([coords, torch.tanh(self.embed(c))], dim=-1))


@dataclass(frozen=True)
class Embedding:
    """``c -> tanh(E(c))`` in ``R^dim`` appended to the coordinates."""

    dim: int = 8
    width: int = 32

    def __post_init__(self):
        if self.dim < 1 or self.width < 1:
            raise ValueError(f"Embedding needs dim >= 1 and width >= 1, got dim={self.dim}, width={self.width}")

    def wrap(self, net: nn.Module, *, constant_code: bool = False) -> nn.Module:
        return EmbeddedNet(net, self.dim, self.width)


class FiLMNet(nn.Module):
    def __init__(self, net: nn.Module, width: int, constant_code: bool = False):
        super().__init__()
        self.constant_code = constant_code
        self.net = _rebuild(net, net.in_dim - 1)
        stages = self.net.stages()
        self.__dict__["_stages"] = stages      # views of self.net's layers, not registered twice
        self.n_stages = len(stages)
        self.modulation = _small(2 * self.n_stages * self.net.width, width)
        nn.init.zeros_(self.modulation[-1].weight)     # identity modulation at initialisation
        nn.init.zeros_(self.modulation[-1].bias)
        self.in_dim, self.out_dim = net.in_dim, net.out_dim

    def forward(self, x):
        h, c = x[..., :-1], x[..., -1:]
        if self.constant_code:        # one code per call: modulate from its first row, broadcast
            c = c[..., :1, :]
        gb = self.modulation(c).unflatten(-1, (self.n_stages, 2, self.net.width))
        for i, stage in enumerate(self._stages):
            h = stage(h)
            h = (1.0 + gb[..., i, 0, :]) * h + gb[..., i, 1, :]
        return self.net.head(h)


@dataclass(frozen=True)
class FiLM:
    """Per-stage ``(1 + gamma(c)) h + beta(c)`` (see the module doc)."""

    width: int = 32

    def __post_init__(self):
        if self.width < 1:
            raise ValueError(f"FiLM needs width >= 1, got {self.width}")

    def wrap(self, net: nn.Module, *, constant_code: bool = False) -> nn.Module:
        if not hasattr(net, "stages"):
            raise TypeError(f"FiLM needs a network with hidden stages (MLP, ResNet), got {type(net).__name__}")
        return FiLMNet(net, self.width, constant_code)


ENCODINGS = {"input": InputEncoding, "embedding": Embedding, "film": FiLM}

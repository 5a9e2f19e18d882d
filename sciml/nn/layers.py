"""Networks: MLP and ResNet (tanh / swish / sin), Xavier initialisation."""
from __future__ import annotations

import torch
from torch import nn


class Sin(nn.Module):
    def forward(self, x):
        return torch.sin(x)


ACTIVATIONS = {"tanh": nn.Tanh, "swish": nn.SiLU, "silu": nn.SiLU, "sin": Sin, "gelu": nn.GELU}


def activation(name: str) -> nn.Module:
    try:
        return ACTIVATIONS[name]()
    except KeyError:
        raise ValueError(f"unknown activation {name!r}; allowed: {sorted(ACTIVATIONS)}") from None


def xavier_(module: nn.Module) -> nn.Module:
    """Xavier-normal weights and zero biases for every Linear layer."""
    for m in module.modules():
        if isinstance(m, nn.Linear):
            nn.init.xavier_normal_(m.weight)
            nn.init.zeros_(m.bias)
    return module


class MLP(nn.Module):
    """``depth`` hidden layers of ``width`` units, activation between them, linear output."""

    def __init__(self, in_dim: int, out_dim: int, width: int = 128, depth: int = 4, act: str = "tanh"):
        super().__init__()
        if depth < 1 or width < 1:
            raise ValueError(f"MLP needs depth >= 1 and width >= 1, got depth={depth}, width={width}")
        layers: list[nn.Module] = [nn.Linear(in_dim, width), activation(act)]
        for _ in range(depth - 1):
            layers += [nn.Linear(width, width), activation(act)]
        layers.append(nn.Linear(width, out_dim))
        self.net = nn.Sequential(*layers)
        self.in_dim, self.out_dim = in_dim, out_dim
        self.width, self.depth, self.act = width, depth, act
        xavier_(self)

    def forward(self, x):
        return self.net(x)

    def stages(self) -> list[nn.Module]:
        """The hidden stages (each ends in a ``width``-wide activation), in order;
        ``head`` maps the last one to the output. Used by FiLM conditioning."""
        mods = list(self.net)
        return [nn.Sequential(mods[i], mods[i + 1]) for i in range(0, len(mods) - 1, 2)]

    @property
    def head(self) -> nn.Module:
        return self.net[-1]


class ResidualBlock(nn.Module):
    """``x + act(W2 act(W1 x))`` (the ResNet block of the APNN papers)."""

    def __init__(self, width: int, act: str = "tanh"):
        super().__init__()
        self.l1, self.l2 = nn.Linear(width, width), nn.Linear(width, width)
        self.a1, self.a2 = activation(act), activation(act)

    def forward(self, x):
        return x + self.a2(self.l2(self.a1(self.l1(x))))


class ResNet(nn.Module):
    """Input layer, ``depth`` residual blocks of ``width`` units, linear output."""

    def __init__(self, in_dim: int, out_dim: int, width: int = 128, depth: int = 4, act: str = "tanh"):
        super().__init__()
        if depth < 1 or width < 1:
            raise ValueError(f"ResNet needs depth >= 1 and width >= 1, got depth={depth}, width={width}")
        self.inp = nn.Sequential(nn.Linear(in_dim, width), activation(act))
        self.blocks = nn.Sequential(*[ResidualBlock(width, act) for _ in range(depth)])
        self.out = nn.Linear(width, out_dim)
        self.in_dim, self.out_dim = in_dim, out_dim
        self.width, self.depth, self.act = width, depth, act
        xavier_(self)

    def forward(self, x):
        return self.out(self.blocks(self.inp(x)))

    def stages(self) -> list[nn.Module]:
        """Input layer, then each residual block (see :meth:`MLP.stages`)."""
        return [self.inp, *self.blocks]

    @property
    def head(self) -> nn.Module:
        return self.out


ARCHITECTURES = {"mlp": MLP, "resnet": ResNet}

"""Networks: MLP/ResNet, named-input fields, parity wrappers, output transforms."""
from .field import OUTPUTS, Affine, Even, Exp, Field, Identity, Odd, Softplus, TimesExp, Walls, build_field
from .layers import ACTIVATIONS, ARCHITECTURES, MLP, ResNet, activation, xavier_

__all__ = ["OUTPUTS", "Affine", "Even", "Exp", "Field", "Identity", "Odd", "Softplus", "TimesExp", "Walls",
           "build_field", "ACTIVATIONS", "ARCHITECTURES", "MLP", "ResNet", "activation", "xavier_"]

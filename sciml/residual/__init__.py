"""Residual engine: batched input derivatives and velocity moments."""
from .derivatives import ENGINES, Forward, Reverse, derivatives
from .moments import QuadratureProduct, moments

__all__ = ["ENGINES", "Forward", "Reverse", "derivatives", "QuadratureProduct", "moments"]

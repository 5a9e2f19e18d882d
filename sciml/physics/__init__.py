"""Physics: equations and problem data (no numerics)."""
from .linear_transport import Inflow, LinearTransportProblem, Periodic

__all__ = ["Inflow", "LinearTransportProblem", "Periodic"]

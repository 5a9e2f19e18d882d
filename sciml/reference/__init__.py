"""Classical reference solvers (numpy/scipy) used to validate the learned solvers."""
from .linear_transport import Inflow, LTReferenceResult, Periodic, solve_linear_transport

__all__ = ["Inflow", "LTReferenceResult", "Periodic", "solve_linear_transport"]

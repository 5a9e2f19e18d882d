"""Physics: equations and problem data (no numerics)."""
from .bgk import BGKProblem, MaxwellianWall, maxwellian
from .linear_transport import Inflow, LinearTransportProblem, Periodic

__all__ = ["BGKProblem", "Inflow", "LinearTransportProblem", "MaxwellianWall", "Periodic", "maxwellian"]

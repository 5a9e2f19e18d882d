"""Domain layer: coordinates, velocity quadrature, grids and samplers."""
from .geometry import Box, Interval, Points, TimeInterval, n_points, stack_points, unstack_points
from .grids import cell_centres, tensor_grid, uniform
from .samplers import SAMPLERS, Grid, Sobol, Uniform
from .velocity import VelocitySpace

__all__ = [
    "Box", "Interval", "Points", "TimeInterval", "n_points", "stack_points", "unstack_points",
    "cell_centres", "tensor_grid", "uniform", "SAMPLERS", "Grid", "Sobol", "Uniform", "VelocitySpace",
]

"""Domain layer: coordinates, velocity quadrature, grids and samplers."""
from .geometry import Box, Interval, Points, TimeInterval, n_points, stack_points, unstack_points
from .grids import cell_centres, tensor_grid, uniform
from .regions import REGIONS, Annulus, BoundaryPoints, BoxRegion, Disk, LShape, Region
from .samplers import SAMPLERS, Grid, Sobol, Uniform
from .velocity import VelocitySpace

__all__ = [
    "Box", "Interval", "Points", "TimeInterval", "n_points", "stack_points", "unstack_points",
    "REGIONS", "Annulus", "BoundaryPoints", "BoxRegion", "Disk", "LShape", "Region",
    "cell_centres", "tensor_grid", "uniform", "SAMPLERS", "Grid", "Sobol", "Uniform", "VelocitySpace",
]

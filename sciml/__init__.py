"""sciml: scientific machine learning for kinetic equations and PDEs.

``sciml.solve(path_or_config, ...)`` solves a configured problem, ``sciml.load(run_dir)``
reads a saved one back; see the README.
"""
__version__ = "0.1.0"


def solve(*args, **kwargs):
    """See :func:`sciml.api.solve` (imported lazily: no import-time work)."""
    from .api import solve as _solve

    return _solve(*args, **kwargs)


def load(path):
    """A saved run (its folder or ``result.h5``) back as a :class:`~sciml.solvers.base.Solution`."""
    from .solvers.base import Solution

    return Solution.load(path)


__all__ = ["solve", "load", "__version__"]

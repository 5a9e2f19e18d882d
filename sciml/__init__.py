"""sciml: scientific machine learning for kinetic equations and PDEs.

``sciml.solve(path_or_config, ...)`` solves a configured problem; see the README.
"""
__version__ = "0.1.0"


def solve(*args, **kwargs):
    """See :func:`sciml.api.solve` (imported lazily: no import-time work)."""
    from .api import solve as _solve

    return _solve(*args, **kwargs)


__all__ = ["solve", "__version__"]

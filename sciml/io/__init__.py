"""Input/output: HDF5 results."""
from .results import git_revision, read_result, versions, write_result

__all__ = ["git_revision", "read_result", "versions", "write_result"]

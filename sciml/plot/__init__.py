"""Figures (matplotlib object API)."""
from .figures import error_bars, grouped_bars, profiles, task_diagnostics, training_curves

__all__ = ["error_bars", "grouped_bars", "profiles", "task_diagnostics", "training_curves"]

"""Figures (matplotlib object API)."""
from .figures import error_bars, profiles, training_curves

__all__ = ["error_bars", "profiles", "training_curves"]

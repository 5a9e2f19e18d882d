"""Figures (matplotlib object API)."""
from .figures import (comparison_chart, error_bars, field_2d, grouped_bars, profile_panels, profiles, task_diagnostics,
                      training_curves)

__all__ = ["comparison_chart", "error_bars", "field_2d", "grouped_bars", "profile_panels", "profiles", "task_diagnostics", "training_curves"]

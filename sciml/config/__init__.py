"""Configuration: YAML -> validated typed objects, safe expressions."""
from .errors import ConfigError
from .loader import LoadedRun, available_presets, config_differences, load_run, read_yaml

__all__ = ["ConfigError", "LoadedRun", "available_presets", "config_differences", "load_run", "read_yaml"]

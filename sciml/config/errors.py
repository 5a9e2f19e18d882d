"""The one error type of the configuration layer."""
from __future__ import annotations


class ConfigError(Exception):
    """A configuration value is wrong.

    ``path`` is the dotted key path (``"solver.training.steps"``, list items as
    ``"output.times[2]"``, ``""`` for the root), ``message`` says what is wrong and
    what is allowed, ``source`` names the file it came from (optional).
    """

    def __init__(self, path: str, message: str, *, source: str | None = None):
        self.path = path
        self.message = message
        self.source = source
        super().__init__(path, message)

    def __str__(self) -> str:
        where = f" at {self.path}" if self.path else ""
        src = f" (in {self.source})" if self.source else ""
        return f"config error{where}: {self.message}{src}"

    def __reduce__(self):  # keep ``source`` when pickled (e.g. across processes)
        return (_rebuild, (self.path, self.message, self.source))

    def with_source(self, source: str | None) -> "ConfigError":
        """The same error naming ``source`` (unchanged if it already names one)."""
        return self if self.source is not None else ConfigError(self.path, self.message, source=source)


def _rebuild(path, message, source):
    return ConfigError(path, message, source=source)

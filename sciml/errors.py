"""Errors a user can act on that are not configuration errors (those are
:class:`sciml.config.ConfigError`, exit code 2): a run that stopped for a numerical
reason its message explains. The command line prints the message in one line and
exits with code 1. A leaf module: it imports nothing of sciml."""


class SolveFailed(RuntimeError):
    """A solve or a training that could not finish; the message says why and what to try."""

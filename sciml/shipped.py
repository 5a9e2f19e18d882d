"""Where the files that ship beside the package live.

sciml runs from a source checkout (``pip install -e .``, as the README installs it):
the problems, solver presets, validation entries and data (``problems/``,
``solvers/``, ``validation/``, ``data/``) sit next to the ``sciml/`` package. Every
module that looks for one of them asks here, so that they are found from any working
directory. A leaf module: it imports nothing of sciml.
"""
from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def path(*parts: str) -> Path:
    """``path("solvers", "x.yaml")`` -> that file or folder of the checkout."""
    return ROOT.joinpath(*parts)


def search_dirs(name: str) -> list[Path]:
    """``name`` (e.g. ``"problems"``) in the working directory, then in the checkout:
    the folders that exist, each once."""
    out: list[Path] = []
    for d in (Path.cwd() / name, path(name)):
        if d.is_dir() and d.resolve() not in [x.resolve() for x in out]:
            out.append(d)
    return out

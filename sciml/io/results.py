"""HDF5 results: one writer for every solver.

Layout of ``result.h5``::

    /grid/<coord>        1-D coordinate arrays (e.g. /grid/t, /grid/x)
    /fields/<name>       arrays on the grid (e.g. /fields/rho with shape (n_t, n_x)),
                         attribute ``dims`` lists the coordinate names of each axis
    /reference/<name>    the reference fields, when a reference exists
    /metrics             attributes: scalar metrics (errors, timings, ...)
    /history/<name>      training curves (step, loss, per-term losses), optional
    root attributes      config (YAML text), versions (JSON), device, dtype, seed,
                         git_revision, created, solver

The file is written to a temporary name in the same directory and renamed when
complete, so an interrupted run never leaves a half-written result.
"""
from __future__ import annotations

import json
import os
import platform
import subprocess
import tempfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Mapping

import h5py
import numpy as np


def versions() -> dict[str, str]:
    """Versions of Python and the packages a result depends on."""
    import importlib.metadata as md

    out = {"python": platform.python_version()}
    for pkg in ("sciml", "torch", "numpy", "scipy", "h5py", "matplotlib", "pyyaml"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            out[pkg] = "not installed"
    return out


def git_revision(path: str | Path | None = None) -> str:
    """``git describe``-style revision of the source tree, or ``"unknown"``."""
    here = Path(path or Path(__file__).resolve().parent)
    try:
        rev = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=5)
        if rev.returncode != 0:
            return "unknown"
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=here,
                               capture_output=True, text=True, timeout=5)
        return rev.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def _attr(value: Any):
    if isinstance(value, (dict, list, tuple)):
        return json.dumps(value)
    if value is None:
        return "null"
    return value


def write_result(path: str | Path, *, grid: Mapping[str, np.ndarray], fields: Mapping[str, np.ndarray],
                 dims: Mapping[str, tuple[str, ...]] | None = None, metrics: Mapping[str, Any] | None = None,
                 reference: Mapping[str, np.ndarray] | None = None, history: Mapping[str, np.ndarray] | None = None,
                 attrs: Mapping[str, Any] | None = None) -> Path:
    """Write ``result.h5`` atomically (see module doc). Returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".h5", dir=path.parent)
    os.close(fd)
    try:
        with h5py.File(tmp, "w") as h:
            g = h.create_group("grid")
            for k, v in grid.items():
                g.create_dataset(k, data=np.asarray(v))
            f = h.create_group("fields")
            for k, v in fields.items():
                ds = f.create_dataset(k, data=np.asarray(v), compression="gzip" if np.asarray(v).size > 4096 else None)
                if dims and k in dims:
                    ds.attrs["dims"] = json.dumps(list(dims[k]))
            if reference:
                r = h.create_group("reference")
                for k, v in reference.items():
                    r.create_dataset(k, data=np.asarray(v))
            m = h.create_group("metrics")
            for k, v in (metrics or {}).items():
                m.attrs[k] = _attr(v)
            if history:
                hg = h.create_group("history")
                for k, v in history.items():
                    hg.create_dataset(k, data=np.asarray(v))
            base = {"versions": versions(), "git_revision": git_revision(),
                    "created": datetime.now(timezone.utc).isoformat(timespec="seconds")}
            for k, v in {**base, **(attrs or {})}.items():
                h.attrs[k] = _attr(v)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    return path


def read_result(path: str | Path) -> dict[str, Any]:
    """Read a ``result.h5`` back into plain dicts (grid, fields, reference, metrics, history,
    attrs, and the dims of each field that has them)."""
    out: dict[str, Any] = {"grid": {}, "fields": {}, "reference": {}, "metrics": {}, "history": {}, "attrs": {},
                           "dims": {}}
    with h5py.File(path, "r") as h:
        if "fields" in h:
            h["fields"].visititems(lambda name, obj: out["dims"].__setitem__(name, tuple(json.loads(obj.attrs["dims"])))
                                   if isinstance(obj, h5py.Dataset) and "dims" in obj.attrs else None)
        for grp in ("grid", "fields", "reference", "history"):
            if grp in h:   # names with "/" (multi-task terms "task/term") are nested groups
                found: dict[str, Any] = {}
                h[grp].visititems(lambda name, obj: found.__setitem__(name, obj[()])
                                  if isinstance(obj, h5py.Dataset) else None)
                out[grp] = found
        if "metrics" in h:
            out["metrics"] = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in h["metrics"].attrs.items()}
        out["attrs"] = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in h.attrs.items()}
    return out

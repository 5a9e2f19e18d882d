"""Comparison of computed fields (density, momentum, energy, ...) with reference
data (published files or our classical solver), on the output grid."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .base import rel_l2

# names used in the APNN authors' BGK files -> our field names
_NPZ_FIELDS = {"density": "rho", "momentum": "momentum", "energy": "energy"}


@dataclass(frozen=True)
class FieldReference:
    """Reference frames ``fields[name]`` of shape (n_t, n_x) at times ``t`` on cells ``x``."""

    t: np.ndarray
    x: np.ndarray
    fields: dict
    label: str = "reference"

    @classmethod
    def from_npz(cls, path: str | Path, *, x_range: tuple[float, float], t_end: float, label: str = "published"):
        """Read the APNN authors' formats (see data/apnns/README.md):

        * linear transport: ``macro_frames`` either ``(n_t, n_x)`` with ``t`` and ``x``,
          or ``(n_x, 1)`` at ``t_end`` on the cell centres of ``x_range``;
        * BGK: ``density``, ``momentum``, ``energy`` of shape ``(n_x,)`` at ``t_end``, or
          ``(n_x, n_s)`` snapshots whose last column is at ``t_end`` (the files do not
          store the other snapshots' times, so only the last one is used),
          on the cell centres of ``x_range``.
        """
        d = np.load(path)
        a, b = x_range
        if "macro_frames" in d.files:
            frames = np.asarray(d["macro_frames"], dtype=np.float64)
            if "t" in d.files:
                return cls(np.asarray(d["t"], np.float64), np.asarray(d["x"], np.float64), {"rho": frames}, label)
            fields = {"rho": frames.reshape(1, -1)}
        else:
            present = [k for k in _NPZ_FIELDS if k in d.files]
            if not present:
                raise ValueError(f"{path}: expected 'macro_frames' or any of {sorted(_NPZ_FIELDS)}, "
                                 f"found {sorted(d.files)}")
            fields = {}
            for k in present:
                arr = np.asarray(d[k], dtype=np.float64)
                fields[_NPZ_FIELDS[k]] = (arr[:, -1] if arr.ndim == 2 else arr).reshape(1, -1)
        n = next(iter(fields.values())).shape[1]
        x = a + (b - a) * (np.arange(n) + 0.5) / n
        return cls(np.array([t_end]), x, fields, label)

    def on(self, times: np.ndarray, x: np.ndarray, tol: float = 1e-9) -> tuple[list[int], dict[str, np.ndarray]]:
        """Reference at those output times it holds (indices into ``times``), linearly
        interpolated in x when the grids differ."""
        idx, rows = [], {k: [] for k in self.fields}
        regrid = len(self.x) != len(x) or not np.allclose(self.x, x, rtol=0, atol=1e-12)
        for i, ti in enumerate(times):
            k = int(np.argmin(np.abs(self.t - ti)))
            if abs(self.t[k] - ti) <= tol * max(1.0, abs(ti)):
                idx.append(i)
                for name, frames in self.fields.items():
                    row = frames[k]
                    rows[name].append(np.interp(x, self.x, row) if regrid else row)
        return idx, {k: (np.stack(v) if v else np.zeros((0, len(x)))) for k, v in rows.items()}


def field_metrics(times: np.ndarray, x: np.ndarray, fields: dict, ref: FieldReference) -> tuple[dict, dict]:
    """Relative L2 errors of every field the reference holds, at every output time it
    holds; ``rel_l2_<name>`` is the one at the final output time (the number the APNN
    papers report). Returns the metrics and the reference on the full output grid
    (NaN where absent), by field."""
    idx, rows = ref.on(times, x)
    metrics: dict[str, float] = {}
    full: dict[str, np.ndarray] = {}
    for name, ref_rows in rows.items():
        if name not in fields:
            continue
        pred = fields[name]
        f = np.full(pred.shape, np.nan, dtype=np.float64)
        for i, row in zip(idx, ref_rows):
            f[i] = row
            metrics[f"rel_l2_{name}_t={times[i]:g}"] = rel_l2(pred[i], row)
        if idx and idx[-1] == len(times) - 1:
            metrics[f"rel_l2_{name}"] = metrics[f"rel_l2_{name}_t={times[-1]:g}"]
        if len(idx) > 1:
            metrics[f"rel_l2_{name}_all_times"] = rel_l2(pred[idx], ref_rows)
        full[name] = f
    return metrics, full


def tail_metrics(history: dict, *, fraction: float = 0.2) -> dict[str, float]:
    """Companions of the final errors that a single snapshot's noise moves less: the
    mean over the logged evaluations in the last ``fraction`` of training (steps at or
    after ``(1 - fraction)`` times the last logged step) of every error the run
    monitored at the final output time (history ``monitor_rel_l2_*``), as
    ``tail_rel_l2_<field>[_eps<e>]``, and for a multi-task run the mean of the worst
    task at each of those logs, ``tail_worst_rel_l2_<field>``. Late in training the
    error of a network can swing by a factor of 1.5-2 between logs while its loss still
    falls (docs/hrgrad-measurements.md); the final-step value is one draw of that. Empty when
    nothing was monitored."""
    steps = np.asarray(history.get("step", ()), dtype=float)
    if steps.size == 0 or not 0 < fraction <= 1:
        return {}
    keep = steps >= (1.0 - fraction) * steps.max()
    out: dict[str, float] = {}
    per_task: dict[str, list[np.ndarray]] = {}
    for key, values in history.items():
        v = np.asarray(values, dtype=float)
        if not key.startswith("monitor_rel_l2_") or v.shape != steps.shape:
            continue
        name = key.removeprefix("monitor_")
        out[f"tail_{name}"] = float(np.mean(v[keep]))
        base, sep, _ = name.partition("_eps")
        if sep:
            per_task.setdefault(base, []).append(v[keep])
    for base, rows in per_task.items():
        out[f"tail_worst_{base}"] = float(np.mean(np.max(np.stack(rows), axis=0)))
    return out

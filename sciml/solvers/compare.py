"""Comparison of a computed density with reference data (published files or our
classical solver), on the output grid."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .base import rel_l2


@dataclass(frozen=True)
class DensityReference:
    """Reference density frames ``rho`` (n_t, n_x) at times ``t`` on cells ``x``."""

    t: np.ndarray
    x: np.ndarray
    rho: np.ndarray
    label: str = "reference"

    @classmethod
    def from_npz(cls, path: str | Path, *, x_range: tuple[float, float], t_end: float, label: str = "published"):
        """Read the APNN authors' format: ``macro_frames`` either ``(n_t, n_x)`` with
        ``t`` and ``x``, or ``(n_x, 1)`` at ``t_end`` on cell centres of ``x_range``
        (the files store no grid then; cell centres are what matches, see
        data/apnns/README.md)."""
        d = np.load(path)
        frames = np.asarray(d["macro_frames"], dtype=np.float64)
        if "t" in d.files:
            t = np.asarray(d["t"], dtype=np.float64)
            x = np.asarray(d["x"], dtype=np.float64)
        else:
            frames = frames.reshape(1, -1)
            n = frames.shape[1]
            a, b = x_range
            x = a + (b - a) * (np.arange(n) + 0.5) / n
            t = np.array([t_end])
        return cls(t, x, frames, label)

    def on(self, times: np.ndarray, x: np.ndarray, tol: float = 1e-9) -> tuple[list[int], np.ndarray]:
        """Reference at those output times it holds (indices into ``times``), linearly
        interpolated in x when the grids differ."""
        idx, rows = [], []
        for i, ti in enumerate(times):
            k = int(np.argmin(np.abs(self.t - ti)))
            if abs(self.t[k] - ti) <= tol * max(1.0, abs(ti)):
                row = self.rho[k]
                if len(self.x) != len(x) or not np.allclose(self.x, x, rtol=0, atol=1e-12):
                    row = np.interp(x, self.x, row)
                idx.append(i)
                rows.append(row)
        return idx, (np.stack(rows) if rows else np.zeros((0, len(x))))


def density_metrics(times: np.ndarray, x: np.ndarray, rho: np.ndarray, ref: DensityReference) -> tuple[dict, np.ndarray]:
    """Relative L2 errors at every output time the reference holds; ``rel_l2_rho`` is
    the one at the final output time (the number the APNN papers report). Returns
    the metrics and the reference on the full output grid (NaN where absent)."""
    idx, rows = ref.on(times, x)
    full = np.full_like(rho, np.nan, dtype=np.float64)
    metrics: dict[str, float] = {}
    for i, row in zip(idx, rows):
        full[i] = row
        metrics[f"rel_l2_rho_t={times[i]:g}"] = rel_l2(rho[i], row)
    if idx and idx[-1] == len(times) - 1:
        metrics["rel_l2_rho"] = metrics[f"rel_l2_rho_t={times[-1]:g}"]
    if len(idx) > 1:
        metrics["rel_l2_rho_all_times"] = rel_l2(rho[idx], rows)
    return metrics, full

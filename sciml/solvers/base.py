"""What every solver returns: a :class:`Solution` (fields on their grids, metrics,
reference, training history, the resolved config) that can save itself."""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..io import write_result


# figure file and axis label of each field
FIGURE_NAMES = {"rho": "density"}
FIELD_LABELS = {"rho": "density rho", "momentum": "momentum rho u", "energy": "energy E", "u": "velocity u",
                "T": "temperature T"}


def rel_l2(pred: np.ndarray, ref: np.ndarray) -> float:
    """Relative L2 error ``||pred - ref|| / ||ref||`` (discrete, equal weights)."""
    pred, ref = np.asarray(pred, dtype=np.float64), np.asarray(ref, dtype=np.float64)
    if pred.shape != ref.shape:
        raise ValueError(f"shape mismatch: prediction {pred.shape} vs reference {ref.shape}")
    den = np.linalg.norm(ref)
    return float(np.linalg.norm(pred - ref) / (den if den > 0 else 1.0))


_RE_ERROR = re.compile(r"^(?P<tail>tail_)?rel_l2_(?P<field>.+?)_(?P<task>eps[^_]+)(?P<suffix>_t=.+|_all_times)?$")
_RE_WORST = re.compile(r"^(?P<tail>tail_)?worst_rel_l2_(?P<field>.+)$")


def _task_of(name: str) -> str | None:
    """``rho_eps0.001`` -> ``eps0.001``; ``None`` for a field of one task."""
    base, sep, label = name.rpartition("_eps")
    return f"eps{label}" if sep and base and label and "_" not in label else None


def _eps_key(task: str) -> float:
    """Largest eps first (the order of the comparison tables)."""
    try:
        return -float(task[3:])
    except ValueError:
        return 0.0


def _fmt(v) -> str:
    return f"{v:.4e}" if isinstance(v, float) else str(v)


def _metric_line(k, v) -> str:
    return f"  {k}: {_fmt(v)}"


@dataclass
class Solution:
    solver: str
    grid: dict[str, np.ndarray]
    fields: dict[str, np.ndarray]
    dims: dict[str, tuple[str, ...]]
    metrics: dict[str, Any] = field(default_factory=dict)
    reference: dict[str, np.ndarray] = field(default_factory=dict)
    history: dict[str, np.ndarray] = field(default_factory=dict)
    config_text: str = ""
    meta: dict[str, Any] = field(default_factory=dict)
    figures: list[Path] = field(default_factory=list)

    def __getitem__(self, name: str) -> np.ndarray:
        return self.fields[name]

    @classmethod
    def load(cls, path: str | Path) -> "Solution":
        """A saved run back (``path``: its folder or its ``result.h5``), as :func:`sciml.solve`
        returned it: fields, grid, metrics, reference, history, the resolved configuration
        (``config_text``) and the rest of the file's attributes in ``meta`` (versions, git
        revision, creation time, ...)."""
        from ..io import read_result

        path = Path(path)
        if path.is_dir():
            path = path / "result.h5"
        if not path.is_file():
            raise FileNotFoundError(f"no result at {path}")
        r = read_result(path)
        attrs = dict(r["attrs"])
        config_text, solver = str(attrs.pop("config", "")), str(attrs.pop("solver", "?"))
        return cls(solver=solver, grid=r["grid"], fields=r["fields"], dims=r["dims"], metrics=r["metrics"],
                   reference=r["reference"], history=r["history"], config_text=config_text, meta=attrs)

    def save(self, out_dir: str | Path, *, figures: bool = True) -> Path:
        """Write ``out_dir/result.h5`` (and ``out_dir/figures/*.png``)."""
        out = Path(out_dir)
        path = write_result(out / "result.h5", grid=self.grid, fields=self.fields, dims=self.dims,
                            metrics=self.metrics, reference=self.reference, history=self.history,
                            attrs={"config": self.config_text, "solver": self.solver, **self.meta})
        if figures:
            self.figures = self.draw(out / "figures")
        return path

    def _reference_of(self, name: str) -> np.ndarray | None:
        """The reference of a field when it is one on the same grid (not all NaN)."""
        ref = self.reference.get(name)
        if ref is None or ref.shape != self.fields[name].shape or np.isnan(ref).all():
            return None
        return ref

    def draw(self, fig_dir: str | Path) -> list[Path]:
        """The run's figures: fields on a plane, profiles in x at the output times (a
        multi-task run: one figure per field, a panel per task), ``training.png`` and,
        for a multi-task rule, ``tasks.png``."""
        fig_dir = Path(fig_dir)
        return self._draw_planes(fig_dir) + self._draw_profiles(fig_dir) + self._draw_training(fig_dir)

    def _draw_planes(self, fig_dir: Path) -> list[Path]:
        from ..plot import field_2d

        paths = []
        for name, values in self.fields.items():      # fields on a plane (pde problems)
            dims = self.dims.get(name, ())
            if len(dims) == 2 and dims != ("t", "x") and values.ndim == 2:
                title = f"{self.meta.get('problem', '')} ({self.solver}): {name}"
                fixed = json.loads(self.meta.get("slice", "{}") or "{}")   # further coordinates held fixed
                if fixed:
                    title += " at " + ", ".join(f"{k} = {v:g}" for k, v in fixed.items())
                if f"rel_l2_{name}" in self.metrics:
                    title += f", rel. L2 = {self.metrics[f'rel_l2_{name}']:.2e}"
                paths.append(field_2d(fig_dir / f"{name}.png", {d: self.grid[d] for d in dims}, values,
                                      reference=self.reference.get(name), title=title, label=self.solver))
        return paths

    def _draw_profiles(self, fig_dir: Path) -> list[Path]:
        from ..plot import profile_panels, profiles

        if not {"t", "x"} <= set(self.grid):
            return []
        t, x = list(self.grid["t"]), self.grid["x"]
        ref_label = str(self.metrics.get("reference", "reference"))
        groups: dict[str, dict[str, str]] = {}        # field -> task (or "") -> name in self.fields
        for name in self.fields:
            if self.dims.get(name) == ("t", "x"):
                task = _task_of(name)
                groups.setdefault(name if task is None else name[: -len(task) - 1], {})[task or ""] = name
        paths = []
        for base, members in groups.items():
            head = f"{self.meta.get('problem', '')} ({self.solver}): {FIELD_LABELS.get(base, base)}"
            path, ylabel = fig_dir / f"{FIGURE_NAMES.get(base, base)}.png", FIELD_LABELS.get(base, base)
            if list(members) == [""]:                 # one task: one panel
                name = members[""]
                if f"rel_l2_{name}" in self.metrics:
                    head += f", rel. L2 = {self.metrics[f'rel_l2_{name}']:.2e}"
                paths.append(profiles(path, x, t, self.fields[name], reference=self._reference_of(name),
                                      label=self.solver, ref_label=ref_label, title=head, ylabel=ylabel))
                continue
            panels = {}                               # a multi-task run: a panel per task, largest eps first
            for task in sorted(members, key=_eps_key):
                name = members[task]
                label = f"eps = {task[3:]}"
                if f"rel_l2_{name}" in self.metrics:
                    label += f", rel. L2 = {self.metrics[f'rel_l2_{name}']:.2e}"
                panels[label] = (self.fields[name], self._reference_of(name))
            paths.append(profile_panels(path, x, t, panels, label=self.solver, ref_label=ref_label, title=head,
                                        ylabel=ylabel))
        return paths

    def _draw_training(self, fig_dir: Path) -> list[Path]:
        """``training.png`` (loss, errors against the reference, a weighting's weights,
        Adam's step) and ``tasks.png`` (a multi-task rule's diagnostics). In a
        multi-task run every curve is named by its task (``"rho eps0.001"``), largest
        eps first, and each task has one colour in every panel."""
        from ..mtl import task_of
        from ..plot import task_diagnostics, training_curves

        if "step" not in self.history or "loss" not in self.history:
            return []
        steps = self.history["step"]
        terms = {k[5:]: v for k, v in self.history.items() if k.startswith("term_")}
        mon = {k[8:]: v for k, v in self.history.items() if k.startswith("monitor_")}
        step_rms = mon.pop("step_rms", None)          # the trainer's, not a monitor's (own panel)
        errors = {k: v for k, v in mon.items() if k.startswith("rel_l2_")}
        weights = {k: v for k, v in mon.items() if k.startswith("weight_")}
        tasks: dict[str, np.ndarray] = {}             # a multi-task run's loss of each task (its terms summed)
        for k, v in terms.items():
            if "/" in k:
                tasks[task_of(k)] = tasks.get(task_of(k), 0) + np.asarray(v)
        if not tasks:
            return [training_curves(fig_dir / "training.png", steps, self.history["loss"], terms,
                                    step_rms=step_rms, errors=errors, weights=weights)]
        ranked = sorted(tasks, key=_eps_key)
        if all(f"weight_{task}" in weights for task in ranked):   # by task (older runs: weight_<i>, kept)
            weights = {f"weight {task}": weights[f"weight_{task}"] for task in ranked}
        fields = list(FIELD_LABELS)                   # rho, momentum, energy, ... (a loaded file's are sorted)

        def by_task(key: str) -> tuple[str, tuple]:   # rel_l2_rho_eps0.001 -> "rho eps0.001", its place
            m = _RE_ERROR.match(key)
            if m is None or m["tail"] or m["suffix"]:
                return key, (0.0, len(fields), key)
            what, task = m["field"], m["task"]
            return f"{what} {task}", (_eps_key(task), fields.index(what) if what in fields else len(fields), key)

        errors = {by_task(k)[0]: errors[k] for k in sorted(errors, key=lambda k: by_task(k)[1])}
        paths = [training_curves(fig_dir / "training.png", steps, self.history["loss"],
                                 {k: tasks[k] for k in ranked}, step_rms=step_rms, errors=errors, weights=weights,
                                 groups=ranked)]
        cos = {k: v for k, v in mon.items() if "cos" in k}
        if cos:                                       # a multi-task rule's diagnostics
            summary = {"min_cos_update": "smallest cos(update, g_T)", "mean_cos_tasks": "mean cos(g_S, g_T)",
                       "min_cos_tasks": "smallest cos(g_S, g_T)"}
            cos = {**{f"cos_update {k}": cos[f"cos_update_{k}"] for k in ranked if f"cos_update_{k}" in cos},
                   **{summary[k]: cos[k] for k in summary if k in cos},
                   **{k: v for k, v in cos.items() if not k.startswith("cos_update_") and k not in summary}}
            norms, rates = ({k: mon[f"{kind}_{k}"] for k in ranked if f"{kind}_{k}" in mon}
                            for kind in ("grad_norm", "rate"))
            paths.append(task_diagnostics(fig_dir / "tasks.png", steps, cos, {k: tasks[k] for k in ranked},
                                          grad_norms=norms, rates=rates, groups=ranked))
        return paths

    def summary(self) -> str:
        """One screen: the fields, the scalar metrics and, for a multi-task run (fields
        ``<name>_eps<e>``), one table per field of its relative L2 error per task at
        every output time, over all times and over the last 20 % of training, with the
        worst task below; the other per-task metrics in one table."""
        lines = [f"solver: {self.solver}   problem: {self.meta.get('problem', '?')}"]
        tasks = sorted(dict.fromkeys(t for k in self.fields if (t := _task_of(k)) is not None), key=_eps_key)
        if not tasks:
            for k, v in self.fields.items():
                lines.append(f"  field {k}: shape {tuple(v.shape)} on {', '.join(self.dims.get(k, ()))}")
            lines += [_metric_line(k, v) for k, v in self.metrics.items()]
            return "\n".join(lines)
        bases = list(dict.fromkeys(k.rsplit("_eps", 1)[0] for k in self.fields if _task_of(k) is not None))
        first = next(k for k in self.fields if _task_of(k) is not None)
        lines.append(f"  fields {', '.join(bases)} for {len(tasks)} tasks, each of shape "
                     f"{tuple(self.fields[first].shape)} on {', '.join(self.dims.get(first, ()))}")
        errors: dict[str, dict[str, dict[str, float]]] = {}     # field -> column -> task -> value
        per_task: dict[str, dict[str, Any]] = {}                 # other per-task metrics: name -> task -> value
        rest = []
        for k, v in self.metrics.items():
            m = _RE_ERROR.match(k)
            if m and m["task"] in tasks:
                col = "last 20 %" if m["tail"] else ("all times" if m["suffix"] == "_all_times" else
                                                      (m["suffix"] or "_final")[1:])
                errors.setdefault(m["field"], {}).setdefault(col, {})[m["task"]] = v
                continue
            m = _RE_WORST.match(k)
            if m:
                col = "last 20 %" if m["tail"] else "_worst"
                errors.setdefault(m["field"], {}).setdefault(col, {})["worst"] = v
                continue
            name, _, task = k.rpartition("_")
            if task in tasks and name:
                per_task.setdefault(name, {})[task] = v
                continue
            rest.append(_metric_line(k, v))
        lines += rest
        for f, cols in errors.items():
            times = sorted((c for c in cols if c.startswith("t=")), key=lambda c: float(c[2:]))
            final = times[-1] if times else "final"     # the column of the final time
            order = [*(times or ["final"]), *(c for c in ("all times", "last 20 %") if c in cols)]
            if "_worst" in cols:                          # the worst task at the final time
                cols.setdefault(final, {})["worst"] = cols["_worst"]["worst"]
            lines.append(f"  relative L2 error of {f}" + (f" against the {self.metrics['reference']}"
                                                        if "reference" in self.metrics else "") + ":")
            lines.append("    " + f"{'task':12s}" + "".join(f"{c.lstrip('_'):>12s}" for c in order))
            for t in tasks + ["worst"]:
                if any(t in cols.get(c, {}) for c in order):
                    lines.append(("    " + f"{t:12s}" + "".join(
                        f"{cols[c][t]:12.3e}" if t in cols.get(c, {}) else " " * 12 for c in order)).rstrip())
        if per_task:
            w = {n: max(len(n), 10) + 2 for n in per_task}
            lines.append("    " + f"{'task':12s}" + "".join(f"{n:>{w[n]}s}" for n in per_task))
            for t in tasks:
                lines.append("    " + f"{t:12s}" + "".join(
                    f"{_fmt(per_task[n].get(t, '')):>{w[n]}s}" for n in per_task))
        return "\n".join(lines)

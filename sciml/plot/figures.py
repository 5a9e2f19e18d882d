"""Figures drawn with matplotlib's object API (no pyplot state, no backend switch at
import): each function returns the path of the PNG it wrote."""
from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
from matplotlib.figure import Figure
from matplotlib.lines import Line2D


def _save(fig: Figure, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120, bbox_inches="tight")
    return path


def _legend(ax, n: int) -> None:
    """A legend that stays readable: inside the axes for a few entries, outside on the
    right in columns of at most 20 for many."""
    if n <= 8:
        ax.legend(fontsize=7)
    else:
        ax.legend(fontsize=6, loc="upper left", bbox_to_anchor=(1.01, 1.0), ncol=1 + (n - 1) // 20,
                  borderaxespad=0.0)


def _curve_style(panel: str, name: str, i: int, groups: Sequence[str], kinds: dict) -> dict:
    """The line of curve ``i`` named ``name`` in a panel: a curve named ``G`` or ``"<what>
    G"`` with ``G`` in ``groups`` takes ``G``'s colour (the same in every panel) and a line
    style per ``<what>`` (``kinds`` remembers them per panel); any other curve the i-th
    colour, dashed beyond ten."""
    what, _, group = name.rpartition(" ")
    if group in groups:
        n = sum(1 for k in kinds if k[0] == panel)
        ls = kinds.setdefault((panel, what), ["-", "--", ":", "-."][n % 4])
        return dict(color=f"C{list(groups).index(group) % 10}", ls=ls, lw=1)
    return dict(color=f"C{i % 10}", ls=["-", "--", ":"][(i // 10) % 3], lw=1)


def _profiles_on(ax, x, t, ours, reference, x_ref, label, ref_label) -> None:
    colors = [f"C{i % 10}" for i in range(len(t))]
    for i, ti in enumerate(t):
        ax.plot(x, ours[i], color=colors[i], lw=1.8, label=f"{label}, t={ti:g}")
        if reference is not None:
            xr = x if x_ref is None else x_ref
            step = max(1, len(xr) // 25)
            ax.plot(xr[::step], reference[i][::step], "o", mfc="none", color=colors[i], ms=5,
                    label=f"{ref_label}, t={ti:g}")
    ax.grid(alpha=0.3)


def profiles(path, x: np.ndarray, t: Sequence[float], ours: np.ndarray, *, reference: np.ndarray | None = None,
             x_ref: np.ndarray | None = None, label: str = "ours", ref_label: str = "reference",
             ylabel: str = r"$\rho$", title: str = "") -> Path:
    """Profiles ``ours[i]`` (shape ``(n_t, n_x)``) at each time ``t[i]``, with the
    reference as markers when given."""
    fig = Figure(figsize=(6.4, 4.2))
    ax = fig.add_subplot()
    _profiles_on(ax, x, t, ours, reference, x_ref, label, ref_label)
    ax.set_xlabel("x")
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    ax.legend(fontsize=7, ncol=2)
    return _save(fig, path)


def profile_panels(path, x: np.ndarray, t: Sequence[float], panels: Mapping[str, tuple[np.ndarray, np.ndarray | None]],
                   *, label: str = "ours", ref_label: str = "reference", ylabel: str = "", title: str = "") -> Path:
    """One panel per entry of ``panels`` (``panel title -> (ours, reference or None)``,
    each ``(n_t, n_x)`` on ``x``), e.g. one field of a multi-task run, a panel per task;
    at most four panels a row, one legend for all."""
    n = max(1, len(panels))
    cols = min(n, 4)
    rows = -(-n // cols)
    fig = Figure(figsize=(3.6 * cols, 2.9 * rows + 0.6))
    axes = fig.subplots(rows, cols, squeeze=False)
    for ax, (name, (ours, ref)) in zip(axes.flat, panels.items()):
        _profiles_on(ax, x, t, ours, ref, None, label, ref_label)
        ax.set_title(name, fontsize=9)
    for ax in axes.flat[n:]:
        ax.set_visible(False)
    for ax in axes[:, 0]:
        ax.set_ylabel(ylabel)
    for ax in axes[-1, :]:
        ax.set_xlabel("x")
    if title:
        fig.suptitle(title)
    handles, labels = axes.flat[0].get_legend_handles_labels()
    fig.legend(handles, labels, fontsize=7, ncol=min(len(labels), 4), loc="lower center",
               bbox_to_anchor=(0.5, -0.02 - 0.04 * ((len(labels) - 1) // 4)))
    fig.tight_layout()
    return _save(fig, path)


def training_curves(path, steps: np.ndarray, loss: np.ndarray, terms: Mapping[str, np.ndarray] | None = None,
                    title: str = "training", *, step_rms: np.ndarray | None = None,
                    errors: Mapping[str, np.ndarray] | None = None,
                    weights: Mapping[str, np.ndarray] | None = None,
                    groups: Sequence[str] = ()) -> Path:
    """Total loss and each term against the step (log scale); below it, when given, a
    panel of the errors against a reference logged during training, one of a loss
    weighting's weights, and one of ``step_rms`` (the optimiser's update RMS / lr,
    logged by the trainer). ``groups`` (e.g. the tasks of a multi-task run) give the
    colours: a curve named ``G`` or ``"<what> G"`` takes group ``G``'s colour in every
    panel, and its ``<what>`` (e.g. the field) the line style. Many curves get their
    legend outside, on the right."""
    panels = [("loss", {"total": loss, **(terms or {})}, 3.2)]
    panels += [("rel. L2 vs reference", errors, 2.2)] if errors else []
    panels += [("loss weights", weights, 1.8)] if weights else []
    panels += [("update RMS / lr", {"": step_rms}, 1.3)] if step_rms is not None else []
    fig = Figure(figsize=(6.4, 0.9 + sum(h for *_, h in panels)))
    axes = fig.subplots(len(panels), 1, sharex=True, squeeze=False,
                        gridspec_kw={"height_ratios": [h for *_, h in panels]})[:, 0]
    kinds: dict[tuple[str, str], str] = {}

    def style(panel: str, name: str, i: int) -> dict:
        if panel == "update RMS / lr":
            return dict(color="C3", lw=1.2)
        if panel == "loss" and name == "total":
            return dict(color="k", lw=2)
        return _curve_style(panel, name, i, groups, kinds)

    for ax, (label, curves, _) in zip(axes, panels):
        for i, (name, vals) in enumerate(curves.items()):
            vals = np.asarray(vals, dtype=float)          # the loss panel's first curve is the total
            ax.plot(steps[: len(vals)], vals, label=name or None, **style(label, name, i - (label == "loss")))
        if label == "update RMS / lr":
            ax.axhline(1.0, color="k", lw=0.8)
        else:
            _legend(ax, len(curves))
        if label != "loss weights":
            ax.set_yscale("log")
        ax.set_ylabel(label, fontsize=8 if label != "loss" else 10)
        ax.grid(alpha=0.3, which="both")
    axes[0].set_title(title)
    axes[-1].set_xlabel("step")
    return _save(fig, path)


def error_bars(path, labels: Sequence[str], ours: Sequence[float], published: Sequence[float | None],
               title: str = "relative L2 error") -> Path:
    """Ours against published errors, side by side (log scale)."""
    fig = Figure(figsize=(6.4, 3.6))
    ax = fig.add_subplot()
    idx = np.arange(len(labels))
    ax.bar(idx - 0.2, ours, width=0.4, label="ours")
    pub = [np.nan if p is None else p for p in published]
    ax.bar(idx + 0.2, pub, width=0.4, label="published")
    ax.set_xticks(idx, labels, fontsize=8)
    ax.set_yscale("log")
    ax.set_title(title)
    ax.legend()
    return _save(fig, path)


def grouped_bars(path, groups: Sequence[str], values: Mapping[str, Mapping[str, float]], *,
                 title: str = "", ylabel: str = "relative L2 error",
                 ranges: Mapping[str, Mapping[str, tuple[float, float]]] | None = None) -> Path:
    """One group of bars per entry of ``groups`` (e.g. tasks), one bar per series
    (e.g. method): ``values[series][group]`` (log scale). ``ranges[series][group] =
    (low, high)``, when given, is drawn as a whisker on the bar (e.g. min and max over
    seeds)."""
    fig = Figure(figsize=(max(6.4, 0.9 * len(groups) * max(1, len(values)) / 3), 4.0))
    ax = fig.add_subplot()
    n = max(1, len(values))
    width = 0.8 / n
    idx = np.arange(len(groups))
    for i, (name, row) in enumerate(values.items()):
        x = idx - 0.4 + (i + 0.5) * width
        heights = np.array([row.get(g, np.nan) for g in groups], dtype=float)
        ax.bar(x, heights, width=width, label=name, color=f"C{i % 10}")
        if ranges and name in ranges:
            lo, hi = (np.array([ranges[name].get(g, (np.nan, np.nan))[j] for g in groups], dtype=float)
                      for j in (0, 1))
            ax.errorbar(x, heights, yerr=[np.clip(heights - lo, 0, None), np.clip(hi - heights, 0, None)],
                        fmt="none", ecolor="k", elinewidth=0.8, capsize=1.5)
    ax.set_xticks(idx, groups, fontsize=8)
    ax.set_yscale("log")
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    ax.legend(fontsize=7, ncol=3)
    ax.grid(alpha=0.3, axis="y")
    return _save(fig, path)


def comparison_chart(path, tasks: Sequence[str], values: Mapping[str, Mapping[str, float]],
                     worst: Mapping[str, float], *, ranges: Mapping[str, tuple[float, float]] | None = None,
                     target: str | None = None, title: str = "", label: str = "relative L2 error") -> Path:
    """Methods against tasks: on the left a table of colour (log scale) with each
    ``values[method][task]`` written in its cell, on the right each method's ``worst``
    as a bar (``ranges[method] = (low, high)`` as a whisker, e.g. over seeds; the
    ``target`` in red). Rows are sorted by ``worst``, the best on top, so that a
    comparison of many methods reads at a glance."""
    from matplotlib.colors import LogNorm

    names = sorted(values, key=lambda m: (not np.isfinite(worst.get(m, np.nan)), worst.get(m, np.inf)))
    grid = np.array([[values[m].get(tk, np.nan) for tk in tasks] for m in names], dtype=float)
    finite = grid[np.isfinite(grid) & (grid > 0)]
    fig = Figure(figsize=(4.6 + 0.78 * len(tasks), 1.4 + 0.34 * len(names)), layout="constrained")
    left, right = fig.subplots(1, 2, gridspec_kw={"width_ratios": [0.78 * len(tasks), 3.2]})
    norm = LogNorm(vmin=finite.min(), vmax=finite.max()) if finite.size and finite.min() < finite.max() else None
    image = left.imshow(np.where(np.isfinite(grid) & (grid > 0), grid, np.nan), cmap="viridis_r", norm=norm,
                        aspect="auto")
    for (i, j), v in np.ndenumerate(grid):
        if np.isfinite(v):
            shade = image.cmap(image.norm(v)) if v > 0 else (1, 1, 1, 1)
            dark = 0.299 * shade[0] + 0.587 * shade[1] + 0.114 * shade[2] < 0.5
            left.text(j, i, f"{v:.3g}", ha="center", va="center", fontsize=7, color="w" if dark else "k")
    left.set_xticks(range(len(tasks)), tasks, fontsize=8, rotation=30, ha="right")
    left.set_yticks(range(len(names)), [f"{m} *" if m == target else m for m in names], fontsize=8)
    left.set_title(label, fontsize=9)
    w = np.array([worst.get(m, np.nan) for m in names], dtype=float)
    colors = ["C3" if m == target else "0.55" for m in names]
    right.barh(range(len(names)), w, color=colors, height=0.7)
    if ranges:
        lo = np.array([ranges.get(m, (np.nan, np.nan))[0] for m in names], dtype=float)
        hi = np.array([ranges.get(m, (np.nan, np.nan))[1] for m in names], dtype=float)
        right.errorbar(w, range(len(names)), xerr=[np.clip(w - lo, 0, None), np.clip(hi - w, 0, None)],
                       fmt="none", ecolor="k", elinewidth=0.8, capsize=2)
    ends = np.fmax(w, hi) if ranges else w
    for i, (v, end) in enumerate(zip(w, ends)):
        if np.isfinite(v):
            right.text(end * 1.08, i, f"{v:.3g}", va="center", fontsize=7)
    right.set_xscale("log")
    if np.isfinite(ends).any():
        right.set_xlim(right=np.nanmax(ends) * 2.0)
    right.set_ylim(len(names) - 0.5, -0.5)
    right.set_yticks(range(len(names)), [""] * len(names))
    right.set_title("worst task" + (" (min – max)" if ranges else ""), fontsize=9)
    right.grid(alpha=0.3, axis="x", which="both")
    if title:
        fig.suptitle(title, fontsize=10)
    return _save(fig, path)


def task_diagnostics(path, steps: np.ndarray, cosines: Mapping[str, np.ndarray],
                     task_losses: Mapping[str, np.ndarray] | None = None, title: str = "multi-task diagnostics",
                     *, grad_norms: Mapping[str, np.ndarray] | None = None,
                     rates: Mapping[str, np.ndarray] | None = None, groups: Sequence[str] = ()) -> Path:
    """Cosines (linear scale, the zero line marks conflict) and the loss of each task
    (log scale); when given, a second row with each task's gradient norm (log scale)
    and its relative rate ``g_T . update / L_T`` (symmetric log scale: a negative rate
    means the step raises that task's loss to first order). With ``groups`` (the tasks)
    a curve named ``T`` or ``"<what> T"`` takes task ``T``'s colour in every panel, one
    legend of the tasks is drawn beside the panels, and the cosine curves that belong
    to no task (the smallest over the tasks, the tasks' pairwise means) are drawn in
    black and grey."""
    panels = [("cosine", cosines, "linear")]
    panels += [("task loss", task_losses, "log")] if task_losses else []
    panels += [("task gradient norm", grad_norms, "log")] if grad_norms else []
    panels += [("relative rate  g.update / L", rates, "symlog")] if rates else []
    rows = 1 if len(panels) <= 2 else 2
    cols = 1 if len(panels) == 1 else 2
    fig = Figure(figsize=(5.0 * cols, 3.8 * rows))
    kinds: dict[tuple[str, str], str] = {}
    summary = [dict(color="k", lw=2), dict(color="0.45", lw=1.5, ls="--"), dict(color="0.45", lw=1.5, ls=":")]
    for i, (label, curves, scale) in enumerate(panels):
        ax = fig.add_subplot(rows, cols, i + 1)
        own = 0                                   # curves of no task
        for j, (name, vals) in enumerate(curves.items()):
            if groups and name.rpartition(" ")[2] not in groups:
                style = summary[own % len(summary)]
                own += 1
            else:
                style = _curve_style(label, name, j, groups, kinds)
            ax.plot(steps, vals, label=name, **style)
        if scale == "symlog":
            finite = np.concatenate([np.abs(np.asarray(v, dtype=float)).ravel() for v in curves.values()])
            finite = finite[np.isfinite(finite) & (finite > 0)]
            ax.set_yscale("symlog", linthresh=float(np.quantile(finite, 0.05)) if finite.size else 1.0)
        elif scale == "log":
            ax.set_yscale("log")
        if scale != "log":
            ax.axhline(0.0, color="k", lw=0.8)
        ax.set_xlabel("step")
        ax.set_ylabel(label)
        if i == 0:
            ax.set_title(title)
        ax.grid(alpha=0.3, which="both")
        if not groups:
            ax.legend(fontsize=7)
        elif own:                                 # the curves of no task, in their own small legend
            handles, names = ax.get_legend_handles_labels()
            keep = [k for k, n in enumerate(names) if n.rpartition(" ")[2] not in groups]
            ax.legend([handles[k] for k in keep], [names[k] for k in keep], fontsize=7)
    if groups:
        fig.legend([Line2D([], [], color=f"C{k % 10}") for k in range(len(groups))], list(groups),
                   fontsize=8, loc="center left", bbox_to_anchor=(0.91, 0.5), title="task")
    fig.subplots_adjust(wspace=0.3, hspace=0.35, right=0.9 if groups else 0.95)
    return _save(fig, path)


def field_2d(path, axes: Mapping[str, np.ndarray], ours: np.ndarray, *, reference: np.ndarray | None = None,
             title: str = "", label: str = "ours") -> Path:
    """A field on a 2D grid (``ours[i, j]`` at ``(a[i], b[j])``; NaN outside the
    region): ours, the reference and the pointwise error (log colour scale)."""
    from matplotlib.colors import LogNorm

    (na, a), (nb, b) = list(axes.items())[:2]
    panels = [(ours, label)] + ([(reference, "reference")] if reference is not None else [])
    n = len(panels) + (1 if reference is not None else 0)
    fig = Figure(figsize=(4.2 * n, 3.6))
    ext = [a[0], a[-1], b[0], b[-1]]
    lo = np.nanmin([np.nanmin(p) for p, _ in panels])
    hi = np.nanmax([np.nanmax(p) for p, _ in panels])
    for k, (vals, name) in enumerate(panels):
        ax = fig.add_subplot(1, n, k + 1)
        im = ax.imshow(vals.T, origin="lower", extent=ext, aspect="auto", vmin=lo, vmax=hi, cmap="viridis")
        ax.set_xlabel(na)
        ax.set_ylabel(nb)
        ax.set_title(name, fontsize=9)
        fig.colorbar(im, ax=ax, shrink=0.85)
    if reference is not None:
        err = np.abs(ours - reference)
        pos = err[np.isfinite(err) & (err > 0)]
        ax = fig.add_subplot(1, n, n)
        norm = LogNorm(vmin=max(pos.min(), pos.max() * 1e-8), vmax=pos.max()) if pos.size else None
        im = ax.imshow(np.where(err > 0, err, np.nan).T, origin="lower", extent=ext, aspect="auto", norm=norm,
                       cmap="magma")
        ax.set_xlabel(na)
        ax.set_ylabel(nb)
        ax.set_title("|error|", fontsize=9)
        fig.colorbar(im, ax=ax, shrink=0.85)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.subplots_adjust(wspace=0.35)
    return _save(fig, path)

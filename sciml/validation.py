"""Validation entries (``validation/*.yaml``): one per published figure or table.

Each entry names the problem file and solver preset to run, the metric, the
published number, our tolerance, and a ``quick`` variant (smaller, CPU-sized;
what CI runs). ``sciml reproduce ID`` runs it, compares, and draws the figure::

    id: lt_evenodd_kn1e-3
    title: ...
    problem: problems/kinetic/lt_inflow_kn1e-3.yaml
    solver: apnn_even_odd
    metric: rel_l2_rho
    published: 9.87e-3
    tolerance: 1.5e-2
    source: Jin, Ma, Wu, arXiv 2111.02541, Table ...
    quick: {overrides: {solver.training.steps: 300}, tolerance: 0.2}
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Optional

from .config.errors import ConfigError
from .config.loader import read_yaml
from .config.schema import build, option


@dataclass(frozen=True)
class QuickSpec:
    overrides: dict[str, Any] = option(field(default_factory=dict), doc="overrides for the quick run")
    tolerance: float = option(doc="bound on the metric for the quick run", min=0.0, min_exclusive=True)


@dataclass(frozen=True)
class Check:
    metric: str = option(doc="a further metric of the same run")
    tolerance: float = option(doc="bound on it for the full run", min=0.0, min_exclusive=True)
    published: Optional[float] = option(None, doc="its published number")
    quick_tolerance: Optional[float] = option(None, doc="bound for the quick run (default: not checked)",
                                              min=0.0, min_exclusive=True)


@dataclass(frozen=True)
class Measured:
    value: float = option(doc="the metric we measured at full size")
    command: str = option(doc="the command that produced it")
    device: str = option("", doc="where it ran")
    date: str = option("", doc="when")
    train_time_s: Optional[float] = option(None, doc="training time")
    steps: Optional[int] = option(None, doc="training steps reached")
    note: str = option("", doc="anything that qualifies the number (e.g. a run cut short)")
    others: dict[str, float] = option(field(default_factory=dict), doc="the further checks' measured values")


@dataclass(frozen=True)
class Entry:
    id: str = option(doc="entry id")
    title: str = option(doc="one line")
    problem: str = option(doc="problem file, relative to the repository root")
    solver: Optional[str] = option(None, doc="solver preset (default: the problem's)")
    overrides: dict[str, Any] = option(field(default_factory=dict), doc="overrides for the full run")
    metric: str = option("rel_l2_rho", doc="metric compared with the published number")
    published: Optional[float] = option(None, doc="the published number")
    tolerance: float = option(doc="bound on the metric for the full run", min=0.0, min_exclusive=True)
    expect: Literal["below", "above"] = option("below", doc="pass when the metric is below the tolerance "
                                               "(accuracy) or above it (a baseline shown failing)")
    source: str = option("", doc="paper, table or figure")
    also: list[Check] = option(field(default_factory=list), doc="further metrics checked on the same run "
                                                                 "(e.g. momentum and energy errors)")
    quick: Optional[QuickSpec] = option(None, doc="CPU-sized variant")
    measured: Optional[Measured] = option(None, doc="our full-size measurement")
    root: str = option("", doc="(set by the loader)")

    def checks(self, quick: bool) -> list[tuple[str, Optional[float], Optional[float]]]:
        """``(metric, published, tolerance)`` of the main metric and the further ones
        (tolerance ``None``: reported, not checked)."""
        main = (self.metric, self.published, self.quick.tolerance if quick else self.tolerance)
        return [main] + [(c.metric, c.published, c.quick_tolerance if quick else c.tolerance) for c in self.also]


def validation_dirs() -> list[Path]:
    here = Path(__file__).resolve().parents[1] / "validation"
    dirs = [Path.cwd() / "validation", here]
    return [d for i, d in enumerate(dirs) if d.is_dir() and d.resolve() not in [x.resolve() for x in dirs[:i]]]


def list_entries() -> list[Entry]:
    out = []
    for d in validation_dirs():
        for p in sorted(d.glob("*.yaml")):
            out.append(load_entry(p.stem))
    return out


def load_entry(entry_id: str) -> Entry:
    for d in validation_dirs():
        p = d / f"{entry_id}.yaml"
        if p.is_file():
            data = read_yaml(p, what="validation entry")
            data["root"] = str(d.parent)
            return build(Entry, data, source=str(p))
    known = sorted({p.stem for d in validation_dirs() for p in d.glob("*.yaml")})
    raise ConfigError("", f"unknown validation entry {entry_id!r}; available: {', '.join(known) or 'none'}")


@dataclass
class Report:
    entry: Entry
    quick: bool
    values: dict            # metric -> value, the main metric first
    tolerances: dict        # metric -> bound (None: not checked)
    metrics: dict
    out: Path

    @property
    def value(self) -> float:
        return self.values[self.entry.metric]

    @property
    def tolerance(self) -> float:
        return self.tolerances[self.entry.metric]

    def _ok(self, metric: str) -> bool:
        tol = self.tolerances[metric]
        if tol is None:
            return True
        return self.values[metric] >= tol if self.entry.expect == "above" else self.values[metric] <= tol

    @property
    def passed(self) -> bool:
        return all(self._ok(m) for m in self.values)

    def text(self) -> str:
        e = self.entry
        lines = [f"{e.id}: {e.title}" + (" [quick]" if self.quick else "")]
        for metric, published, _ in e.checks(self.quick):
            tol = self.tolerances[metric]
            line = f"  {metric} = {self.values[metric]:.3e}   "
            line += f"{e.expect} {tol:.1e}" if tol is not None else "(not checked)"
            if published is not None:
                line += f"   published {published:.3e}"
            lines.append(line)
        lines.append(f"  {'PASS' if self.passed else 'FAIL'}   results in {self.out}")
        if e.measured is not None and not self.quick:
            m = e.measured
            lines.append(f"  committed measurement: {m.value:.3e} ({m.device}{', ' + m.note if m.note else ''})")
        return "\n".join(lines)


def reproduce(entry: Entry, *, quick: bool = False, out: str | Path, device: str | None = None,
              resume: bool = False, progress: bool = True) -> Report:
    from .api import solve
    from .plot import error_bars

    if quick and entry.quick is None:
        raise ConfigError("quick", f"validation entry {entry.id!r} has no quick variant")
    overrides = dict(entry.overrides)
    if quick:
        overrides.update(entry.quick.overrides)
    out = Path(out)
    sol = solve(Path(entry.root) / entry.problem, solver=entry.solver, overrides=overrides, out=out,
                device=device, resume=resume, progress=progress)
    checks = entry.checks(quick)
    for metric, _, _ in checks:
        if metric not in sol.metrics:
            raise ConfigError("metric", f"the run has no metric {metric!r}; it has {sorted(sol.metrics)}")
    values = {m: float(sol.metrics[m]) for m, _, _ in checks}
    error_bars(out / "figures" / "validation.png", [m for m, _, _ in checks], list(values.values()),
               [p for _, p, _ in checks],
               title=f"{entry.id}: ours vs published" + (" (quick)" if quick else ""))
    report = Report(entry, quick, values, {m: t for m, _, t in checks}, dict(sol.metrics), out)
    (out / "validation.json").write_text(json.dumps({
        "id": entry.id, "quick": quick, "metric": entry.metric, "value": report.value,
        "tolerance": report.tolerance, "published": entry.published, "passed": report.passed,
        "checks": [{"metric": m, "value": values[m], "tolerance": t, "published": p} for m, p, t in checks],
        "metrics": {k: v for k, v in sol.metrics.items() if isinstance(v, (int, float, str))}}, indent=2))
    return report

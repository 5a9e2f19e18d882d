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
class Measured:
    value: float = option(doc="the metric we measured at full size")
    command: str = option(doc="the command that produced it")
    device: str = option("", doc="where it ran")
    date: str = option("", doc="when")
    train_time_s: Optional[float] = option(None, doc="training time")
    steps: Optional[int] = option(None, doc="training steps reached")
    note: str = option("", doc="anything that qualifies the number (e.g. a run cut short)")


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
    quick: Optional[QuickSpec] = option(None, doc="CPU-sized variant")
    measured: Optional[Measured] = option(None, doc="our full-size measurement")
    root: str = option("", doc="(set by the loader)")


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
    value: float
    tolerance: float
    metrics: dict
    out: Path

    @property
    def passed(self) -> bool:
        if self.entry.expect == "above":
            return self.value >= self.tolerance
        return self.value <= self.tolerance

    def text(self) -> str:
        e = self.entry
        lines = [f"{e.id}: {e.title}" + (" [quick]" if self.quick else ""),
                 f"  {e.metric} = {self.value:.3e}   {e.expect} {self.tolerance:.1e}   "
                 f"published {e.published:.3e}" if e.published is not None else
                 f"  {e.metric} = {self.value:.3e}   {e.expect} {self.tolerance:.1e}",
                 f"  {'PASS' if self.passed else 'FAIL'}   results in {self.out}"]
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
    tol = entry.tolerance
    if quick:
        overrides.update(entry.quick.overrides)
        tol = entry.quick.tolerance
    out = Path(out)
    sol = solve(Path(entry.root) / entry.problem, solver=entry.solver, overrides=overrides, out=out,
                device=device, resume=resume, progress=progress)
    if entry.metric not in sol.metrics:
        raise ConfigError("metric", f"the run has no metric {entry.metric!r}; it has {sorted(sol.metrics)}")
    value = float(sol.metrics[entry.metric])
    error_bars(out / "figures" / "validation.png", [entry.id], [value], [entry.published],
               title=f"{entry.metric}: ours vs published" + (" (quick)" if quick else ""))
    report = Report(entry, quick, value, tol, dict(sol.metrics), out)
    (out / "validation.json").write_text(json.dumps({
        "id": entry.id, "quick": quick, "metric": entry.metric, "value": value, "tolerance": tol,
        "published": entry.published, "passed": report.passed,
        "metrics": {k: v for k, v in sol.metrics.items() if isinstance(v, (int, float, str))}}, indent=2))
    return report

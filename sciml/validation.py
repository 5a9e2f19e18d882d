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

Comparison entries list ``methods`` (rules of :mod:`sciml.mtl`, or ``variants``: named
rules with options) and may run each over ``seeds`` (the table then gives means,
spreads and per-seed ranks). A quick variant may check another ``metric`` than the
full run (e.g. an error where the full run checks a speed-up, which a shared CI
machine cannot time).
"""
from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Mapping, Optional, Sequence

import numpy as np

from . import distributed
from .config.errors import ConfigError
from .config.loader import config_differences, read_yaml
from .config.schema import build, option, override_strings, parse_override


@dataclass(frozen=True)
class QuickSpec:
    overrides: dict[str, Any] = option(field(default_factory=dict), doc="overrides for the quick run")
    tolerance: float = option(doc="bound on the metric for the quick run", min=0.0, min_exclusive=True)
    methods: Optional[list[str]] = option(None, doc="methods compared in the quick run (default: all)")
    seeds: list[int] = option(field(default_factory=list), doc="training seeds of the quick run (default: one "
                                                               "run per method at the configured seed)", min=0)
    metric: Optional[str] = option(None, doc="the metric checked in the quick run instead of the entry's (e.g. an "
                                             "error where the full run checks a timing, which a shared CI machine "
                                             "cannot)")
    expect: Optional[Literal["below", "above"]] = option(None, doc="below or above, for the quick metric "
                                                                   "(default: the entry's)")


@dataclass(frozen=True)
class Check:
    metric: str = option(doc="a further metric of the same run")
    tolerance: float = option(doc="bound on it for the full run", min=0.0, min_exclusive=True)
    published: Optional[float] = option(None, doc="its published number")
    quick_tolerance: Optional[float] = option(None, doc="bound for the quick run (default: not checked)",
                                              min=0.0, min_exclusive=True)


@dataclass(frozen=True)
class Variant:
    rule: str = option(doc="an aggregator or loss weighting of sciml.mtl")
    options: dict[str, Any] = option(field(default_factory=dict), doc="its options")


#: the configuration key a comparison over seeds sets for each run
SEED_KEY = "solver.training.seed"
OTHER_CONFIG = ("finished with another configuration, left out of the table (`--check` names the keys that "
                "differ; a run without --resume replaces them)")


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
    methods: list[str] = option(field(default_factory=list), doc="multi-task rules to compare (aggregators or "
                                                                 "loss weightings of sciml.mtl), one run each")
    variants: dict[str, Variant] = option(field(default_factory=dict),
                                          doc="named rules with options, usable in methods (e.g. sum_unit: "
                                              "{rule: sum, options: {length: unit}})")
    seeds: list[int] = option(field(default_factory=list),
                              doc="training seeds: each method runs once per seed (out/<method>/seed<k>) and the "
                                  "table gives the mean over the seeds with the spread (default: one run per "
                                  "method at the configured seed, out/<method>)", min=0)
    target: str = option("hrgrad", doc="the method whose metric is checked when methods are compared")
    expect_best: bool = option(False, doc="also require the target's metric to be the smallest of all methods")
    study: Optional[str] = option(None, doc="a study instead of one solve: 'module:function' in sciml.studies, "
                                            "called with the entry and returning its metrics",
                                  check=lambda v: None if v is None or (":" in v and v.split(":")[0].isidentifier())
                                  else f"expected 'module:function' (a module of sciml.studies), got {v!r}")
    params: dict[str, Any] = option(field(default_factory=dict), doc="parameters of the study")
    quick: Optional[QuickSpec] = option(None, doc="CPU-sized variant")
    measured: Optional[Measured] = option(None, doc="our full-size measurement")
    root: str = option("", doc="(set by the loader)")

    def main_metric(self, quick: bool) -> str:
        """The metric checked first: the quick variant's own, if it names one."""
        return self.quick.metric if quick and self.quick is not None and self.quick.metric else self.metric

    def expect_of(self, metric: str, quick: bool) -> str:
        if quick and self.quick is not None and self.quick.metric and metric == self.quick.metric:
            return self.quick.expect or self.expect
        return self.expect

    def checks(self, quick: bool) -> list[tuple[str, Optional[float], Optional[float]]]:
        """``(metric, published, tolerance)`` of the main metric and the further ones
        (tolerance ``None``: reported, not checked)."""
        metric = self.main_metric(quick)
        main = (metric, self.published if metric == self.metric else None,
                self.quick.tolerance if quick else self.tolerance)
        return [main] + [(c.metric, c.published, c.quick_tolerance if quick else c.tolerance) for c in self.also]


def validation_dirs() -> list[Path]:
    from . import shipped
    return shipped.search_dirs("validation")


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
    comparison: dict = field(default_factory=dict)   # method -> value of the main metric
    missing: list = field(default_factory=list)      # methods of the comparison without a finished run
    overrides: list = field(default_factory=list)    # the caller's KEY=VALUE on top of the entry's
    inapplicable: dict = field(default_factory=dict)  # method -> why the overrides do not apply to it
    seeds: list = field(default_factory=list)        # the seeds compared (empty: one run per method)
    per_seed: dict = field(default_factory=dict)     # method -> {seed: value of the main metric}
    other_config: list = field(default_factory=list)  # of `missing`: run folders holding another configuration
    head_to_head: dict = field(default_factory=dict)  # method -> the target against it seed by seed

    @property
    def not_run(self) -> list:
        """The missing runs whose folders hold no finished run at all."""
        return [m for m in self.missing if m not in self.other_config]

    @property
    def best_ok(self) -> bool:
        if not (self.entry.expect_best and self.comparison):
            return True
        if self.entry.target not in self.comparison:
            return False
        return self.comparison[self.entry.target] <= min(self.comparison.values())

    @property
    def value(self) -> float:
        return self.values[self.entry.main_metric(self.quick)]

    @property
    def tolerance(self) -> float:
        return self.tolerances[self.entry.main_metric(self.quick)]

    def _ok(self, metric: str) -> bool:
        tol = self.tolerances[metric]
        if tol is None:
            return True
        above = self.entry.expect_of(metric, self.quick) == "above"
        return self.values[metric] >= tol if above else self.values[metric] <= tol

    @property
    def passed(self) -> bool:
        return (all(self._ok(m) for m in self.values) and (self.quick or self.best_ok) and not self.missing
                and not self.inapplicable)

    def text(self) -> str:
        e = self.entry
        lines = [f"{e.id}: {e.title}" + (" [quick]" if self.quick else "")]
        if self.overrides:
            lines.append("  with " + " ".join(f"--set {o}" for o in self.overrides))
        for metric, published, _ in e.checks(self.quick):
            tol = self.tolerances[metric]
            line = f"  {metric} = {self.values[metric]:.3e}   "
            line += f"{e.expect_of(metric, self.quick)} {tol:.1e}" if tol is not None else "(not checked)"
            if published is not None:
                line += f"   published {published:.3e}"
            lines.append(line)
        if self.not_run and not self.comparison:
            lines.append(f"  no finished run yet: {', '.join(self.not_run)} (continue with --resume)")
        if self.other_config:
            lines.append(f"  {OTHER_CONFIG}: {', '.join(self.other_config)}")
        if self.comparison:
            lines.append(f"  {e.metric} by method (target {e.target}):")
            if self.seeds:
                lines.append(f"  (mean over seeds {', '.join(map(str, self.seeds))}; min – max, seeds run)")
            width = max(12, *map(len, self.comparison))
            for name, v in sorted(self.comparison.items(), key=lambda kv: kv[1]):
                line = f"    {name:{width}s} {v:.3e}"
                if self.seeds:
                    w = list(self.per_seed.get(name, {}).values())
                    line += f"   ({min(w):.2e} – {max(w):.2e}, {len(w)})"
                lines.append(line + ("   <- target" if name == e.target else ""))
            if self.not_run:
                lines.append(f"  not run yet: {', '.join(self.not_run)} (continue with --resume; "
                             f"--methods picks which to run)")
            for name, why in self.inapplicable.items():
                lines.append(f"  {name} cannot run with these overrides: {why}")
            if e.expect_best and (self.missing or self.inapplicable):
                lines.append("  target best of all: not known until every method has run")
            elif e.expect_best:
                lines.append(f"  target best of all: {'yes' if self.best_ok else 'no'}"
                             + (" (on the mean over the seeds)" if self.seeds else "")
                             + (" (not required for --quick)" if self.quick else ""))
            if self.seeds and e.target in self.per_seed:
                wins = [s for s in self.per_seed[e.target] if _seed_rank(self.per_seed, e.target, s) == 1]
                lines.append(f"  target best in {len(wins)} of {len(self.per_seed[e.target])} seeds"
                             + (f" ({', '.join(map(str, wins))})" if wins else ""))
            if self.head_to_head:
                lines.append("  target lower than, in the seeds both ran: " + ", ".join(
                    f"{n} {h['wins_final']}/{len(h['seeds'])}" for n, h in self.head_to_head.items()))
        lines.append(f"  {'PASS' if self.passed else 'FAIL'}   results in {self.out}")
        if e.measured is not None and not self.quick:
            m = e.measured
            lines.append(f"  committed measurement: {m.value:.3e} ({m.device}{', ' + m.note if m.note else ''})")
        return "\n".join(lines)


@dataclass
class Plan:
    """What :func:`reproduce` would do (``check=True``): the runs, each with its state
    (``to run``, ``resumes from its checkpoint``, ``finished``, ``replaces a run``);
    every configuration has been validated, nothing was written."""
    entry: Entry
    quick: bool
    out: Path
    runs: list[tuple[Path, str]]
    note: str = ""

    @property
    def refused(self) -> list[Path]:
        """The run folders ``--resume`` would refuse (they hold another configuration)."""
        return [d for d, state in self.runs if state.startswith("REFUSED")]

    def text(self) -> str:
        head = ("configuration OK" if not self.refused else
                f"{len(self.refused)} run folder(s) hold another configuration: the run would stop there")
        lines = [f"{self.entry.id}{' (quick)' if self.quick else ''}: {head}; "
                 f"{sum(state != 'finished' for _, state in self.runs)} of {len(self.runs)} run(s) to make "
                 f"into {self.out} (nothing written)"]
        lines += [f"  {d}: {state}" for d, state in self.runs]
        if self.note:
            lines.append(self.note)
        return "\n".join(lines)


def _state(run_dir: Path, config_text: str, resume: bool) -> str:
    """What :func:`reproduce` will do with one run directory."""
    from .api import resume_differences

    there = (run_dir / "result.h5").exists() or (run_dir / "train").exists()
    if not there:
        return "to run"
    if not resume:
        return "to run (replaces the run there)"
    if finished_run(run_dir, config_text) is not None:
        return "finished"
    diff = resume_differences(run_dir, config_text)
    if diff:
        return (f"REFUSED with --resume: the run there has another configuration ({', '.join(diff[:3])}"
                f"{' ...' if len(diff) > 3 else ''})")
    if (run_dir / "train" / "checkpoint.pt").exists():
        return "resumes from its checkpoint"
    return "to run (continues the finished run to more steps)" if (run_dir / "result.h5").exists() else "to run"


def with_variants(entry: Entry, variants: Mapping[str, Any]) -> Entry:
    """``entry`` with further named variants, ``{name: {rule: ..., options: {...}}}`` (the
    form of an entry's ``variants:``), each added to its methods (and to its quick
    variant's, when that lists its own): a rule with options compared without editing
    the entry (``sciml reproduce ID --variant NAME=...``)."""
    import dataclasses

    from . import mtl

    if not variants:
        return entry
    if not entry.methods:
        raise ConfigError("--variant", f"validation entry {entry.id!r} compares no methods")
    merged, names = dict(entry.variants), []
    for name, spec in variants.items():
        if name in entry.methods or name in merged or name in mtl.AGGREGATORS or name in mtl.WEIGHTINGS:
            raise ConfigError(f"--variant {name}", "the name is taken (a method of the entry or a rule of "
                                                   "sciml.mtl); give the variant another name")
        merged[name] = build(Variant, spec, source=f"--variant {name}")
        try:
            method_overrides(name, merged)      # an unknown rule is an error now
        except ConfigError as err:
            raise ConfigError(f"--variant {name}", err.message) from None
        names.append(name)
    quick = entry.quick
    if quick is not None and quick.methods:
        quick = dataclasses.replace(quick, methods=list(quick.methods) + names)
    return dataclasses.replace(entry, variants=merged, methods=list(entry.methods) + names, quick=quick)


def _provenance() -> dict:
    """What ``validation.json`` says of the code that wrote it (each run's ``result.h5``
    says the same of the code that made the run)."""
    from datetime import datetime, timezone

    from .io import git_revision, versions

    return {"created": datetime.now(timezone.utc).isoformat(timespec="seconds"), "git_revision": git_revision(),
            "versions": versions()}


def check_launch(entry: Entry) -> None:
    """Under torchrun (launched, or in a process group) only a comparison runs: its runs
    are dealt out to the processes; an entry that is one run is a ConfigError."""
    if (distributed.launched_world_size() > 1 or distributed.world_size() > 1) and not entry.methods:
        raise ConfigError("torchrun", f"validation entry {entry.id!r} is one run, not a comparison; under "
                                      f"torchrun use `sciml solve` for one run on several processes")


def reproduce(entry: Entry, *, quick: bool = False, out: str | Path, device: str | None = None,
              resume: bool = False, progress: bool = True, overrides: Sequence[str] = (),
              methods: Sequence[str] | None = None, seeds: Sequence[int] | None = None,
              variants: Mapping[str, Any] | None = None, check: bool = False) -> Report | Plan | None:
    """Run a validation entry into ``out`` and check it.

    ``overrides``: ``KEY=VALUE`` strings applied after the entry's (and the quick
    variant's) own, e.g. a mid-sized run of a full entry; they are recorded in
    ``validation.json`` and printed with the report. ``methods`` (comparison entries
    only): run only these of the entry's methods now; the table and the checks take
    every method whose finished run in ``out/<method>/`` has the same configuration,
    so a comparison can be built over several calls (``resume=True`` also skips the
    finished ones and continues the interrupted ones from their checkpoints).
    ``seeds`` (comparison entries only; default: the entry's ``seeds``, or its quick
    variant's): every method runs once per seed, in ``out/<method>/seed<k>/``; the
    table gives the mean over the seeds, the spread and each seed's ranking, and the
    target must be best on the mean. ``variants`` (comparison entries only): further
    named rules with options, added to the entry's methods (:func:`with_variants`).

    In a torch.distributed group (``torchrun``; comparison entries only) the runs are
    dealt out to the processes, each training alone on its own device, and rank 0 writes
    the table and returns the report; the other ranks return ``None``.

    ``check=True``: validate everything (the entry, methods, seeds, variants, every
    run's configuration, the device) and return the :class:`Plan`; nothing is run or
    written.
    """
    from .api import checked_device, solve
    from .plot import error_bars

    entry = with_variants(entry, variants or {})

    if quick and entry.quick is None:
        raise ConfigError("quick", f"validation entry {entry.id!r} has no quick variant")
    merged = dict(entry.overrides)
    if quick:
        merged.update(entry.quick.overrides)
    user = dict(parse_override(o) for o in overrides)
    merged.update(user)
    overrides = merged
    shown = override_strings(user)          # the caller's part, as printed and saved
    out = Path(out)
    if methods is not None and not entry.methods:
        raise ConfigError("methods", f"validation entry {entry.id!r} compares no methods")
    if seeds is not None and not entry.methods:
        raise ConfigError("seeds", f"validation entry {entry.id!r} compares no methods; seeds apply to "
                                   f"comparisons (set {SEED_KEY} for one run)")
    check_launch(entry)
    if entry.methods:
        return _compare(entry, quick=quick, overrides=overrides, out=out, device=device, resume=resume,
                        progress=progress, only=methods, shown=shown, seeds=seeds, check=check)
    if entry.study is not None:
        import importlib

        module, _, name = entry.study.partition(":")
        try:
            fn = getattr(importlib.import_module(f"sciml.studies.{module}"), name)
        except (ImportError, AttributeError):
            raise ConfigError("study", f"no study {entry.study!r} in sciml.studies") from None
        if check:
            if device is not None:
                checked_device(device, "auto")
            return Plan(entry, quick, out, [(out, "to run")],
                        note=f"a study (sciml.studies.{module}.{name}): it makes and checks its own runs")
        metrics = fn(entry, quick=quick, overrides=overrides, out=out, device=device, progress=progress)
    elif check:
        from .config import load_run

        run = load_run(Path(entry.root) / entry.problem, solver=entry.solver, overrides=overrides)
        checked_device(device, getattr(run.config.solver, "device", "cpu"))
        return Plan(entry, quick, out, [(out, _state(out, run.yaml_text, resume))])
    else:
        metrics = solve(Path(entry.root) / entry.problem, solver=entry.solver, overrides=overrides, out=out,
                        device=device, resume=resume, progress=progress).metrics
    checks = entry.checks(quick)
    for metric, _, _ in checks:
        if metric not in metrics:
            raise ConfigError("metric", f"the run has no metric {metric!r}; it has {sorted(metrics)}")
    values = {m: float(metrics[m]) for m, _, _ in checks}
    error_bars(out / "figures" / "validation.png", [m for m, _, _ in checks], list(values.values()),
               [p for _, p, _ in checks],
               title=f"{entry.id}: ours vs published" + (" (quick)" if quick else ""))
    report = Report(entry, quick, values, {m: t for m, _, t in checks}, dict(metrics), out,
                    overrides=shown)
    (out / "validation.json").write_text(json.dumps({
        **_provenance(),
        "id": entry.id, "quick": quick, "metric": entry.main_metric(quick), "value": report.value,
        "overrides": report.overrides,
        "tolerance": report.tolerance, "published": entry.published, "passed": report.passed,
        "checks": [{"metric": m, "value": values[m], "tolerance": t, "published": p} for m, p, t in checks],
        "metrics": {k: v for k, v in metrics.items() if isinstance(v, (int, float, str))}}, indent=2))
    return report


def method_overrides(name: str, variants: Mapping[str, Variant] | None = None) -> dict:
    """The solver overrides that select a multi-task rule by name: a rule of
    :mod:`sciml.mtl`, or one of ``variants`` (a rule with its options)."""
    from . import mtl

    variants = variants or {}
    if name in variants:
        rule, options = variants[name].rule, dict(variants[name].options)
        if rule in variants or rule not in set(mtl.AGGREGATORS) | set(mtl.WEIGHTINGS):
            raise ConfigError(f"variants.{name}.rule", f"unknown rule {rule!r}; allowed: "
                                                       f"{', '.join(sorted(set(mtl.AGGREGATORS) | set(mtl.WEIGHTINGS)))}")
        kind = "aggregator" if rule in mtl.AGGREGATORS else "weighting"
        return {**method_overrides(rule), f"solver.training.{kind}_options": options}
    # the options of the other kind of rule are cleared with it (a weighting run of a
    # comparison has no aggregator, so aggregator options set for the comparison do not
    # apply to it)
    if name in mtl.AGGREGATORS:
        return {"solver.training.aggregator": name, "solver.training.weighting": None,
                "solver.training.weighting_options": {}}
    if name in mtl.WEIGHTINGS:
        return {"solver.training.aggregator": None, "solver.training.weighting": name,
                "solver.training.aggregator_options": {}}
    raise ConfigError("methods", f"unknown method {name!r}; allowed: "
                                 f"{', '.join(sorted(set(mtl.AGGREGATORS) | set(mtl.WEIGHTINGS) | set(variants)))}")


def _eps_of(label: str) -> float:
    try:
        return float(label.removeprefix("eps"))
    except ValueError:
        return float("nan")


def finished_run(run_dir: Path, config_text: str) -> dict | None:
    """The metrics of the finished run in ``run_dir`` (its ``result.h5``) when it was made
    with this configuration (:data:`~sciml.config.loader.BOOKKEEPING` keys aside), else ``None``."""
    from .io.results import read_result

    path = Path(run_dir) / "result.h5"
    if not path.is_file():
        return None
    try:
        saved = read_result(path)
    except OSError:
        return None
    if config_differences(str(saved["attrs"].get("config", "")), config_text):
        return None
    metrics = {k: float(v) for k, v in saved["metrics"].items() if isinstance(v, (int, float, np.number))}
    if not any(k.startswith("tail_") for k in metrics):      # a run saved before they were metrics
        from .solvers.compare import tail_metrics

        metrics.update(tail_metrics(saved.get("history", {})))
    return metrics


def _per_task(runs: Mapping[str, Mapping], base: str) -> tuple[list[str], dict[str, dict[str, float]]]:
    """Tasks (eps labels, largest eps first) and ``{method: {task: <base>_<task>}}`` at
    the final time."""
    tasks = sorted({k[len(base) + 1:] for r in runs.values() for k in r if k.startswith(base + "_eps")
                    and "_t=" not in k and "all_times" not in k}, key=_eps_of, reverse=True)
    return tasks, {name: {t: float(r.get(f"{base}_{t}", float("nan"))) for t in tasks} for name, r in runs.items()}


def _gmean(values) -> float:
    v = list(values)
    return float(np.exp(np.mean(np.log([max(x, 1e-300) for x in v])))) if v else float("nan")


def _seed_rank(per_seed: Mapping, name: str, seed: int) -> int:
    """Rank of ``name``'s value in ``seed`` among the methods run with that seed (1 = best;
    ties share the better rank)."""
    v = per_seed[name][seed]
    return 1 + sum(1 for d in per_seed.values() if seed in d and d[seed] < v)


def _head_to_head(per_seed_runs: Mapping, target: str, field: str) -> dict:
    """The target against each other method on the seeds both ran, by the worst task of
    ``field`` at the end (``worst_``) and over the last 20 % of training (``tail_worst_``):
    how many seeds the target's is lower, the ratio of the method's mean to the target's
    over those seeds, and ``p``, the chance of at least that many wins at the end if each
    seed were a fair coin toss (one-sided sign test; 3 of 3 gives 0.125, so a few seeds
    can show a consistent lead but never a significant one)."""
    from math import comb

    mine = per_seed_runs.get(target, {})
    out = {}
    for name, done in per_seed_runs.items():
        shared = sorted(set(done) & set(mine))
        if name == target or not shared:
            continue
        row = {"seeds": shared}
        for key, prefix in (("final", "worst_"), ("tail", "tail_worst_")):
            a = [float(mine[s].get(prefix + field, np.nan)) for s in shared]
            b = [float(done[s].get(prefix + field, np.nan)) for s in shared]
            row[f"wins_{key}"] = sum(x < y for x, y in zip(a, b))
            row[f"ratio_{key}"] = float(np.mean(b) / np.mean(a))
        n, k = len(shared), row["wins_final"]
        row["p_final"] = sum(comb(n, j) for j in range(k, n + 1)) / 2 ** n
        out[name] = row
    return out


def _mean_metrics(per_seed: Mapping) -> dict:
    """Mean over the seeds of every metric the runs share."""
    keys = set.intersection(*(set(r) for r in per_seed.values()))
    return {k: float(np.mean([r[k] for r in per_seed.values()])) for k in sorted(keys)}


def _comparison_markdown(methods, runs, per_field, *, seeds, per_seed_runs, per_seed, metric, shown, missing,
                         inapplicable, variants, other_config=(), target=None, head_to_head=None) -> str:
    """``comparison.md``: per field a table of the error per task, the worst task, the
    worst task's mean over the last 20 % of training (``tail_worst_*``, less moved by
    the swings of a single snapshot), the geometric mean over the tasks (how a rule
    does across all of them) and the training time (what it costs); over seeds, the means with the worst's min–max and a table of
    every seed's worst with the method's rank in that seed, and the target against each
    method seed by seed (:func:`_head_to_head`)."""
    lines = [f"mean over the finished runs of seeds {', '.join(map(str, seeds))} (the worst task is taken "
             f"in each run, then averaged)\n"] if seeds else []
    base = next(iter(per_field))
    for f, (ftasks, ftable) in per_field.items():
        if f != base:
            lines.append(f"\n**{f}**\n")
        spread = " | worst min – max | seeds" if seeds else ""
        lines += ["| method | " + " | ".join(ftasks) + f" | worst_{f} | worst, last 20 % | geometric mean{spread}"
                  " | train time (s) |", "|---" * (len(ftasks) + 5 + 2 * bool(seeds)) + "|"]
        for name in methods:
            if name in runs:
                vals = list(ftable[name].values())
                row = (f"| {name} | " + " | ".join(f"{v:.2e}" for v in vals)
                       + f" | {runs[name].get(f'worst_{f}', float('nan')):.2e}"
                       f" | {runs[name].get(f'tail_worst_{f}', float('nan')):.2e} | {_gmean(vals):.2e} | ")
                if seeds:
                    w = [r.get(f"worst_{f}", float("nan")) for r in per_seed_runs[name].values()]
                    row += f"{min(w):.2e} – {max(w):.2e} | {len(w)} | "
                lines.append(row + f"{runs[name].get('train_time_s', float('nan')):.0f} |")
    if seeds and per_seed:
        lines += [f"\n**{metric} per seed** (rank among the methods with that seed)\n",
                  "| method | " + " | ".join(f"seed {s}" for s in seeds) + " |", "|---" * (len(seeds) + 1) + "|"]
        for name in methods:
            if name in per_seed:
                cells = []
                for seed in seeds:
                    v = per_seed[name].get(seed)
                    if v is None:
                        cells.append("")
                        continue
                    cells.append(f"{v:.2e} ({_seed_rank(per_seed, name, seed)})")
                lines.append(f"| {name} | " + " | ".join(cells) + " |")
    if head_to_head:
        lines += [f"\n**{target} against each method, seed by seed** (the seeds both ran; worst_{base}: in how "
                  f"many the target's is lower, and the method's mean over them divided by the target's; p: the "
                  f"chance of at least that many lower ones if each seed were a coin toss)\n",
                  f"| method | seeds | {target} lower | method / {target} | {target} lower, last 20 % "
                  f"| method / {target}, last 20 % | p |", "|---" * 7 + "|"]
        for name in methods:
            if (h := head_to_head.get(name)) is not None:
                n = len(h["seeds"])
                lines.append(f"| {name} | {n} | {h['wins_final']} of {n} | {h['ratio_final']:.2f} | "
                             f"{h['wins_tail']} of {n} | {h['ratio_tail']:.2f} | {h['p_final']:.2f} |")
    if shown:
        lines.append("\nwith " + " ".join(f"--set {o}" for o in shown))
    for name in methods:
        if name in variants and name in runs:
            lines.append(f"\n{name}: {variants[name].rule} with options {dict(variants[name].options)}")
    not_run = [m for m in missing if m not in other_config]
    if not_run:
        lines.append(f"\nnot run yet: {', '.join(not_run)}")
    if other_config:
        lines.append(f"\n{OTHER_CONFIG}: {', '.join(other_config)}")
    for name, why in inapplicable.items():
        lines.append(f"\n{name} cannot run with these overrides: {why}")
    return "\n".join(lines) + "\n"


def _missing_runs(methods, per_seed_runs, inapplicable, seeds, units, run_dir) -> tuple[list[str], list[str]]:
    """The runs a comparison lacks (``"name"`` when a method has none, ``"name/seed<k>"``
    for a seed it lacks) and, of those, the ones whose folders hold a finished run of
    another configuration (an earlier default, other ``--set`` values), named per seed
    where only some seeds' folders hold one, so that they are not reported as not run."""
    missing = [name for name in methods if name not in per_seed_runs and name not in inapplicable]
    if seeds:
        missing += [f"{name}/seed{seed}" for name in methods if name in per_seed_runs for seed in seeds
                    if seed not in per_seed_runs[name]]

    def held(label: str) -> list[bool]:              # does each seed's folder hold a finished run?
        name, _, seed = label.partition("/seed")
        return [(run_dir(name, s) / "result.h5").is_file() for s in ([int(seed)] if seed else units)]

    def per_seed_if_mixed(label: str) -> list[str]:
        h = held(label)
        return [label] if "/seed" in label or not seeds or len(set(h)) == 1 else [f"{label}/seed{s}" for s in units]

    missing = [m for label in missing for m in per_seed_if_mixed(label)]
    return missing, [label for label in missing if all(held(label))]


def _draw_comparison(entry, out, per_field, runs, per_seed_runs, seeds, *, quick: bool) -> None:
    """``comparison.png`` (the entry's field) and ``comparison_<field>.png``: per method
    the error per task and the worst task (over seeds: the means, whiskers min – max)."""
    from .plot import comparison_chart

    over = f" (mean over seeds {', '.join(map(str, seeds))}, min–max)" if seeds else ""
    base = next(iter(per_field))
    shown_as = {name: name for name in runs}          # a method with fewer seeds than the others says so
    if seeds and len({len(done) for done in per_seed_runs.values()}) > 1:
        shown_as = {name: f"{name} ({len(per_seed_runs[name])} of {len(seeds)} seeds)" for name in runs}
    for f, (ftasks, ftable) in per_field.items():
        worst = {shown_as[n]: float(r.get(f"worst_{f}", float("nan"))) for n, r in runs.items()}
        spread = None
        if seeds:                                     # min and max over the seeds of each method's worst task
            spread = {shown_as[n]: (min(w), max(w)) for n, done in per_seed_runs.items()
                      if (w := [float(r.get(f"worst_{f}", float("nan"))) for r in done.values()])}
        comparison_chart(out / "figures" / ("comparison.png" if f == base else f"comparison_{f}.png"), ftasks,
                         {shown_as[n]: v for n, v in ftable.items()}, worst, ranges=spread,
                         target=shown_as.get(entry.target), label=f,
                         title=f"{entry.id}: {f} per task" + (" (quick)" if quick else "") + over)


def _compare(entry: Entry, *, quick: bool, overrides: dict, out: Path, device, resume: bool,
             progress: bool, only: Sequence[str] | None = None, shown: Sequence[str] = (),
             seeds: Sequence[int] | None = None, check: bool = False) -> Report | Plan | None:
    """One run per method (``out/<method>/``), or per method and seed
    (``out/<method>/seed<k>/``); table, figure and the target's checks (``None`` on
    the ranks other than 0 of a torch.distributed group)."""
    from . import mtl
    from .api import checked_device, solve
    from .config import load_run

    methods = list(entry.quick.methods) if quick and entry.quick.methods else list(entry.methods)
    if seeds is None:
        seeds = entry.quick.seeds if quick else entry.seeds
    seeds = list(seeds)
    if len(set(seeds)) != len(seeds):
        raise ConfigError("seeds", f"seeds repeat: {seeds}")
    if seeds and SEED_KEY in overrides:
        raise ConfigError("seeds", f"a comparison over seeds sets {SEED_KEY} for each run; "
                                   f"give the seeds, not {SEED_KEY}")
    for name in entry.variants:
        if name in mtl.AGGREGATORS or name in mtl.WEIGHTINGS:
            raise ConfigError(f"variants.{name}", f"{name!r} is the name of a rule of sciml.mtl; "
                                                  f"give the variant another name")
    if entry.target not in methods:
        raise ConfigError("target", f"target {entry.target!r} is not among the methods {methods}")
    for name in only or ():
        if name not in methods:
            raise ConfigError("methods", f"{name!r} is not a method of {entry.id!r}"
                                         f"{' (quick)' if quick else ''}; allowed: {', '.join(methods)}")
    problem = Path(entry.root) / entry.problem
    units = seeds or [None]             # None: one run per method at the configured seed

    def run_dir(name, seed):
        return out / name if seed is None else out / name / f"seed{seed}"

    def settings(name, seed):
        extra = {} if seed is None else {SEED_KEY: seed}
        return {**overrides, **method_overrides(name, entry.variants), **extra}

    # validates every method's configuration before any run; with --methods, a method not
    # run now whose configuration the overrides make invalid (an option only the target
    # takes, say) is left out of the table with the reason, never silently compared
    configs, inapplicable = {}, {}
    for name in methods:
        try:
            for seed in units:
                configs[name, seed] = load_run(problem, solver=entry.solver, overrides=settings(name, seed)).yaml_text
        except ConfigError as err:
            if only is None or name in only:
                raise
            inapplicable[name] = str(err)
    now = [(name, seed) for name in (methods if only is None else [m for m in methods if m in only]) for seed in units]
    if check:
        checked_device(device, "auto")
        return Plan(entry, quick, out, [(run_dir(n, sd), _state(run_dir(n, sd), configs[n, sd], resume))
                                        for n, sd in now],
                    note="".join(f"  {n}: left out of the table, {why}\n" for n, why in inapplicable.items()).rstrip())
    pending = [(name, seed) for name, seed in now
               if not (resume and finished_run(run_dir(name, seed), configs[name, seed]) is not None)]
    if resume:              # before any run: a folder that --resume would refuse stops the comparison now
        from .api import check_resume

        for name, seed in pending:
            check_resume(run_dir(name, seed), configs[name, seed])
    # under torchrun the runs are dealt out to the processes, each training alone on its
    # device; every rank has made its list before any run starts, and rank 0 waits for
    # all before it reads them back
    rank, world = distributed.rank(), distributed.world_size()
    distributed.barrier()
    with distributed.independent():
        mine = pending[rank::world]
        for i, (name, seed) in enumerate(mine):
            where = run_dir(name, seed).relative_to(out)
            if world > 1:             # one write per line, so that the ranks' lines do not interleave
                sys.stdout.write(f"rank {rank}/{world}: {where} ({i + 1} of its {len(mine)} runs)\n")
                sys.stdout.flush()
            elif progress:            # which of the runs the next progress bar is
                print(f"run {i + 1}/{len(mine)}: {where}" + (f" ({len(now) - len(pending)} finished ones kept)"
                                                             if len(now) > len(pending) else ""), flush=True)
            solve(problem, solver=entry.solver, overrides=settings(name, seed), out=run_dir(name, seed),
                  device=device, resume=resume, progress=progress and rank == 0)
    distributed.barrier()
    if not distributed.is_main():
        return None
    per_seed_runs = {}                  # method -> {seed: metrics} of the finished runs
    for name in methods:
        if name in inapplicable:
            continue
        done = {seed: r for seed in units if (r := finished_run(run_dir(name, seed), configs[name, seed])) is not None}
        if done:
            per_seed_runs[name] = done
    runs = {name: _mean_metrics(done) for name, done in per_seed_runs.items()}
    missing, other_config = _missing_runs(methods, per_seed_runs, inapplicable, seeds, units, run_dir)
    checks = entry.checks(quick)
    if entry.target in runs:
        for metric, _, _ in checks:
            if metric not in runs[entry.target]:
                raise ConfigError("metric", f"the run has no metric {metric!r}; it has {sorted(runs[entry.target])}")
        values = {m: float(runs[entry.target][m]) for m, _, _ in checks}
    else:
        values = {m: float("nan") for m, _, _ in checks}
    comparison = {name: float(r.get(entry.metric, float("nan"))) for name, r in runs.items()}
    per_seed = ({name: {seed: float(r.get(entry.metric, float("nan"))) for seed, r in done.items()}
                 for name, done in per_seed_runs.items()} if seeds else {})
    # per-task errors: rel_l2_<field>_eps<value> at the final time, for every method;
    # the entry's field first, then every other field the runs report (BGK: rho u, E)
    base = entry.metric.removeprefix("worst_")
    fields = [base] + sorted({m.removeprefix("worst_") for r in runs.values() for m in r
                              if m.startswith("worst_rel_l2_")} - {base})
    per_field = {f: _per_task(runs, f) for f in fields}
    tasks, table = per_field[base]
    if runs:
        _draw_comparison(entry, out, per_field, runs, per_seed_runs, seeds, quick=quick)
    gmean = {name: _gmean(table[name].values()) for name in runs}
    head_to_head = _head_to_head(per_seed_runs, entry.target, base) if seeds else {}
    (out / "comparison.md").write_text(_comparison_markdown(
        methods, runs, per_field, seeds=seeds, per_seed_runs=per_seed_runs, per_seed=per_seed, metric=entry.metric,
        shown=shown, missing=missing, inapplicable=inapplicable, variants=entry.variants,
        other_config=other_config, target=entry.target, head_to_head=head_to_head))
    report = Report(entry, quick, values, {m: t for m, _, t in checks}, runs.get(entry.target, {}), out,
                    comparison, missing, list(shown), inapplicable, seeds, per_seed, other_config, head_to_head)
    (out / "validation.json").write_text(json.dumps({
        **_provenance(),
        "id": entry.id, "quick": quick, "metric": entry.metric, "target": entry.target, "value": report.value,
        "tolerance": report.tolerance, "passed": report.passed, "best": report.best_ok, "missing": missing,
        "other_configuration": other_config,
        "inapplicable": inapplicable, "overrides": report.overrides, "seeds": seeds,
        "variants": {n: {"rule": v.rule, "options": dict(v.options)} for n, v in entry.variants.items()},
        "comparison": comparison, "per_seed": {n: {str(k): v for k, v in d.items()} for n, d in per_seed.items()},
        "per_task": table, "geometric_mean": gmean, "head_to_head": head_to_head,
        "per_field": {f: ft for f, (_, ft) in per_field.items()}, "runs": runs,
        "runs_per_seed": {n: {str(k): r for k, r in d.items()} for n, d in per_seed_runs.items()} if seeds else {}},
        indent=2))
    return report

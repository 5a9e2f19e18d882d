"""Command line: ``sciml solve``, ``sciml reproduce``, ``sciml list``.

A bad configuration ends with one line naming the key and what is allowed, exit
code 2, no traceback, nothing written.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

EXIT_CONFIG = 2


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="sciml", description="Scientific machine learning for kinetic equations and PDEs.")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("solve", help="solve a configured problem (YAML)")
    s.add_argument("file", help="problem YAML file, e.g. problems/kinetic/lt_inflow_kn1e-3.yaml")
    s.add_argument("--solver", help="solver preset replacing the problem's (e.g. reference)")
    s.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value, e.g. --set solver.training.steps=500 (repeatable)")
    s.add_argument("--out", default=None, help="output directory (default: runs/<problem name>)")
    s.add_argument("--device", default=None, help="cpu, cuda or cuda:N (default: the solver's setting)")
    s.add_argument("--resume", action="store_true", help="continue from the last checkpoint in --out")
    s.add_argument("--quiet", action="store_true", help="no progress bar")
    s.add_argument("--check", action="store_true",
                   help="validate the configuration and print it resolved (preset and defaults filled in); "
                        "run and write nothing")

    r = sub.add_parser("reproduce", help="run a validation entry and compare with the published number")
    r.add_argument("id", help="validation entry id (see `sciml list`)")
    r.add_argument("--quick", action="store_true", help="small CPU-sized version (what CI runs)")
    r.add_argument("--out", default=None, help="output directory (default: runs/reproduce/<id>)")
    r.add_argument("--device", default=None)
    r.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value on top of the entry's (repeatable; recorded with the results)")
    r.add_argument("--methods", default=None, metavar="A,B,...",
                   help="comparison entries: run only these methods now; the table takes every finished "
                        "run in --out with the same configuration")
    r.add_argument("--seeds", default=None, metavar="0,1,...",
                   help="comparison entries: run every method once per training seed (out/<method>/seed<k>) "
                        "and compare the means (default: the entry's seeds)")
    r.add_argument("--variant", dest="variants", action="append", default=[], metavar="NAME=SPEC",
                   help="comparison entries: one more method, a rule with options, e.g. "
                        "--variant 'hrgrad_a0={rule: hrgrad, options: {alpha: 0}}' (repeatable; then "
                        "--methods hrgrad_a0 runs it alone)")
    r.add_argument("--resume", action="store_true",
                   help="keep finished runs in --out and continue interrupted ones from their checkpoints")
    r.add_argument("--quiet", action="store_true")
    r.add_argument("--check", action="store_true",
                   help="validate the entry and every run's configuration and list the runs it would make "
                        "(finished, to resume, to run); run and write nothing")

    sub.add_parser("list", help="list problems, solver presets and validation entries")

    k = sub.add_parser("keys", help="the configuration's keys: type, bounds, default, documentation")
    k.add_argument("path", nargs="?", default="", help="only this key and what is under it, e.g. solver.training")

    w = sub.add_parser("show", help="print a saved run's summary (its folder or result.h5), or a comparison's table")
    w.add_argument("run", help="a run folder (holding result.h5), e.g. runs/lt, or a comparison's --out folder")
    w.add_argument("--config", action="store_true", help="also print the resolved configuration it ran with")
    w.add_argument("--figures", action="store_true", help="draw its figures again (into RUN/figures)")

    m = sub.add_parser("metacolloc", help="MetaColloc tools")
    msub = m.add_subparsers(dest="action", required=True)
    t = msub.add_parser("train", help="meta-train a basis on random fields (writes OUT/basis.pt + basis.json)")
    t.add_argument("file", nargs="?", default=None, help="training YAML (default: solvers/metacolloc_train_2d.yaml)")
    t.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a value, e.g. --set steps=200 (repeatable)")
    t.add_argument("--out", default=None, help="output directory (default: runs/metacolloc_basis_<dim>d)")
    t.add_argument("--device", default=None)
    t.add_argument("--resume", action="store_true", help="continue from the last checkpoint in --out")
    t.add_argument("--quiet", action="store_true")
    t.add_argument("--check", action="store_true", help="validate and print the resolved training configuration; "
                                                        "train and write nothing")
    return p


def _metacolloc(args) -> int:
    import yaml

    from . import distributed, shipped
    from .api import checked_device
    from .config.loader import read_yaml
    from .config.problem import MetaTrainSpec
    from .config.schema import apply_overrides, build, to_dict
    from .solvers.metacolloc_train import meta_train

    source = args.file or str(shipped.path("solvers", "metacolloc_train_2d.yaml"))
    data = read_yaml(source, what="training file")
    data = apply_overrides(data, args.overrides)
    spec = build(MetaTrainSpec, data, source=source)
    checked_device(args.device, spec.device, key="device")
    out = Path(args.out) if args.out else Path("runs") / f"metacolloc_basis_{spec.dim}d"
    if args.check:
        print(yaml.safe_dump(to_dict(spec), sort_keys=False), end="")
        print(f"# configuration OK ({source}); training would write {out}/ (nothing written)")
        return 0
    command = " ".join(["sciml metacolloc train", args.file or "solvers/metacolloc_train_2d.yaml"]
                       + [f"--set {o}" for o in args.overrides] + (["--out", args.out] if args.out else []))
    with distributed.process_group():      # under torchrun: a larger meta-batch, rank 0 writes and prints
        manifest = meta_train(spec, out, resume=args.resume, progress=not args.quiet, device=args.device,
                              command=command, config_text=yaml.safe_dump(to_dict(spec), sort_keys=False))
        if not distributed.is_main():
            return 0
    v = manifest["validation"]
    print(f"held-out RMS error of the ridge fit: {v['untrained']:.3e} untrained -> {v['trained']:.3e} trained "
          f"({manifest['train_seconds_total']:.0f} s)")
    print(f"wrote {out / 'basis.pt'} and {out / 'basis.json'}")
    return 0


def _solve(args) -> int:
    from . import distributed
    from .api import solve
    from .config import load_run

    run = load_run(args.file, solver=args.solver, overrides=args.overrides)  # validate before writing
    out = Path(args.out) if args.out else Path("runs") / run.config.problem.name
    if args.check:
        from .api import check_resume, checked_device

        checked_device(args.device, getattr(run.config.solver, "device", "cpu"))
        if args.resume:
            check_resume(out, run.yaml_text)
        print(run.yaml_text, end="")
        print(f"# configuration OK ({run.source}); a run would write {out}/ (nothing written)")
        return 0
    if not args.resume and (out / "result.h5").exists() and os.environ.get("RANK", "0") == "0":
        print(f"sciml: replacing the run in {out} (its result.h5 stays until the new one is written; "
              "--out DIR keeps both, --resume continues it)", file=sys.stderr)
    with distributed.process_group():      # under torchrun: one group, rank 0 writes and prints
        sol = solve(args.file, solver=args.solver, overrides=args.overrides, out=out, device=args.device,
                    resume=args.resume, progress=not args.quiet)
        if not distributed.is_main():
            return 0
        world = distributed.world_size()
    print(sol.summary())
    if world > 1:
        print(f"trained by {world} processes (torch.distributed)")
    print(f"wrote {out / 'result.h5'}")
    for f in sol.figures:
        print(f"wrote {f}")
    return 0


def _reproduce(args) -> int:
    import datetime

    import yaml

    from . import distributed
    from .config import ConfigError
    from .validation import check_launch, load_entry, reproduce

    entry = load_entry(args.id)
    out = Path(args.out) if args.out else Path("runs") / "reproduce" / (args.id + ("-quick" if args.quick else ""))
    methods = [m.strip() for m in args.methods.split(",") if m.strip()] if args.methods is not None else None
    seeds = None
    if args.seeds is not None:
        try:
            seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
        except ValueError:
            raise ConfigError("--seeds", f"expected comma-separated integers, got {args.seeds!r}") from None
        if not seeds or min(seeds) < 0:
            raise ConfigError("--seeds", f"expected non-negative integers, got {args.seeds!r}")
    variants = {}
    for text in args.variants:
        name, eq, spec = text.partition("=")
        name = name.strip()
        try:
            value = yaml.safe_load(spec) if eq else None
        except yaml.YAMLError:
            value = None
        if not name.isidentifier() or not isinstance(value, dict):
            raise ConfigError("--variant", f"expected NAME={{rule: RULE, options: {{...}}}}, got {text!r}")
        if name in variants:
            raise ConfigError(f"--variant {name}", "given twice")
        variants[name] = value
    check_launch(entry)                    # before the process group: refused without a rendezvous
    if args.check:
        plan = reproduce(entry, quick=args.quick, out=out, device=args.device, resume=args.resume,
                         overrides=args.overrides, methods=methods, seeds=seeds, variants=variants, check=True)
        print(plan.text())
        return EXIT_CONFIG if getattr(plan, "refused", []) else 0
    # under torchrun the runs of a comparison are dealt out to the processes; rank 0 reports
    with distributed.process_group(timeout=datetime.timedelta(days=7)):   # ranks wait for the slowest's runs
        report = reproduce(entry, quick=args.quick, out=out, device=args.device, resume=args.resume,
                           progress=not args.quiet, overrides=args.overrides, methods=methods, seeds=seeds,
                           variants=variants)
    if report is None:
        return 0
    print(report.text())
    return 0 if report.passed else 1


def _list(args) -> int:
    from . import shipped
    from .config.loader import available_presets
    from .validation import list_entries

    def shown(p: Path) -> str:            # relative to the working directory where it can be
        try:
            return str(p.resolve().relative_to(Path.cwd().resolve()))
        except ValueError:
            return str(p)

    dirs = shipped.search_dirs("problems")
    print(f"problems ({', '.join(shown(d) + '/' for d in dirs) or 'none found'}):")
    seen = set()
    for d in dirs:
        for p in sorted(d.glob("**/*.yaml")):
            if p.relative_to(d) not in seen:
                seen.add(p.relative_to(d))
                print(f"  {shown(p)}")
    print("solver presets (solvers/; `--solver NAME`):")
    for name in available_presets(Path.cwd()):
        print(f"  {name}")
    print("validation entries (sciml reproduce ID):")
    for e in list_entries():
        print(f"  {e.id:28s} {e.title}")
    return 0


def _keys(args) -> int:
    from .config.problem import RunConfig
    from .config.schema import describe

    print(describe(RunConfig, args.path))
    return 0


def _show(args) -> int:
    import json

    from .config import ConfigError
    from .solvers.base import Solution

    table = Path(args.run) / "comparison.md"
    if table.is_file() and not (Path(args.run) / "result.h5").exists():     # a comparison of `sciml reproduce`
        print(table.read_text(), end="")
        return 0
    try:
        sol = Solution.load(args.run)
    except (FileNotFoundError, OSError) as exc:
        raise ConfigError("run", f"{exc} (give a run folder written by `sciml solve --out`)") from None
    meta = sol.meta
    try:
        versions = json.loads(meta.get("versions", "{}"))
    except (TypeError, ValueError):
        versions = {}
    made = ", ".join(x for x in [f"created {meta['created']}" if "created" in meta else "",
                                 f"git {str(meta['git_revision'])[:12]}" if meta.get("git_revision") else "",
                                 " ".join(f"{k} {v}" for k, v in versions.items() if k in ("sciml", "torch")),
                                 f"{meta['world_size']} processes" if int(meta.get("world_size", 1) or 1) > 1 else ""]
                     if x)
    print(sol.summary())
    if made:
        print(made)
    if args.config:
        print(sol.config_text, end="" if sol.config_text.endswith("\n") else "\n")
    if args.figures:
        folder = Path(args.run) if Path(args.run).is_dir() else Path(args.run).parent
        for f in sol.draw(folder / "figures"):
            print(f"wrote {f}")
    return 0


def main(argv: list[str] | None = None) -> int:
    from .config import ConfigError
    from .errors import SolveFailed
    from .train import CheckpointMismatch

    args = _parser().parse_args(argv)
    try:
        return {"solve": _solve, "reproduce": _reproduce, "list": _list, "show": _show, "keys": _keys,
                "metacolloc": _metacolloc}[args.command](args)
    except (ConfigError, CheckpointMismatch) as exc:
        print(f"sciml: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except SolveFailed as exc:           # a numerical failure the message explains
        print(f"sciml: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("sciml: interrupted; resume with --resume", file=sys.stderr)
        return 130
    except BrokenPipeError:               # `sciml list | head`: the reader left, stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

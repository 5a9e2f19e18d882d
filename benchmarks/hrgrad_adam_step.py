"""How far Adam moves the parameters under each update length (docs/hrgrad-measurements.md).

Trains the mid-size BGK multi-eps problem of docs/hrgrad-measurements.md (``BGKMID``) for a few
hundred steps with the plain sum, HRGrad with ConFIG's projection length and HRGrad
with the unit length (the default), both with the equal-rate direction that the table
of docs/hrgrad-measurements.md was measured with (HRGrad's default direction then), and prints the trainer's ``step_rms`` (the RMS
over the parameters of the optimiser's update, divided by the learning rate) at a few
steps, the final loss and the worst-eps errors. Runs are kept in ``--out`` and reused
(finished runs with the same configuration are not run again).

    python benchmarks/hrgrad_adam_step.py                      # 3 runs x 500 steps, about 18 min on 2 cores
    python benchmarks/hrgrad_adam_step.py --steps 100 --out runs/adam-quick
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
PROBLEM = ROOT / "problems/hrgrad/bgk_case_I_multi_eps.yaml"
BGKMID = ["solver.network.width=64", "solver.density_network.width=32", "solver.velocity_nodes=32",
          "solver.points={interior: 256, boundary: 64, initial: 128}", "solver.training.lr=2.0e-3",
          "solver.training.schedule={kind: step, every: 100, gamma: 0.9}"]
RULES = {   # name -> the overrides that select it
    "sum": ["solver.training.aggregator=sum"],
    "hrgrad-projection": ["solver.training.aggregator=hrgrad",
                          "solver.training.aggregator_options={length: projection, direction: equal}"],
    "hrgrad-unit": ["solver.training.aggregator=hrgrad",
                    "solver.training.aggregator_options={length: unit, direction: equal}"],
}


def run(name: str, steps: int, log_every: int, seed: int, out: Path) -> dict:
    """The rule's run (reused when ``out/name/result.h5`` holds the same configuration)."""
    from sciml.api import solve
    from sciml.config import load_run
    from sciml.io import read_result
    from sciml.validation import finished_run

    overrides = BGKMID + RULES[name] + [f"solver.training.steps={steps}", f"solver.training.log_every={log_every}",
                                        f"solver.training.seed={seed}"]
    text = load_run(PROBLEM, overrides=overrides).yaml_text
    if finished_run(out / name, text) is None:
        solve(PROBLEM, overrides=overrides, out=out / name)
    saved = read_result(out / name / "result.h5")
    return {"history": saved["history"], "metrics": saved["metrics"]}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", type=int, default=500)
    ap.add_argument("--log-every", type=int, default=10)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--rules", default=",".join(RULES), help=f"comma-separated, of {', '.join(RULES)}")
    ap.add_argument("--out", type=Path, default=Path("runs/hrgrad-adam-step"))
    args = ap.parse_args(argv)
    rules = [r for r in args.rules.split(",") if r]
    for r in rules:
        if r not in RULES:
            ap.error(f"--rules: unknown {r!r}; allowed: {', '.join(RULES)}")
    shown = [s for s in (0, 10, 50, 100, 200, 300) if s < args.steps] + [args.steps - 1]
    print(f"step_rms (update RMS / lr) at steps {shown}; loss and worst-eps errors at the end")
    print(f"{'rule':20s} " + " ".join(f"{s:>7d}" for s in shown) + "     loss  rho      rho u    E")
    for name in rules:
        res = run(name, args.steps, args.log_every, args.seed, args.out)
        h, m = res["history"], res["metrics"]
        steps, rms = np.asarray(h["step"]), np.asarray(h["monitor_step_rms"], dtype=float)
        at = [float(rms[np.flatnonzero(steps == s)[0]]) if (steps == s).any() else float("nan") for s in shown]
        print(f"{name:20s} " + " ".join(f"{v:7.3f}" for v in at)
              + f"  {float(np.asarray(h['loss'])[-1]):7.3g}  {m['worst_rel_l2_rho']:.4f}  "
              f"{m['worst_rel_l2_momentum']:.3f}  {m['worst_rel_l2_energy']:.3f}")


if __name__ == "__main__":
    main()

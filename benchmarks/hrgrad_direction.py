"""The equal-cosine direction on a network's own task gradients.

At the first step of a configured multi-eps problem (the mid-size settings of
docs/hrgrad-measurements.md), one batch: the K task gradients, the singular values of the unit
gradients (relative to the largest), and the cosine of the update with every task
gradient for HRGrad's exact direction (``alpha = 0``: equal cosines), TorchJD's
ConFIG (``torch.linalg.pinv`` with its default cut-off ``max(K, n)`` float32 epsilons)
HRGrad with the cut-off ``rcond``, HRGrad's max-min direction and the plain sum. Shows how the exact solve behaves when the unit
gradients are nearly dependent.

    python benchmarks/hrgrad_direction.py                 # linear transport, t in [0, 1], K = 7
    python benchmarks/hrgrad_direction.py --problem bgk    # BGK Case I, K = 4
"""
from __future__ import annotations

import argparse
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]

PROBLEMS = {   # the mid-size settings of docs/hrgrad-measurements.md
    "lt": ("problems/hrgrad/lt_inflow_multi_eps.yaml",
           ["solver.network.width=64", "solver.density_network.width=64", "solver.velocity_nodes=16",
            "solver.points={interior: 512, boundary: 128, initial: 128}", "problem.t=[0.0, 1.0]"]),
    "bgk": ("problems/hrgrad/bgk_case_I_multi_eps.yaml",
            ["solver.network.width=64", "solver.density_network.width=32", "solver.velocity_nodes=32",
             "solver.points={interior: 256, boundary: 64, initial: 128}"]),
}


def first_step_gradients(problem_file: str, overrides: list[str], seed: int = 0):
    """``(G, losses)``: the ``K x n`` task gradients and losses of the first training
    step of the configured multi-eps problem (what ``TaskBackward`` sees)."""
    import dataclasses

    from sciml import mtl
    from sciml.api import SOLVER_BUILDERS, build_run_problem
    from sciml.config import load_run

    cfg = load_run(ROOT / problem_file, overrides=overrides).config
    problem = build_run_problem(cfg)
    solver = SOLVER_BUILDERS[type(cfg.solver)](dataclasses.replace(cfg.solver, device="cpu"), device="cpu")
    torch.manual_seed(seed)
    model = solver.build(problem, torch.device("cpu"))
    params = [p for p in model.parameters() if p.requires_grad]
    terms = model.loss(0, torch.Generator().manual_seed(seed))
    hook = mtl.TaskBackward()
    _, losses = hook.task_losses(terms)
    return hook.task_gradients(losses, params), torch.stack([x.detach() for x in losses])


def main(argv=None) -> None:
    from sciml import mtl

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--problem", choices=sorted(PROBLEMS), default="lt")
    ap.add_argument("--rcond", default="0.001,0.01,0.03,0.1", help="cut-offs to compare (comma-separated)")
    args = ap.parse_args(argv)
    G, losses = first_step_gradients(*PROBLEMS[args.problem])
    K, n = G.shape
    U = G.double() / G.double().norm(dim=1, keepdim=True)
    sv = torch.linalg.svdvals(U)
    print(f"{args.problem}: K = {K} tasks, n = {n} parameters; TorchJD's pinv cut-off max(K, n) * eps32 = "
          f"{max(K, n) * torch.finfo(torch.float32).eps:.3g}")
    print("singular values of the unit gradients / largest:", " ".join(f"{v:.2g}" for v in (sv / sv[0]).tolist()))
    rules = [("HRGrad exact (alpha=0)", mtl.aggregator("hrgrad", alpha=0, direction="equal")), ("ConFIG (TorchJD)", mtl.aggregator("config")),
             ("HRGrad maxmin (alpha=0)", mtl.aggregator("hrgrad", alpha=0, direction="maxmin")),
             ("HRGrad proportional (a=0)", mtl.aggregator("hrgrad", alpha=0, direction="proportional")),
             ("Nash-MTL (TorchJD)", mtl.aggregator("nashmtl")),
             ("sum", mtl.aggregator("sum"))]
    rules += [(f"HRGrad alpha=0 rcond={rc}", mtl.aggregator("hrgrad", alpha=0, rcond=float(rc)))
              for rc in args.rcond.split(",") if rc]
    print(f"{'rule':28s} {'min cos':>8s} {'max cos':>8s}")
    for name, rule in rules:
        u = rule(G, losses).double()
        cos = (U @ u) / u.norm()
        print(f"{name:28s} {cos.min().item():8.3f} {cos.max().item():8.3f}")


if __name__ == "__main__":
    main()

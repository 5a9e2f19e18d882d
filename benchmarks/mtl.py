"""Multi-task training steps: the cost of the K task gradients and of each
aggregator, against the single summed-loss step on the same batch.

The model: one eps-conditioned even-odd APNN (``sciml.solvers.multitask``) for
the linear transport inflow problem at K Knudsen numbers between 1 and 1e-8, each
task with its own points (``--points`` interior points per task) and forward calls.
Per K, measured in one run:

* ``summed``: one backward of ``sum_k L_k`` (the plain APNN step: the baseline);
* ``grads:per_task``: K ``autograd.grad`` calls, one per task loss (what
  ``sciml.mtl.TaskBackward`` does; each traverses only its task's graph);
* ``grads:batched``: one ``autograd.grad`` with ``is_grads_batched=True`` over the K
  losses (vmap over the backward, the approach of TorchJD's autojac);
* one full optimizer step with each aggregator (``hrgrad``, the TorchJD baselines) and
  with each loss weighting, through ``TaskBackward``;
* ``encoding:<kind>``: the summed step with another eps encoding (``--encodings``;
  ``summed`` uses the input encoding); ``film_per_point`` is FiLM with its modulation
  run on every point instead of once per task call (``constant_code=False``).

Times are medians over ``--steps`` repetitions; peak memory is the peak RSS of a
fresh process per (K, variant) on the CPU (VmHWM) or CUDA's max allocated on the GPU.

    python benchmarks/mtl.py                       # CPU, K = 2, 4, 8
    python benchmarks/mtl.py --device cuda --tasks 2,4,8,16 --width 256
"""
from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import statistics
import time

import numpy as np
import torch

from common import peak_mib, sync


def make_model(K: int, width: int, points: int, device, encoding: str = "input"):
    from sciml.nn.conditioning import ENCODINGS, FiLMNet
    from sciml.domain import Box, VelocitySpace
    from sciml.physics import Inflow, LinearTransportProblem
    from sciml.physics.multitask import MultiEps
    from sciml.solvers.apnn_lt import EvenOdd, NetSpec, PointSpec
    from sciml.solvers.multitask import MultiTask

    torch.manual_seed(0)
    single = LinearTransportProblem(eps=1.0, domain=Box.of(t=(0.0, 0.1), x=(0.0, 1.0)),
                                    velocity=VelocitySpace.gauss_legendre(-1, 1, 30), f0=lambda x, v: 0 * x * v,
                                    left=Inflow(1.0), right=Inflow(0.0), zero_initial_density=True)
    eps = np.logspace(0, -8, K)
    kind = "film" if encoding == "film_per_point" else encoding
    m = MultiTask(MultiEps.of(single, eps), EvenOdd, net=NetSpec("mlp", width, 4, "tanh"),
                  points=PointSpec(points, points // 2, points // 2), positive=True, encoding=ENCODINGS[kind]())
    if encoding == "film_per_point":
        for net in m.modules():
            if isinstance(net, FiLMNet):
                net.constant_code = False
    return m.to(device)


def run(K, variant, width, points, device, steps, q=None):
    from sciml import mtl
    from sciml.mtl import TaskBackward

    encoding = variant[9:] if variant.startswith("encoding:") else "input"
    m = make_model(K, width, points, device, encoding)
    params = [p for p in m.parameters()]
    opt = torch.optim.Adam(params, 1e-3)
    gens = [torch.Generator(device=device).manual_seed(s) for s in range(steps + 3)]
    hook = None
    if variant.startswith("agg:"):
        hook = TaskBackward(aggregator=mtl.aggregator(variant[4:]), diagnose=False)
    elif variant.startswith("weighting:"):
        hook = TaskBackward(weighting=mtl.weighting(variant[10:]), diagnose=False)

    def step(i):
        opt.zero_grad(set_to_none=True)
        terms = m.loss(i, gens[i])
        if variant == "summed" or variant.startswith("encoding:"):
            torch.stack(list(terms.values())).sum().backward()
        elif variant == "grads:per_task":
            _, losses = TaskBackward().task_losses(terms)
            TaskBackward.task_gradients(losses, params)
        elif variant == "grads:batched":
            _, losses = TaskBackward().task_losses(terms)
            L = torch.stack(losses)
            torch.autograd.grad(L, params, grad_outputs=torch.eye(K, device=L.device, dtype=L.dtype),
                                is_grads_batched=True, allow_unused=True, materialize_grads=True)
        else:
            hook(terms, params)
        if variant == "summed" or variant.startswith("encoding:") or hook is not None:
            opt.step()

    for i in range(2):
        step(i)
    sync(device)
    if torch.device(device).type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    times = []
    for i in range(steps):
        t0 = time.perf_counter()
        step(i + 2)
        sync(device)
        times.append(time.perf_counter() - t0)
    res = {"K": K, "variant": variant, "device": device, "width": width, "points_per_task": points,
           "parameters": sum(p.numel() for p in params), "step_s": statistics.median(times),
           "peak_mem_MiB": peak_mib(device)}
    if q is not None:
        q.put(res)
    return res


def measure(*args):
    device = args[4]
    if torch.device(device).type == "cpu":
        ctx = mp.get_context("spawn")
        q = ctx.Queue()
        p = ctx.Process(target=run, args=(*args, q))
        p.start()
        res = q.get()
        p.join()
        return res
    return run(*args)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--tasks", default="2,4,8", help="values of K")
    ap.add_argument("--width", type=int, default=128)
    ap.add_argument("--points", type=int, default=128, help="interior points per task")
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--aggregators", default="hrgrad,pcgrad,imtlg,mgda,cagrad,nashmtl,alignedmtl,config,upgrad")
    ap.add_argument("--weightings", default="dwa,uncertainty,gradnorm,famo")
    ap.add_argument("--encodings", default="", help="e.g. embedding,film,film_per_point (summed steps)")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    rows = []
    variants = ["summed", "grads:per_task", "grads:batched"] \
        + [f"agg:{a}" for a in args.aggregators.split(",") if a] \
        + [f"weighting:{w}" for w in args.weightings.split(",") if w] \
        + [f"encoding:{e}" for e in args.encodings.split(",") if e]
    for K in [int(k) for k in args.tasks.split(",")]:
        base = None
        for v in variants:
            r = measure(K, v, args.width, args.points, args.device, args.steps)
            base = base or r["step_s"]
            r["ratio_vs_summed"] = r["step_s"] / base
            rows.append(r)
            print(f"K={K:2d} {v:22s} {r['step_s'] * 1e3:9.1f} ms   x{r['ratio_vs_summed']:.2f}   "
                  f"peak {r['peak_mem_MiB']:.0f} MiB", flush=True)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(rows, fh, indent=2)


if __name__ == "__main__":
    main()

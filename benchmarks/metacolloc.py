"""MetaColloc speed and memory, measured in one run.

1. ``derivatives``: the basis values and second derivatives (2D Poisson rows) by
   Taylor-mode jets (ours, :func:`sciml.nn.basis.basis_jets`) against nested
   forward-mode ``jvp`` (``sciml.residual.Forward``, the generic engine; the
   authors' code nests ``torch.func.jacfwd`` the same way), same points, same basis;
   results must agree to 1e-10.
2. ``solve``: assembly and least-squares time and peak memory of the 2D Poisson
   solve against H (untrained bases of each size: the cost does not depend on the
   weights) and against the number of collocation points.
3. ``meta``: one meta-training step with the tasks sharing their points (ours)
   against every task drawing its own points (the authors' way), same sizes.
4. ``accuracy``: the shipped basis on 2D Poisson and the variable-coefficient
   problem: time to the error it reaches (the issue's target: a 2D linear problem to
   1e-6 relative L2 in under 2 s on the CPU). The PINN and finite-difference
   comparison at equal accuracy is the validation entry
   ``sciml reproduce metacolloc_versus_pinn_fd``.

Peak memory: a fresh process per measurement (VmHWM on the CPU, CUDA's max allocated
on a GPU).

    python benchmarks/metacolloc.py                 # CPU
    python benchmarks/metacolloc.py --device cuda
"""
from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import statistics
import time

import torch

from common import peak_mib, sync


def _timed(fn, device, reps):
    out, times = None, []
    for _ in range(reps):
        sync(device)
        t0 = time.perf_counter()
        out = fn()
        sync(device)
        times.append(time.perf_counter() - t0)
    return out, statistics.median(times)


def _poisson_problem():
    from sciml.config import load_run
    from sciml.config.pde import build_pde_problem
    return build_pde_problem(load_run("problems/metacolloc/poisson2d.yaml").config.problem)


def job(kind, args, q):
    torch.manual_seed(0)
    torch.set_default_dtype(torch.float64)
    dev = torch.device(args["device"])
    from sciml.domain.regions import BoxRegion
    from sciml.nn.basis import DualBranchBasis
    from sciml.residual import Forward
    from sciml.solvers.metacolloc import Collocation, UnitMapped, basis_derivatives, solve
    region = BoxRegion.of(x=(0.0, 1.0), y=(0.0, 1.0))
    res = {}
    if kind in ("jets", "jvp"):
        basis = DualBranchBasis(2, args["H"]).to(dev).requires_grad_(False)
        fn = UnitMapped(basis, region.bounds).to(dev)
        pts = {k: v.to(dev) for k, v in region.interior(args["N"], torch.Generator().manual_seed(0)).items()}
        idx = [(), ("x", "x"), ("y", "y")]
        if kind == "jets":
            d, t = _timed(lambda: basis_derivatives(fn, pts, idx), dev, args["reps"])
        else:
            def nested():
                from sciml.residual import derivatives
                with torch.no_grad():
                    return derivatives(fn, pts, idx[1:], engine=Forward())
            d, t = _timed(nested, dev, args["reps"])
        res = {"seconds": t, "checksum": float(sum(v.double().abs().sum() for v in d.values()))}
    elif kind == "solve":
        basis = DualBranchBasis(2, args["H"]).to(dev).requires_grad_(False)
        prob = _poisson_problem()
        opts = Collocation(interior=args["N"], boundary=max(400, int(0.6 * args["N"])))
        sol, t = _timed(lambda: solve(prob, basis, options=opts, device=dev), dev, args["reps"])
        res = {"seconds": t, "assemble": sol.info["time_assemble"], "rank": sol.info["rank"]}
    elif kind in ("meta_shared", "meta_own"):
        from sciml.domain.random_fields import RandomFields, metacolloc_family
        from sciml.solvers.metacolloc import MetaFit
        basis = DualBranchBasis(2, args["H"]).to(dev)
        m = MetaFit(basis, RandomFields(metacolloc_family(2), n_features=512), tasks=args["T"],
                    fit_points=args["N"], test_points=args["N"] // 2, shared_points=(kind == "meta_shared"))
        g = torch.Generator(device=dev).manual_seed(0)

        def step():
            basis.zero_grad()
            m.loss(0, g)["heldout_mse"].backward()
        _, t = _timed(step, dev, args["reps"])
        res = {"seconds": t}
    elif kind == "accuracy":
        from sciml.api import solve as api_solve
        out = {}
        for name in ("poisson2d", "varcoeff2d"):
            api_solve(f"problems/metacolloc/{name}.yaml", overrides={"output.eval_points": 2000, "output.grid": 11})
            t0 = time.perf_counter()      # second call: warm
            s = api_solve(f"problems/metacolloc/{name}.yaml", device=args["device"],
                          overrides={"output.eval_points": 10000, "output.grid": 11})
            out[name] = {"rel_l2_u": s.metrics["rel_l2_u"], "rmse": s.metrics["rmse"],
                         "seconds_solve": s.metrics["time_total"],
                         "seconds_with_load_and_eval": time.perf_counter() - t0}
        res = out
    res["peak_mib"] = peak_mib(dev)
    q.put(res)


def measure(kind, **args):
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    p = ctx.Process(target=job, args=(kind, args, q))
    p.start()
    out = q.get()
    p.join()
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--sizes", default="128,256,512,1024", help="basis sizes H")
    ap.add_argument("--points", default="1000,2000,4000,8000", help="interior collocation points")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--json", default=None, help="also write the results here")
    a = ap.parse_args()
    base = {"device": a.device, "reps": a.reps}
    results = {}
    print("1. basis values + u_xx + u_yy rows, N = 2000 points")
    for H in [int(h) for h in a.sizes.split(",")]:
        j = measure("jets", H=H, N=2000, **base)
        v = measure("jvp", H=H, N=2000, **base)
        results[f"derivatives_H{H}"] = {"jets": j, "nested_jvp": v}
        agree = abs(j["checksum"] - v["checksum"]) / abs(v["checksum"])
        if agree > 1e-10:
            raise SystemExit(f"jets and nested jvp disagree at H = {H}: relative {agree:.1e}")
        print(f"   H = {H:5d}: jets {j['seconds']:.3f} s ({j['peak_mib']:.0f} MiB)   nested jvp {v['seconds']:.3f} s "
              f"({v['peak_mib']:.0f} MiB)   ratio {v['seconds'] / j['seconds']:.1f}x   agree to {agree:.0e}")
    print("2. 2D Poisson solve (assembly + SVD least squares)")
    for H in [int(h) for h in a.sizes.split(",")]:
        r = measure("solve", H=H, N=2000, **base)
        results[f"solve_H{H}_N2000"] = r
        print(f"   H = {H:5d}, N = 2000: {r['seconds']:.3f} s (assembly {r['assemble']:.3f} s), "
              f"peak {r['peak_mib']:.0f} MiB, rank {r['rank']}")
    for N in [int(n) for n in a.points.split(",")]:
        r = measure("solve", H=512, N=N, **base)
        results[f"solve_H512_N{N}"] = r
        print(f"   H =   512, N = {N:5d}: {r['seconds']:.3f} s (assembly {r['assemble']:.3f} s), "
              f"peak {r['peak_mib']:.0f} MiB")
    print("3. meta-training step (H = 512, 16 fields, 2000 fit + 1000 held-out points each)")
    s = measure("meta_shared", H=512, N=2000, T=16, **base)
    o = measure("meta_own", H=512, N=2000, T=16, **base)
    results["meta_step"] = {"shared": s, "own_points": o}
    print(f"   shared points {s['seconds']:.2f} s ({s['peak_mib']:.0f} MiB)   own points per task {o['seconds']:.2f} s "
          f"({o['peak_mib']:.0f} MiB)   ratio {o['seconds'] / s['seconds']:.1f}x")
    print("4. shipped basis, time to its accuracy")
    r = measure("accuracy", **base)
    results["accuracy"] = r
    for name, v in r.items():
        if isinstance(v, dict):
            print(f"   {name:11s} rel. L2 {v['rel_l2_u']:.2e}  RMSE {v['rmse']:.2e}  solve {v['seconds_solve']:.2f} s  "
                  f"(with loading and evaluation {v['seconds_with_load_and_eval']:.2f} s)")
    if a.json:
        with open(a.json, "w") as fh:
            json.dump(results, fh, indent=2)


if __name__ == "__main__":
    main()

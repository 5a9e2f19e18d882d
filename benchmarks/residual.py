"""Training steps per second of the even-odd APNN loss: ours against a plain
implementation written the way the original code works.

Both compute the SAME loss (same networks, same points, same quadrature) and the
script checks that loss and gradients agree to float32 accuracy before timing:

* plain: every quadrature node of both signs evaluated, one
  ``torch.autograd.grad(..., create_graph=True)`` call per derivative and per
  network, velocity averages from separate forward passes, eager mode;
* ours: ``sciml.solvers.apnn_lt.EvenOdd`` — exact parity lets it evaluate only the
  v > 0 nodes, all first derivatives of a network come from one call, averages
  reuse the one batched (points x nodes) evaluation; optionally ``torch.compile``.

Sizes from the issue / the authors' code: networks 4 x 128 and 4 x 256, 512
interior points, 30 quadrature nodes (``--nodes``). Peak memory: CUDA max
allocated on the GPU, peak RSS (VmHWM, includes the ~0.3 GB of the interpreter and
torch) of a fresh subprocess per variant on the CPU.

    python benchmarks/residual.py                 # CPU (and GPU when present)
    python benchmarks/residual.py --device cuda --steps 50 --forward --compile
"""
from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import resource
import time

import torch


def make_problem(nodes: int):
    from sciml.domain import Box, VelocitySpace
    from sciml.physics import Inflow, LinearTransportProblem

    return LinearTransportProblem(
        eps=1e-3, domain=Box.of(t=(0.0, 0.1), x=(0.0, 1.0)), velocity=VelocitySpace.gauss_legendre(-1, 1, nodes),
        f0=lambda x, v: 0.0 * x * v, left=Inflow(lambda t, v: 1.0 + 0.0 * t), right=Inflow(lambda t, v: 0.0 * t),
        zero_initial_density=True)


def make_model(width: int, nodes: int, device, seed=0, engine="reverse"):
    from sciml.residual import ENGINES
    from sciml.solvers.apnn_lt import EvenOdd, NetSpec, PointSpec

    torch.manual_seed(seed)
    return EvenOdd(make_problem(nodes), net=NetSpec(width=width, depth=4), rho_net=NetSpec(width=width, depth=4),
                   points=PointSpec(interior=512, boundary=512, initial=512), positive=True,
                   engine=ENGINES[engine]()).to(device)


def plain_terms(m, batch):
    """The even-odd loss computed the naive way (see module doc)."""
    eps, e2 = m.eps, m.eps**2
    vel = m.problem.velocity
    nodes = vel.nodes(m.device)
    w = vel.weights(m.device) / 2.0  # <.> = 1/2 int
    n, M = batch["interior"]["t"].shape[0], nodes.shape[0]
    t = batch["interior"]["t"].repeat_interleave(M).detach().requires_grad_(True)
    x = batch["interior"]["x"].repeat_interleave(M).detach().requires_grad_(True)
    v = nodes.repeat(n)
    r = m.r({"t": t, "x": x, "v": v})
    j = m.j({"t": t, "x": x, "v": v})
    r_t = torch.autograd.grad(r.sum(), t, create_graph=True)[0]
    r_x = torch.autograd.grad(r.sum(), x, create_graph=True)[0]
    j_t = torch.autograd.grad(j.sum(), t, create_graph=True)[0]
    j_x = torch.autograd.grad(j.sum(), x, create_graph=True)[0]
    ti = batch["interior"]["t"].detach().requires_grad_(True)
    xi = batch["interior"]["x"].detach()
    rho = m.rho({"t": ti, "x": xi}).squeeze(-1)
    rho_t = torch.autograd.grad(rho.sum(), ti, create_graph=True)[0]
    rho_m = rho.repeat_interleave(M)
    r, j = r.squeeze(-1), j.squeeze(-1)
    res_r = e2 * (r_t + v * j_x) - (rho_m - r)
    res_j = e2 * j_t + v * r_x + j
    # averages from separate forward passes over the quadrature grid
    xq = batch["interior"]["x"].repeat_interleave(M).detach().requires_grad_(True)
    jq = m.j({"t": t.detach(), "x": xq, "v": v}).squeeze(-1)
    vj = (jq * v).reshape(n, M) @ w
    vj_x = torch.autograd.grad(vj.sum(), xq, create_graph=True)[0].reshape(n, M).sum(1)
    rq = m.r({"t": t.detach(), "x": x.detach(), "v": v}).squeeze(-1)
    mean_r = rq.reshape(n, M) @ w
    terms = {"kinetic_r": res_r.pow(2).mean(), "kinetic_j": res_j.pow(2).mean(),
             "conservation": (rho_t + vj_x).pow(2).mean(), "constraint": (rho - mean_r).pow(2).mean()}
    # boundary and initial data at the sampled speeds, each sign evaluated separately
    def f(pts, vv):
        q = dict(pts, v=vv)
        return (m.r(q) + eps * m.j(q)).squeeze(-1)

    left, right, init = batch["left"], batch["right"], batch["initial"]
    terms["boundary"] = 0.5 * ((f(left, left["v"]) - 1).pow(2).mean() + f(right, -right["v"]).pow(2).mean())
    terms["initial"] = 0.5 * (f(init, init["v"]).pow(2).mean() + f(init, -init["v"]).pow(2).mean())
    return {k: m.weights[k] * val for k, val in terms.items()}


def _batch(m, seed):
    g = torch.Generator(device=m.device).manual_seed(seed)
    b = m.sample(g)
    b["right"] = dict(b["left"], x=torch.ones_like(b["left"]["x"]))  # same wall times for both
    return b


def check_equal(width, nodes, device):
    m = make_model(width, nodes, device)
    b = _batch(m, 1)
    ours = m.residuals(b)
    ours = {k: m.weights[k] * v for k, v in ours.items()}
    plain = plain_terms(m, b)
    out = {}
    for k in plain:
        lo, lp = float(ours[k].detach()), float(plain[k].detach())
        out[k] = abs(lo - lp) / max(abs(lp), 1e-30)
    g1 = torch.autograd.grad(sum(ours.values()), list(m.parameters()), allow_unused=True)
    g2 = torch.autograd.grad(sum(plain.values()), list(m.parameters()), allow_unused=True)
    num = sum(float((a - b).pow(2).sum()) for a, b in zip(g1, g2) if a is not None and b is not None)
    den = sum(float(b.pow(2).sum()) for b in g2 if b is not None)
    out["grad_rel_diff"] = (num / den) ** 0.5
    return out


def _peak_rss_mib() -> float:
    """Peak resident set of this process (VmHWM; unlike ru_maxrss it is not inherited
    from the parent across fork + exec)."""
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_variant(variant, width, nodes, device, steps, q=None):
    dev = torch.device(device)
    engine = "forward" if "forward" in variant else "reverse"
    m = make_model(width, nodes, dev, engine=engine)
    opt = torch.optim.Adam(m.parameters(), 1e-3)
    batches = [_batch(m, s) for s in range(4)]

    def loss_ours(b):
        return sum({k: m.weights[k] * v for k, v in m.residuals(b).items()}.values())

    def loss_plain(b):
        return sum(plain_terms(m, b).values())

    fn = loss_ours if variant.startswith("ours") else loss_plain
    if variant.endswith("+compile"):
        fn = torch.compile(loss_ours, dynamic=False)

    def step(i):
        opt.zero_grad(set_to_none=True)
        loss = fn(batches[i % 4])
        loss.backward()
        opt.step()
        return loss

    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    for i in range(5):  # warm-up (and compilation)
        step(i)
    sync()
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    for i in range(steps):
        step(i)
    sync()
    dt = time.perf_counter() - t0
    mem = torch.cuda.max_memory_allocated() / 2**20 if dev.type == "cuda" else _peak_rss_mib()
    res = {"variant": variant, "width": width, "nodes": nodes, "device": device,
           "steps_per_s": steps / dt, "peak_mem_MiB": mem}
    if q is not None:
        q.put(res)
    return res


def measure(variant, width, nodes, device, steps):
    if device == "cpu":  # fresh process: peak RSS belongs to this variant alone
        ctx = mp.get_context("spawn")
        q = ctx.Queue()
        p = ctx.Process(target=run_variant, args=(variant, width, nodes, device, steps, q))
        p.start()
        res = q.get()
        p.join()
        return res
    return run_variant(variant, width, nodes, device, steps)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", action="append", help="cpu and/or cuda (default: cpu, plus cuda if available)")
    ap.add_argument("--steps", type=int, default=None, help="timed steps (default 10 on cpu, 100 on cuda)")
    ap.add_argument("--nodes", type=int, default=30)
    ap.add_argument("--widths", default="128,256")
    ap.add_argument("--compile", action="store_true", help="also time torch.compile of our loss")
    ap.add_argument("--forward", action="store_true", help="also time our loss with the forward-mode engine")
    ap.add_argument("--json", default=None, help="write the results here")
    args = ap.parse_args()
    devices = args.device or (["cpu"] + (["cuda"] if torch.cuda.is_available() else []))
    rows = []
    for device in devices:
        for width in [int(w) for w in args.widths.split(",")]:
            eq = check_equal(width, args.nodes, torch.device(device))
            worst = max(v for k, v in eq.items())
            print(f"[{device} 4x{width}] ours vs plain: max relative loss-term difference "
                  f"{max(v for k, v in eq.items() if k != 'grad_rel_diff'):.1e}, gradient {eq['grad_rel_diff']:.1e}")
            assert worst < 1e-3, f"ours and plain disagree: {eq}"
            steps = args.steps or (100 if device == "cuda" else 10)
            variants = ["plain", "ours"] + (["ours-forward"] if args.forward else []) \
                + (["ours+compile"] if args.compile else [])
            res = {v: measure(v, width, args.nodes, device, steps) for v in variants}
            for v, r in res.items():
                r["ratio_vs_plain"] = r["steps_per_s"] / res["plain"]["steps_per_s"]
                rows.append(r)
                print(f"  {v:13s} {r['steps_per_s']:8.2f} steps/s   x{r['ratio_vs_plain']:.2f}   "
                      f"peak {r['peak_mem_MiB']:.0f} MiB")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(rows, fh, indent=2)


if __name__ == "__main__":
    main()

"""Training steps per second of the APNN losses (linear transport even-odd, BGK
conservation): ours against a plain implementation written the way the original
code works.

Both compute the SAME loss (same networks, same points, same quadrature) and the
script checks that loss and gradients agree to float32 accuracy before timing:

* plain: every quadrature node of both signs evaluated, one
  ``torch.autograd.grad(..., create_graph=True)`` call per derivative and per
  network, velocity averages from separate forward passes, eager mode;
* ours: ``sciml.solvers.apnn_lt.EvenOdd`` — exact parity lets it evaluate only the
  v > 0 nodes, all first derivatives of a network come from one call, averages
  reuse the one batched (points x nodes) evaluation; optionally ``torch.compile``.

BGK (``--equation bgk``): plain = the authors' ``bgk_eqn.py`` pattern (f and its
t- and x-derivatives from separate ``autograd.grad`` calls, each velocity moment
``<f>, <v f>, <v^2 f>, <v^3 f>`` from its own forward pass over (points x nodes),
each flux derivative and each ``U_t`` from its own ``autograd.grad`` call); ours =
``sciml.solvers.apnn_bgk.BGKConservation`` (one batched evaluation of f with both
derivatives, every moment and flux from it). Both evaluate the kinetic residual
at every (point, node) pair, so the losses are identical.

Sizes from the issue / the authors' code: LT networks 4 x 128 and 4 x 256, 512
interior points, 30 quadrature nodes (``--nodes``); BGK: f ResNet width 128 (2
blocks), rho/u/T ResNets width 64, 512 interior points x 64 nodes (``--widths``
sets f's width, the macroscopic ones get half). Peak memory: CUDA max
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


# ---- BGK ------------------------------------------------------------------------------------
def make_bgk_problem(nodes: int):
    from sciml.domain import Box, VelocitySpace
    from sciml.physics.bgk import BGKProblem, MaxwellianWall

    s = lambda x: (torch.sin(torch.pi * x) + 1) / 2 if isinstance(x, torch.Tensor) else 0.5  # noqa: E731
    return BGKProblem(eps=1e-3, domain=Box.of(t=(0.0, 0.1), x=(-0.5, 0.5)),
                      velocity=VelocitySpace.gauss_legendre(-10.0, 10.0, nodes),
                      rho0=lambda x: 1.5 - 0.875 * s(x), u0=lambda x: 0.0 * x, T0=lambda x: 1.5 - 0.75 * s(x),
                      left=MaxwellianWall(1.5, 0.0, 1.5), right=MaxwellianWall(0.625, 0.0, 0.75))


def make_bgk_model(width: int, nodes: int, device, seed=0, engine="reverse"):
    from sciml.residual import ENGINES
    from sciml.solvers.apnn_bgk import BGKConservation
    from sciml.solvers.apnn_lt import NetSpec, PointSpec

    torch.manual_seed(seed)
    return BGKConservation(make_bgk_problem(nodes), net=NetSpec("resnet", width, 2, "swish"),
                           rho_net=NetSpec("resnet", width // 2, 2, "swish"),
                           points=PointSpec(interior=512, boundary=128, initial=256),
                           engine=ENGINES[engine]()).to(device)


def plain_bgk_terms(m, batch):
    """The BGK conservation loss computed the naive way (see module doc)."""
    from sciml.physics.bgk import maxwellian

    eps, vel = m.eps, m.problem.velocity
    nodes, w = vel.nodes(m.device), vel.weights(m.device)
    n, M = batch["interior"]["t"].shape[0], nodes.shape[0]
    t = batch["interior"]["t"].repeat_interleave(M).detach().requires_grad_(True)
    x = batch["interior"]["x"].repeat_interleave(M).detach().requires_grad_(True)
    v = nodes.repeat(n)
    f = m.f({"t": t, "x": x, "v": v}).squeeze(-1)
    f_t = torch.autograd.grad(f.sum(), t, create_graph=True)[0]
    f_x = torch.autograd.grad(f.sum(), x, create_graph=True)[0]
    ti = batch["interior"]["t"].detach().requires_grad_(True)
    xi = batch["interior"]["x"].detach().requires_grad_(True)
    rho = m.rho({"t": ti, "x": xi}).squeeze(-1)
    u = m.u({"t": ti, "x": xi}).squeeze(-1)
    T = m.T({"t": ti, "x": xi}).squeeze(-1)
    U = (rho, rho * u, 0.5 * rho * (u * u + T))
    U_t = [torch.autograd.grad(q.sum(), ti, create_graph=True)[0] for q in U]
    M_ = maxwellian(rho.repeat_interleave(M), u.repeat_interleave(M), T.repeat_interleave(M), v)
    kin = eps * (f_t + v * f_x) - (M_ - f)
    terms = {"kinetic": ((kin * kin).reshape(n, M) @ w).mean() / (vel.hi - vel.lo)}

    def average(k):  # its own forward pass over (points x nodes), as the original average_op
        xq = xi.repeat_interleave(M)
        fq = m.f({"t": ti.detach().repeat_interleave(M), "x": xq, "v": v}).squeeze(-1)
        return (fq * v ** k).reshape(n, M) @ w

    avg = [average(k) for k in range(4)]
    flux_x = [torch.autograd.grad(avg[k + 1].sum(), xi, create_graph=True)[0] for k in range(3)]
    scale = (1.0, 1.0, 0.5)
    for k, (name, law) in enumerate(zip(("rho", "momentum", "energy"), ("mass", "momentum", "energy"))):
        terms[law] = (U_t[k] + scale[k] * flux_x[k]).pow(2).mean()
        terms[f"consistency_{name}"] = (U[k] - scale[k] * avg[k]).pow(2).mean()
    # walls and initial data: as in ours (cheap, no derivatives)
    full = m.residuals(batch)
    for k in ("boundary_f", "initial_rho", "initial_u", "initial_T", "initial_f"):
        terms[k] = full[k]
    return {k: m.weights[k] * val for k, val in terms.items()}


# equation -> (model builder, plain loss terms, default quadrature nodes)
EQUATIONS = {"lt": (make_model, plain_terms, 30), "bgk": (make_bgk_model, plain_bgk_terms, 64)}


def _batch(m, seed):
    g = torch.Generator(device=m.device).manual_seed(seed)
    b = m.sample(g)
    from sciml.solvers.apnn_lt import EvenOdd

    if isinstance(m, EvenOdd):  # the plain LT loss uses the same wall times for both walls
        b["right"] = dict(b["left"], x=torch.ones_like(b["left"]["x"]))
    return b


def check_equal(equation, width, nodes, device):
    build, plain_fn, _ = EQUATIONS[equation]
    m = build(width, nodes, device)
    b = _batch(m, 1)
    ours = m.residuals(b)
    ours = {k: m.weights[k] * v for k, v in ours.items()}
    plain = plain_fn(m, b)
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


def run_variant(equation, variant, width, nodes, device, steps, q=None):
    dev = torch.device(device)
    engine = "forward" if "forward" in variant else "reverse"
    build, plain_fn, _ = EQUATIONS[equation]
    m = build(width, nodes, dev, engine=engine)
    opt = torch.optim.Adam(m.parameters(), 1e-3)
    batches = [_batch(m, s) for s in range(4)]

    def loss_ours(b):
        return sum({k: m.weights[k] * v for k, v in m.residuals(b).items()}.values())

    def loss_plain(b):
        return sum(plain_fn(m, b).values())

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
    res = {"equation": equation, "variant": variant, "width": width, "nodes": nodes, "device": device,
           "steps_per_s": steps / dt, "peak_mem_MiB": mem}
    if q is not None:
        q.put(res)
    return res


def measure(equation, variant, width, nodes, device, steps):
    if device == "cpu":  # fresh process: peak RSS belongs to this variant alone
        ctx = mp.get_context("spawn")
        q = ctx.Queue()
        p = ctx.Process(target=run_variant, args=(equation, variant, width, nodes, device, steps, q))
        p.start()
        res = q.get()
        p.join()
        return res
    return run_variant(equation, variant, width, nodes, device, steps)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", action="append", help="cpu and/or cuda (default: cpu, plus cuda if available)")
    ap.add_argument("--steps", type=int, default=None, help="timed steps (default 10 on cpu, 100 on cuda)")
    ap.add_argument("--equation", default="lt,bgk", help="lt and/or bgk (comma separated)")
    ap.add_argument("--nodes", type=int, default=None, help="quadrature nodes (default: 30 for lt, 64 for bgk)")
    ap.add_argument("--widths", default=None, help="network widths (default: 128,256 for lt, 128 for bgk)")
    ap.add_argument("--compile", action="store_true", help="also time torch.compile of our loss")
    ap.add_argument("--forward", action="store_true", help="also time our loss with the forward-mode engine")
    ap.add_argument("--json", default=None, help="write the results here")
    args = ap.parse_args()
    devices = args.device or (["cpu"] + (["cuda"] if torch.cuda.is_available() else []))
    rows = []
    for device, equation in [(d, e) for d in devices for e in args.equation.split(",")]:
        nodes = args.nodes or EQUATIONS[equation][2]
        widths = args.widths or ("128,256" if equation == "lt" else "128")
        for width in [int(w) for w in widths.split(",")]:
            eq = check_equal(equation, width, nodes, torch.device(device))
            worst = max(v for k, v in eq.items())
            print(f"[{equation} {device} width {width}] ours vs plain: max relative loss-term difference "
                  f"{max(v for k, v in eq.items() if k != 'grad_rel_diff'):.1e}, gradient {eq['grad_rel_diff']:.1e}")
            assert worst < 1e-3, f"ours and plain disagree: {eq}"
            steps = args.steps or (100 if device == "cuda" else 10)
            variants = ["plain", "ours"] + (["ours-forward"] if args.forward else []) \
                + (["ours+compile"] if args.compile else [])
            res = {v: measure(equation, v, width, nodes, device, steps) for v in variants}
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

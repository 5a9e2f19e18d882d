"""The same checks on every device torch has here: the CPU always, CUDA when a GPU is
present (CI has none; a GPU session runs ``python -m pytest tests/test_devices.py``).

* the APNN residuals of linear transport and BGK agree with the CPU values on the
  same network and points (float64), so the GPU trains the same loss;
* every aggregator runs on device tensors and HRGrad keeps its defining property;
* MetaColloc solves a linear and a nonlinear problem on the device to the CPU bounds;
* a short multi-task training runs end to end on the device from YAML."""
from pathlib import Path

import pytest
import torch

from sciml import mtl
from sciml.api import solve
from sciml.domain import Uniform
from sciml.solvers.apnn_bgk import BGKConservation
from sciml.solvers.apnn_lt import FORMULATIONS, NetSpec, PointSpec

from test_apnn import exact_problem
from test_apnn_bgk import problem as bgk_problem
from test_mtl import conflicting

ROOT = Path(__file__).resolve().parents[1]
DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(),
                                                                 reason="no CUDA device"))]


def _to(batch, device):
    if isinstance(batch, torch.Tensor):
        return batch.to(device)
    if isinstance(batch, dict):
        return {k: _to(v, device) for k, v in batch.items()}
    return batch


def _same_terms(m, device, atol=1e-12):
    batch = m.sample(torch.Generator().manual_seed(0))
    ref = {k: float(v.detach()) for k, v in m.residuals(batch).items()}
    md = m.to(device)
    got = {k: float(v.detach()) for k, v in md.residuals(_to(batch, device)).items()}
    assert set(got) == set(ref)
    for k in ref:
        assert abs(got[k] - ref[k]) <= atol + 1e-9 * abs(ref[k]), (k, got[k], ref[k])
    return ref


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name", sorted(FORMULATIONS))
def test_linear_transport_residuals_match_the_cpu(device, name):
    torch.manual_seed(1)
    m = FORMULATIONS[name](exact_problem(1e-3), net=NetSpec(width=16, depth=2), points=PointSpec(64, 32, 32),
                           sampler=Uniform(dtype=torch.float64), relax_initial=False).double()
    terms = _same_terms(m, device)
    assert max(terms.values()) > 1e-6              # a random network is not a solution


@pytest.mark.parametrize("device", DEVICES)
def test_bgk_residuals_match_the_cpu(device):
    torch.manual_seed(2)
    m = BGKConservation(bgk_problem(), net=NetSpec("mlp", 16, 2, "tanh"), points=PointSpec(64, 32, 32),
                        sampler=Uniform(dtype=torch.float64)).double()
    terms = _same_terms(m, device)
    assert max(terms.values()) > 1e-6


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name", sorted(mtl.AGGREGATORS))
def test_aggregators_run_on_the_device(device, name):
    G = conflicting(4, 2000, torch.float32, seed=3).to(device)
    losses = torch.rand(4, device=device) + 0.1
    agg = mtl.aggregator(name)
    u = agg(G, losses)
    assert u.device.type == torch.device(device).type and u.shape == (2000,)
    assert torch.isfinite(u).all()
    if name == "hrgrad":
        assert ((G.double() @ u.double()) > 0).all()


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name, bound", [("poisson2d", 1e-3), ("sine_gordon", 1e-6)])
def test_metacolloc_solves_on_the_device(device, name, bound):
    sol = solve(ROOT / "problems/metacolloc" / f"{name}.yaml", overrides={"output.eval_points": 4000},
                device=device)
    assert sol.metrics["rel_l2_u"] < bound, sol.metrics["rel_l2_u"]


@pytest.mark.parametrize("device", DEVICES)
def test_multitask_training_runs_on_the_device(device, tmp_path):
    over = {"problem.eps": [1.0, 1e-8], "solver.network.width": 16, "solver.density_network.width": 16,
            "solver.points": {"interior": 64, "boundary": 32, "initial": 32}, "solver.velocity_nodes": 8,
            "solver.training.steps": 5, "solver.training.log_every": 5, "solver.eps_encoding": {"kind": "film"}}
    sol = solve(ROOT / "problems/hrgrad/lt_inflow_multi_eps.yaml", overrides=over, out=tmp_path / "run",
                device=device)
    errs = {k: v for k, v in sol.metrics.items() if k.startswith("rel_l2_rho_eps")}
    assert set(errs) >= {"rel_l2_rho_eps1", "rel_l2_rho_eps1e-08"}, sorted(errs)
    assert all(e == e and e < 10 for e in errs.values()), errs

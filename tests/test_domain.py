import math

import numpy as np
import pytest
import torch

from sciml.domain import SAMPLERS, Box, Grid, Interval, Sobol, Uniform, VelocitySpace, cell_centres, tensor_grid, uniform


def test_box_faces_and_slices():
    box = Box.of(t=(0, 0.1), x=(0, 1))
    assert box.names == ("t", "x") and box.dim == 2
    assert box.face("x", "hi")["x"].lo == 1.0 and box.face("x", "hi")["x"].degenerate
    assert box.slice(t=0.0)["t"].degenerate
    assert (box * Interval("v", -1, 1)).names == ("t", "x", "v")
    with pytest.raises(ValueError, match="outside"):
        box.slice(t=2.0)
    with pytest.raises(ValueError, match="duplicate"):
        Box((Interval("x", 0, 1), Interval("x", 0, 2)))
    with pytest.raises(KeyError, match="no coordinate"):
        box["v"]
    assert math.isclose(box.volume, 0.1)


@pytest.mark.parametrize("name", sorted(SAMPLERS))
def test_samplers_stay_in_box_and_are_reproducible(name):
    sampler = SAMPLERS[name]()
    box = Box.of(t=(0, 0.1), x=(-0.5, 0.5), v=(-10, 10))
    a = sampler.sample(box, 1000, torch.Generator().manual_seed(3))
    b = sampler.sample(box, 1000, torch.Generator().manual_seed(3))
    for k in box.names:
        assert torch.equal(a[k], b[k])
        assert a[k].shape == (1000,)
    assert bool(box.contains(a).all())
    # boundary face and initial slice come from the same sampler
    face = sampler.sample(box.face("x", "lo"), 64, torch.Generator().manual_seed(0))
    assert torch.all(face["x"] == -0.5) and face["t"].std() > 0
    init = sampler.sample(box.slice(t=0.0), 64, torch.Generator().manual_seed(0))
    assert torch.all(init["t"] == 0)


def test_uniform_and_sobol_fill_the_box_evenly():
    box = Box.of(x=(0, 1), y=(0, 1))
    for sampler in (Uniform(dtype=torch.float64), Sobol(dtype=torch.float64)):
        p = sampler.sample(box, 4096, torch.Generator().manual_seed(1))
        # mean of x*y over the unit square is 1/4
        assert abs(float((p["x"] * p["y"]).mean()) - 0.25) < 0.02
    # Sobol is much more even than random: integration error of a smooth function
    f = lambda p: torch.sin(3 * p["x"]) * torch.exp(p["y"])  # noqa: E731
    exact = (1 - math.cos(3)) / 3 * (math.e - 1)
    s = Sobol(dtype=torch.float64).sample(box, 4096, torch.Generator().manual_seed(2))
    assert abs(float(f(s).mean()) - exact) < 2e-3


def test_grid_sampler_and_grids():
    p = Grid(dtype=torch.float64).sample(Box.of(x=(0, 1), y=(0, 2)), 16, torch.Generator())
    assert sorted(set(p["x"].tolist())) == [0.125, 0.375, 0.625, 0.875]
    c = cell_centres(Interval("x", 0, 1), 100)
    assert torch.allclose(c[[0, -1]], torch.tensor([0.005, 0.995], dtype=torch.float64))
    u = uniform(Interval("x", 0, 1), 11)
    assert u[0] == 0 and u[-1] == 1
    g = tensor_grid(t=torch.arange(3.0), x=torch.arange(4.0))
    assert g["t"].reshape(3, 4)[:, 0].tolist() == [0, 1, 2] and g["x"].reshape(3, 4)[0].tolist() == [0, 1, 2, 3]


@pytest.mark.parametrize("n", [2, 8, 30, 64])
def test_gauss_legendre_exactness(n):
    vs = VelocitySpace.gauss_legendre(-10, 10, n)
    v = vs.nodes(dtype=torch.float64)
    for k in range(0, 2 * n, 3):
        exact = 0.0 if k % 2 else 2 * 10 ** (k + 1) / (k + 1)
        assert math.isclose(float(vs.integrate(v**k)), exact, rel_tol=1e-11, abs_tol=1e-13 * 20 * 10.0**k)
    assert math.isclose(float(vs.weights(dtype=torch.float64).sum()), 20.0, rel_tol=1e-14)


def test_half_and_positive_rules():
    vs = VelocitySpace.gauss_legendre(-1, 1, 30)
    pos = vs.positive()
    assert pos.n == 15 and np.all(pos.nodes_np > 0)
    even = lambda v: v**2 * torch.cos(v)  # noqa: E731
    assert math.isclose(float(pos.mean(even(pos.nodes(dtype=torch.float64)))),
                        float(vs.mean(even(vs.nodes(dtype=torch.float64)))), rel_tol=1e-13)
    half = VelocitySpace.half_range(1.0, 10)
    assert math.isclose(float(half.integrate(half.nodes(dtype=torch.float64))), 0.5, rel_tol=1e-13)
    neg = VelocitySpace.half_range(2.0, 4, sign=-1)
    assert neg.hi == 0.0 and neg.lo == -2.0
    with pytest.raises(ValueError):
        VelocitySpace.gauss_legendre(-1, 1, 7).positive()
    with pytest.raises(ValueError):
        VelocitySpace.gauss_legendre(1, -1, 4)


def test_device_and_dtype():
    vs = VelocitySpace.gauss_legendre(-1, 1, 4)
    assert vs.nodes(dtype=torch.float64).dtype == torch.float64
    p = Uniform(dtype=torch.float64).sample(Box.of(x=(0, 1)), 5, torch.Generator(device="cpu"))
    assert p["x"].dtype == torch.float64 and p["x"].device.type == "cpu"

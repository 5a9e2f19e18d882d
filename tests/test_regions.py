import math

import pytest
import torch

from sciml.domain.geometry import stack_points
from sciml.domain.regions import REGIONS, Annulus, BoundaryPoints, BoxRegion, Disk, LShape
from sciml.domain.samplers import Uniform

REGION_CASES = {
    "lshape": LShape(),
    "lshape_shifted": LShape(lo=0.0, hi=2.0, corner=1.25, names=("u", "v")),
    "annulus": Annulus(r_in=0.5, r_out=1.0, center=(0.5, 0.25)),
    "disk": Disk(radius=0.75, center=(-1.0, 2.0)),
    "box2d": BoxRegion.of(x=(0, 1), y=(0, 2)),
    "box3d": BoxRegion.of(x=(0, 1), y=(0, 2), z=(-1, 1)),
}
CASES = sorted(REGION_CASES)


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def strictly_inside(region, x):
    """Analytic open-set test on an (N, d) tensor."""
    if isinstance(region, BoxRegion):
        lo, hi = region.box.lo_hi(dtype=x.dtype)
        return ((x > lo) & (x < hi)).all(-1)
    if isinstance(region, LShape):
        a, b, c = region.lo, region.hi, region.corner
        in_square = ((x > a) & (x < b)).all(-1)
        return in_square & ~((x[:, 0] >= c) & (x[:, 1] >= c))
    r = torch.linalg.norm(x - torch.tensor(region.center, dtype=x.dtype), dim=-1)
    r0 = region.r_in if isinstance(region, Annulus) else 0.0
    return (r < region._r1) & (r > r0) if r0 else r < region._r1


def check_on_boundary(region, bp: BoundaryPoints):
    """Every point lies on the part it is labelled with; normals are the analytic ones."""
    x, nrm, part = stack_points(bp.points, region.names), bp.normal, bp.part
    tol = 1e-12
    if isinstance(region, BoxRegion):
        lo, hi = region.box.lo_hi(dtype=x.dtype)
        for k in range(2 * region.dim):
            axis, side = divmod(k, 2)
            sel = part == k
            assert region.parts[k] == f"{region.names[axis]}_{'hi' if side else 'lo'}"
            assert torch.all(x[sel, axis] == (hi if side else lo)[axis])
            assert torch.all((x[sel] >= lo - tol) & (x[sel] <= hi + tol))
            expected = torch.zeros(region.dim, dtype=x.dtype)
            expected[axis] = 1.0 if side else -1.0
            assert torch.equal(nrm[sel], expected.expand(int(sel.sum()), -1))
    elif isinstance(region, LShape):
        a, b, c = region.lo, region.hi, region.corner
        px, py = x[:, 0], x[:, 1]
        within = ((x >= a - tol) & (x <= b + tol)).all(-1)
        outer = (px == a) | (py == a) | ((px == b) & (py <= c + tol)) | ((py == b) & (px <= c + tol))
        notch = ((px == c) & (py >= c - tol)) | ((py == c) & (px >= c - tol))
        assert torch.all(within)
        assert torch.all(outer[part == region.part_id("outer")])
        assert torch.all(notch[part == region.part_id("notch")])
        # axis-aligned unit normals
        assert torch.all((nrm.abs() == 1).sum(-1) == 1) and torch.all((nrm == 0).sum(-1) == 1)
    else:
        d = x - torch.tensor(region.center, dtype=x.dtype)
        r = torch.linalg.norm(d, dim=-1)
        for k, (radius, sign) in enumerate(region._circles):
            sel = part == k
            assert torch.allclose(r[sel], torch.full_like(r[sel], radius), atol=tol, rtol=0)
            assert torch.allclose(nrm[sel], sign * d[sel] / r[sel, None], atol=tol, rtol=0)


@pytest.mark.parametrize("case", CASES)
def test_interior_points_exact_count_inside_and_reproducible(case):
    region = REGION_CASES[case]
    for n in (0, 1, 7, 5000):
        p = region.interior(n, gen(1))
        assert set(p) == set(region.names) and all(v.shape == (n,) and v.dtype == torch.float64 for v in p.values())
        assert bool(region.contains(p).all())
        assert bool(strictly_inside(region, stack_points(p, region.names)).all())
    a, b, c = region.interior(300, gen(5)), region.interior(300, gen(5)), region.interior(300, gen(6))
    assert all(torch.equal(a[k], b[k]) for k in region.names)
    assert not torch.equal(a[region.names[0]], c[region.names[0]])
    p32 = region.interior(1000, gen(2), dtype=torch.float32)
    assert p32[region.names[0]].dtype == torch.float32
    assert bool(strictly_inside(region, stack_points(p32, region.names)).all())


@pytest.mark.parametrize("case", CASES)
def test_boundary_points_on_boundary_with_outward_unit_normals(case):
    region = REGION_CASES[case]
    bp = region.boundary(4000, gen(3))
    assert len(bp) == 4000 and bp.part.dtype == torch.int64 and bp.normal.shape == (4000, region.dim)
    assert set(bp.part.tolist()) == set(range(len(region.parts)))
    assert torch.allclose(bp.normal.norm(dim=-1), torch.ones(4000, dtype=torch.float64), atol=1e-12)
    check_on_boundary(region, bp)
    x = stack_points(bp.points, region.names)
    names = region.names
    out = {k: v for k, v in zip(names, (x + 1e-6 * bp.normal).unbind(-1))}
    inn = {k: v for k, v in zip(names, (x - 1e-6 * bp.normal).unbind(-1))}
    assert not bool(region.contains(out).any())
    assert bool(region.contains(inn, tol=-1e-8).all())
    # reproducible, and a part selection only yields that part
    again = region.boundary(4000, gen(3))
    assert torch.equal(bp.normal, again.normal) and torch.equal(bp.part, again.part)
    assert all(torch.equal(bp.points[k], again.points[k]) for k in names)
    last = region.parts[-1]
    sub = region.boundary(500, gen(4), parts=last)
    assert len(sub) == 500 and torch.all(sub.part == region.part_id(last))
    check_on_boundary(region, sub)
    assert len(region.boundary(0, gen(0))) == 0


@pytest.mark.parametrize("case", CASES)
def test_boundary_proportions_follow_part_measure(case):
    region = REGION_CASES[case]
    n = 20000
    bp = region.boundary(n, gen(7))
    counts = torch.bincount(bp.part, minlength=len(region.parts)).double() / n
    share = torch.tensor(region.part_measures, dtype=torch.float64) / region.perimeter
    assert torch.allclose(counts, share, atol=1e-3)
    assert math.isclose(sum(region.part_measures), region.perimeter)


def test_uniform_within_a_part():
    # L-shape outer part: pieces x=-1 (2), y=-1 (2), x=1 (1), y=1 (1) of total length 6
    region = LShape()
    bp = region.boundary(20000, gen(8), parts="outer")
    x, y = bp.points["x"], bp.points["y"]
    for piece, share in [(x == -1, 2 / 6), (y == -1, 2 / 6), (x == 1, 1 / 6), (y == 1, 1 / 6)]:
        assert abs(float(piece.double().mean()) - share) < 0.015
    assert abs(float(y[x == -1].mean())) < 0.03  # uniform along the left edge
    # annulus: angles uniform on each circle
    ann = Annulus(center=(0.5, 0.25))
    bp = ann.boundary(20000, gen(9))
    for k in range(2):
        d = bp.normal[bp.part == k]
        assert d.mean(0).abs().max() < 0.03
        quadrants = torch.bincount((d[:, 0] > 0).long() * 2 + (d[:, 1] > 0).long(), minlength=4).double() / len(d)
        assert torch.allclose(quadrants, torch.full((4,), 0.25, dtype=torch.float64), atol=0.02)
    # interior of the annulus uniform by area: P(r < rm) = (rm^2 - r_in^2)/(r_out^2 - r_in^2)
    p = ann.interior(20000, gen(10))
    r = torch.hypot(p["x"] - 0.5, p["y"] - 0.25)
    assert abs(float((r < 0.75).double().mean()) - (0.75**2 - 0.25) / 0.75) < 0.015


def test_analytic_measures():
    assert math.isclose(LShape().measure, 3.0) and math.isclose(LShape().perimeter, 8.0)
    assert LShape().part_measures == (6.0, 2.0)
    ann = Annulus(0.5, 1.0)
    assert math.isclose(ann.measure, math.pi * 0.75) and math.isclose(ann.perimeter, 3 * math.pi)
    assert math.isclose(Disk(2.0).measure, 4 * math.pi) and math.isclose(Disk(2.0).perimeter, 4 * math.pi)
    box = REGION_CASES["box3d"]
    assert math.isclose(box.measure, 4.0) and box.part_measures == (4.0, 4.0, 2.0, 2.0, 2.0, 2.0)
    assert box.parts == ("x_lo", "x_hi", "y_lo", "y_hi", "z_lo", "z_hi")
    assert BoxRegion.of(t=(0, 1), x=(0, 1)).parts == ("t_lo", "t_hi", "x_lo", "x_hi")


@pytest.mark.parametrize("case", CASES)
def test_monte_carlo_measure(case):
    region = REGION_CASES[case]
    p = Uniform(dtype=torch.float64).sample(region.bounds, 200_000, gen(11))
    frac = float(region.contains(p).double().mean())
    assert abs(frac - region.measure / region.bounds.volume) < 0.006


def test_contains_tolerance():
    region = LShape()
    f64 = dict(dtype=torch.float64)
    pts = {"x": torch.tensor([0.5, 0.5, -0.5, 1.0 + 1e-9, 0.0], **f64),
           "y": torch.tensor([0.5, 0.0, 0.5, -0.5, 1.0], **f64)}
    assert region.contains(pts).tolist() == [False, True, True, False, True]
    assert region.contains(pts, tol=1e-6).tolist() == [False, True, True, True, True]
    assert region.contains(pts, tol=-1e-3).tolist() == [False, False, True, False, False]


def divergence_case(region):
    """F and div F, with the exact integral of div F over the region."""
    if region.dim == 3:  # F = (x^2, y z, x z), div F = 3x + z
        F = lambda p: torch.stack([p["x"] ** 2, p["y"] * p["z"], p["x"] * p["z"]], -1)  # noqa: E731
        div = lambda p: 3 * p["x"] + p["z"]  # noqa: E731
        lo, hi = region.box.lo_hi()
        mean = (lo + hi) / 2
        return F, div, region.measure * float(3 * mean[0] + mean[2])
    a, b = region.names  # F = (x^2, x y), div F = 3x
    F = lambda p: torch.stack([p[a] ** 2, p[a] * p[b]], -1)  # noqa: E731
    div = lambda p: 3 * p[a]  # noqa: E731
    if isinstance(region, LShape):  # square minus quadrant, by centroids
        lo, hi, c = region.lo, region.hi, region.corner
        exact = 3 * ((hi - lo) ** 2 * (lo + hi) / 2 - (hi - c) ** 2 * (c + hi) / 2)
    elif isinstance(region, BoxRegion):
        iv = region.box.intervals[0]
        exact = 3 * region.measure * (iv.lo + iv.hi) / 2
    else:
        exact = 3 * region.measure * region.center[0]
    return F, div, exact


@pytest.mark.parametrize("case", CASES)
def test_divergence_theorem(case):
    """int_Omega div F dV = oint F . n dS with sampled points: checks normals and proportions together."""
    region = REGION_CASES[case]
    F, div, exact = divergence_case(region)
    n = 200_000
    volume = float(div(region.interior(n, gen(12))).mean()) * region.measure
    bp = region.boundary(n, gen(13))
    flux = float((F(bp.points) * bp.normal).sum(-1).mean()) * region.perimeter
    scale = max(abs(exact), 1.0)
    assert abs(volume - exact) < 0.02 * scale
    assert abs(flux - exact) < 0.02 * scale
    assert abs(flux - volume) < 0.02 * scale


def test_grid_boundary_is_deterministic_midpoint_quadrature():
    rect = REGION_CASES["box2d"]
    bp = rect.grid_boundary(4)
    assert len(bp) == 16 and torch.equal(bp.part, torch.arange(4).repeat_interleave(4))
    assert sorted(set(bp.points["x"][bp.part == rect.part_id("y_lo")].tolist())) == [0.125, 0.375, 0.625, 0.875]
    assert sorted(set(bp.points["y"][bp.part == rect.part_id("x_hi")].tolist())) == [0.25, 0.75, 1.25, 1.75]
    check_on_boundary(rect, bp)
    box = REGION_CASES["box3d"]
    bp3 = box.grid_boundary(5)  # m = ceil(sqrt 5) = 3: a 3 x 3 grid per face
    assert len(bp3) == 6 * 9
    check_on_boundary(box, bp3)
    face = bp3.part == box.part_id("z_hi")
    assert sorted(set(bp3.points["x"][face].tolist())) == pytest.approx([1 / 6, 0.5, 5 / 6])
    assert sorted(set(bp3.points["y"][face].tolist())) == pytest.approx([1 / 3, 1.0, 5 / 3])
    # the midpoint rule is exact for these fields: weights = face measure / points per face
    for region, grid in ((rect, bp), (box, bp3)):
        F, _, exact = divergence_case(region)
        w = torch.tensor(region.part_measures, dtype=torch.float64)[grid.part] / torch.bincount(grid.part)[grid.part]
        assert math.isclose(float(((F(grid.points) * grid.normal).sum(-1) * w).sum()), exact, rel_tol=1e-12)
    sub = box.grid_boundary(4, parts=["y_hi", "x_lo"])
    assert sub.part.unique().tolist() == [0, 3]
    one_d = BoxRegion.of(x=(0, 1)).grid_boundary(3)
    assert one_d.points["x"].tolist() == [0.0, 1.0] and one_d.normal.flatten().tolist() == [-1.0, 1.0]


def test_regions_registry_and_subset():
    assert set(REGIONS) == {"box", "lshape", "annulus", "disk"}
    for key in ("lshape", "annulus", "disk"):
        region = REGIONS[key]()
        assert region.names == ("x", "y") and region.dim == 2 and region.bounds.names == ("x", "y")
    bp = Annulus().boundary(100, gen(0))
    inner = bp.subset(bp.part == Annulus().part_id("inner"))
    assert len(inner) == int((bp.part == 0).sum()) and inner.points["x"].shape == (len(inner),)


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: Annulus(r_in=1.0, r_out=0.5), "r_in < r_out"),
        (lambda: Annulus(r_in=0.0, r_out=1.0), "0 < r_in"),
        (lambda: Annulus(center=(0.0, 0.0, 0.0)), "center must have 2"),
        (lambda: Disk(radius=0.0), "radius > 0"),
        (lambda: LShape(corner=1.0), r"corner must lie strictly inside \(-1.0, 1.0\)"),
        (lambda: LShape(corner=-2.0), "corner"),
        (lambda: LShape(lo=1.0, hi=-1.0), "lo < hi"),
        (lambda: LShape(names=("x", "x")), "distinct identifiers"),
        (lambda: Disk(names=("x", "y", "z")), "2 distinct identifiers"),
        (lambda: BoxRegion.of(x=(0, 1), y=(0.5, 0.5)), r"degenerate: \['y'\]"),
        (lambda: Annulus().boundary(10, gen(), parts=["inner", "rim"]), r"\['rim'\].*allowed: \['inner', 'outer'\]"),
        (lambda: LShape().boundary(10, gen(), parts=[]), "allowed"),
        (lambda: BoxRegion.of(x=(0, 1)).grid_boundary(2, parts="y_lo"), r"allowed: \['x_lo', 'x_hi'\]"),
        (lambda: BoxRegion.of(x=(0, 1)).grid_boundary(0), "n_per_face must be >= 1"),
        (lambda: Disk().interior(-1, gen()), "non-negative integer"),
        (lambda: Disk().boundary(2.5, gen()), "non-negative integer"),
    ],
)
def test_bad_parameters_raise(make, match):
    with pytest.raises(ValueError, match=match):
        make()

"""The typed configuration of a run: a problem file plus a solver preset.

A problem file (``problems/<family>/<name>.yaml``) has the sections ``problem``
(the equation and its data), ``reference`` (published reference data, optional),
``output`` (where fields are reported) and ``solver`` (the name of a preset in
``solvers/``, or a mapping ``{preset: NAME, ...overrides}``, or a full solver
mapping with ``kind``). :func:`sciml.config.load_run` resolves the preset,
applies ``--set`` overrides and builds these objects, rejecting anything unknown
with the key path and what is allowed.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Optional, Union

from .schema import option


def _interval(v) -> Optional[str]:
    if len(v) != 2 or not v[1] > v[0]:
        return f"expected [lo, hi] with hi > lo, got {list(v)}"
    return None


def _even(n) -> Optional[str]:
    return None if n is None or n % 2 == 0 else f"must be even, got {n}"


def _eps_values(v) -> Optional[str]:
    if isinstance(v, (list, tuple)):
        if len(v) < 2:
            return f"a list of eps (tasks) needs at least two values, got {list(v)}"
        if len(set(v)) != len(v):
            return f"eps values must be distinct, got {list(v)}"
    return None


def _known(table: str, name) -> Optional[str]:
    if name is None:
        return None
    import difflib

    from .. import mtl

    names = getattr(mtl, table)
    if name in names:
        return None
    close = difflib.get_close_matches(name, list(names), n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return f"unknown {name!r}{hint}; allowed: {', '.join(sorted(names))}"


def _sorted_positive(v) -> Optional[str]:
    if len(v) == 0:
        return "expected at least one time"
    if any(b <= a for a, b in zip(v, v[1:])):
        return f"times must be strictly increasing, got {list(v)}"
    return None


# ---- problem -------------------------------------------------------------------------------
@dataclass(frozen=True)
class InflowBC:
    kind: Literal["inflow"]
    f: str = option("0", doc="incoming distribution g(t, v), an expression in t and v")


@dataclass(frozen=True)
class DirichletBC:
    kind: Literal["dirichlet"]
    rho: str = option("0", doc="wall density rho_b(t): isotropic incoming f = rho_b (the Dirichlet "
                                "value of the diffusion limit), an expression in t")


@dataclass(frozen=True)
class PeriodicBC:
    kind: Literal["periodic"]


BoundarySpec = Union[InflowBC, DirichletBC, PeriodicBC]


@dataclass(frozen=True)
class Boundaries:
    left: BoundarySpec = option(doc="boundary at the left wall x = x[0]")
    right: BoundarySpec = option(doc="boundary at the right wall x = x[1]")

    def __post_init__(self):
        if isinstance(self.left, PeriodicBC) != isinstance(self.right, PeriodicBC):
            raise ValueError("periodic must be set on both walls (left and right) or on neither")


@dataclass(frozen=True)
class Initial:
    f: str = option("0", doc="initial distribution f0(x, v), an expression in x and v")
    rho: Optional[str] = option(None, doc="initial density rho0(x); default <f0>")


@dataclass(frozen=True)
class LinearTransportSpec:
    equation: Literal["linear_transport"]
    name: str = option(doc="problem name (used in titles and file names)")
    eps: Union[float, list[float]] = option(doc="Knudsen number eps, or a list of them: one eps-conditioned "
                                                "network trained on all (tasks)", min=1e-12, max=1e3,
                                            check=_eps_values)
    t: tuple[float, float] = option(doc="time interval [t0, t_end]", check=_interval)
    x: tuple[float, float] = option((0.0, 1.0), doc="space interval [a, b]", check=_interval)
    velocity_nodes: int = option(30, doc="Gauss-Legendre nodes on v in [-1, 1] (even)", min=2, max=4096,
                                 check=_even)
    initial: Initial = option(Initial(), doc="initial data")
    boundary: Boundaries = option(doc="boundary conditions")


@dataclass(frozen=True)
class MaxwellianBC:
    kind: Literal["maxwellian"]
    rho: str = option(doc="wall density, a number or an expression in t")
    u: str = option("0", doc="wall velocity, a number or an expression in t")
    T: str = option(doc="wall temperature (> 0), a number or an expression in t")


@dataclass(frozen=True)
class BGKBoundaries:
    left: MaxwellianBC = option(doc="left wall x = x[0]: incoming f is the Maxwellian of this state")
    right: MaxwellianBC = option(doc="right wall x = x[1]: incoming f is the Maxwellian of this state")


@dataclass(frozen=True)
class MacroInitial:
    rho: str = option(doc="initial density rho0(x) > 0, an expression in x")
    u: str = option("0", doc="initial velocity u0(x), an expression in x")
    T: str = option(doc="initial temperature T0(x) > 0, an expression in x")


@dataclass(frozen=True)
class BGKSpec:
    equation: Literal["bgk"]
    name: str = option(doc="problem name (used in titles and file names)")
    eps: Union[float, list[float]] = option(doc="Knudsen number eps, or a list of them: one eps-conditioned "
                                                "network trained on all (tasks)", min=1e-12, max=1e3,
                                            check=_eps_values)
    t: tuple[float, float] = option(doc="time interval [t0, t_end]", check=_interval)
    x: tuple[float, float] = option((-0.5, 0.5), doc="space interval [a, b]", check=_interval)
    v: tuple[float, float] = option((-10.0, 10.0), doc="truncated velocity interval [vmin, vmax]", check=_interval)
    velocity_nodes: int = option(64, doc="Gauss-Legendre nodes on v", min=2, max=4096)
    initial: MacroInitial = option(doc="initial macroscopic state; f0 is its Maxwellian")
    boundary: BGKBoundaries = option(doc="Maxwellian walls")


@dataclass(frozen=True)
class BoxDomainSpec:
    kind: Literal["box"]
    bounds: dict[str, tuple[float, float]] = option(doc="coordinate -> [lo, hi] in order, e.g. {x: [0, 1], "
                                                        "y: [0, 1]} (one-letter names)")


@dataclass(frozen=True)
class LShapeDomainSpec:
    kind: Literal["lshape"]
    lo: float = option(-1.0, doc="the square [lo, hi]^2 ...")
    hi: float = option(1.0, doc="...")
    corner: float = option(0.0, doc="... minus the quadrant [corner, hi]^2 (boundary parts: outer, notch)")


@dataclass(frozen=True)
class AnnulusDomainSpec:
    kind: Literal["annulus"]
    r_in: float = option(0.5, doc="inner radius (boundary part: inner)", min=0.0, min_exclusive=True)
    r_out: float = option(1.0, doc="outer radius (boundary part: outer)", min=0.0, min_exclusive=True)
    center: tuple[float, float] = option((0.0, 0.0), doc="centre")


@dataclass(frozen=True)
class DiskDomainSpec:
    kind: Literal["disk"]
    radius: float = option(1.0, doc="radius (boundary part: circle)", min=0.0, min_exclusive=True)
    center: tuple[float, float] = option((0.0, 0.0), doc="centre")


DomainSpec = Union[BoxDomainSpec, LShapeDomainSpec, AnnulusDomainSpec, DiskDomainSpec]


@dataclass(frozen=True)
class PDEBoundarySpec:
    kind: Literal["dirichlet", "neumann", "robin"] = option(doc="u = g, du/dn = g, or alpha u + beta du/dn = g")
    parts: Optional[list[str]] = option(None, doc="boundary parts (box: x_lo, x_hi, y_lo, ...; lshape: outer, notch; "
                                               "annulus: inner, outer; disk: circle); default: all")
    value: Optional[str] = option(None, doc="g, an expression in the coordinates (default: from problem.exact)")
    alpha: float = option(1.0, doc="robin: coefficient of u")
    beta: float = option(0.0, doc="robin: coefficient of du/dn (outward normal)")


@dataclass(frozen=True)
class PDESpec:
    equation: Literal["pde"]
    name: str = option(doc="problem name (used in titles and file names)")
    domain: DomainSpec = option(doc="the region")
    operator: str = option(doc="N[u], an expression in u, its derivatives u_x, u_xx, u_xy, u_xxx, ..., lap(u) and "
                               "the coordinates; the PDE is N[u] = source")
    source: Optional[str] = option(None, doc="right-hand side f (default: manufactured from exact, N[exact])")
    exact: Optional[str] = option(None, doc="exact solution (for errors, and the data left out)")
    time: Optional[str] = option(None, doc="the coordinate that is time (excluded from lap)")
    boundary: list[PDEBoundarySpec] = option(doc="boundary conditions, each on some parts")


ProblemSpec = Union[LinearTransportSpec, BGKSpec, PDESpec]

# learned formulations allowed for each equation (the solvers register the same names;
# tests/test_config_schema.py checks the two agree)
FORMULATIONS_BY_EQUATION = {"linear_transport": ("even_odd", "micro_macro", "pinn"), "bgk": ("conservation",)}


# ---- reference data and output -----------------------------------------------------------
@dataclass(frozen=True)
class ReferenceSpec:
    data: Optional[str] = option(None, doc="published reference data (.npz: macro_frames [, t, x] for "
                                           "linear transport; density, momentum, energy for bgk), path relative to "
                                           "the problem file")
    published: Optional[str] = option(None, doc="published data compared besides the reference (metrics "
                                                "published_*), same formats, path relative to the problem file")
    source: str = option("", doc="where the reference data comes from")


@dataclass(frozen=True)
class OutputSpec:
    times: Optional[list[float]] = option(None, doc="output times (default: 5 equally spaced up to t_end)",
                                          check=lambda v: None if v is None else _sorted_positive(v))
    nx: int = option(100, doc="number of cell centres in x for the output grid", min=2, max=100000)
    eval_points: int = option(10000, doc="pde: random interior points of the RMSE and relative L2 error",
                              min=1, max=100_000_000)
    grid: int = option(101, doc="pde: points per axis of the plotted and saved field (3D: the middle slice)",
                       min=2, max=10000)


# ---- solvers --------------------------------------------------------------------------------
@dataclass(frozen=True)
class NetworkSpec:
    arch: Literal["mlp", "resnet"] = option("mlp", doc="network architecture")
    width: int = option(128, doc="hidden units per layer", min=1, max=65536)
    depth: int = option(4, doc="hidden layers (mlp) or residual blocks (resnet)", min=1, max=256)
    activation: Literal["tanh", "swish", "silu", "sin", "gelu"] = option("tanh", doc="activation")


@dataclass(frozen=True)
class PointsSpec:
    interior: int = option(512, doc="interior (t, x) points per step; each pairs with every velocity node",
                           min=1, max=10_000_000)
    boundary: int = option(128, doc="points per wall per step", min=1, max=10_000_000)
    initial: int = option(128, doc="points on t = t0 per step", min=1, max=10_000_000)
    sampler: Literal["uniform", "sobol"] = option("uniform", doc="how points are drawn (fresh every step)")


@dataclass(frozen=True)
class StepSchedule:
    kind: Literal["step"]
    every: int = option(5000, doc="steps between decays", min=1)
    gamma: float = option(0.5, doc="decay factor", min=0.0, max=1.0, min_exclusive=True)


@dataclass(frozen=True)
class CosineSchedule:
    kind: Literal["cosine"]
    final_factor: float = option(0.0, doc="final lr / initial lr", min=0.0, max=1.0)


@dataclass(frozen=True)
class ConstantSchedule:
    kind: Literal["constant"]


ScheduleSpec = Union[StepSchedule, CosineSchedule, ConstantSchedule]


@dataclass(frozen=True)
class TrainingSpec:
    steps: int = option(20000, doc="Adam steps", min=0, max=100_000_000)
    lr: float = option(1e-3, doc="initial learning rate", min=0.0, min_exclusive=True, max=10.0)
    schedule: ScheduleSpec = option(ConstantSchedule("constant"), doc="learning-rate schedule")
    lbfgs_steps: int = option(0, doc="L-BFGS steps after Adam (fixed batch)", min=0)
    grad_clip: Optional[float] = option(None, doc="clip the gradient norm", min=0.0, min_exclusive=True)
    seed: int = option(0, doc="random seed", min=0)
    checkpoint_every: int = option(1000, doc="steps between checkpoints (0: only at the end)", min=0)
    log_every: int = option(100, doc="steps between metric lines", min=1)
    max_retries: int = option(3, doc="NaN/Inf rollbacks before giving up", min=0, max=100)
    aggregator: Optional[str] = option(None, doc="multi-task problems: combine the task gradients with this rule "
                                                 "(sciml.mtl: hrgrad, sum, pcgrad, imtlg, mgda, cagrad, nashmtl, "
                                                 "alignedmtl, config, upgrad)", check=lambda v: _known("AGGREGATORS", v))
    aggregator_options: dict[str, Union[int, float, str]] = option(
        field(default_factory=dict), doc="keyword options of the aggregator (the saved configuration writes its defaults out)")
    weighting: Optional[str] = option(None, doc="multi-task problems: weight the task losses with this rule "
                                                "(dwa, uncertainty, gradnorm, famo)", check=lambda v: _known("WEIGHTINGS", v))
    weighting_options: dict[str, Union[int, float, str]] = option(
        field(default_factory=dict), doc="keyword options of the weighting (the saved configuration writes its defaults out)")

    def __post_init__(self):
        if self.aggregator is not None and self.weighting is not None:
            raise ValueError("give training.aggregator or training.weighting, not both")
        for key in ("aggregator", "weighting"):
            if getattr(self, f"{key}_options") and getattr(self, key) is None:
                raise ValueError(f"training.{key}_options {getattr(self, f'{key}_options')} given without "
                                 f"training.{key} (the options would be ignored)")


@dataclass(frozen=True)
class InputEncodingSpec:
    kind: Literal["input"]


@dataclass(frozen=True)
class EmbeddingEncodingSpec:
    kind: Literal["embedding"]
    dim: int = option(8, doc="features of the learned eps code appended to the coordinates", min=1, max=4096)
    width: int = option(32, doc="hidden units of the embedding network", min=1, max=65536)


@dataclass(frozen=True)
class FiLMEncodingSpec:
    kind: Literal["film"]
    width: int = option(32, doc="hidden units of the network giving each layer's scale and shift", min=1, max=65536)


EncodingSpec = Union[InputEncodingSpec, EmbeddingEncodingSpec, FiLMEncodingSpec]


@dataclass(frozen=True)
class APNNSolverSpec:
    kind: Literal["apnn"]
    velocity_nodes: Optional[int] = option(None, doc="Gauss-Legendre nodes on [-1, 1] replacing the problem's "
                                                     "(even; even_odd evaluates only the positive half)", min=2,
                                           max=4096, check=_even)
    formulation: Literal["even_odd", "micro_macro", "pinn", "conservation"] = option(
        "even_odd", doc="linear transport: even_odd / micro_macro (asymptotic preserving), pinn (the plain "
                        "baseline); bgk: conservation")
    network: NetworkSpec = option(NetworkSpec(), doc="network of the kinetic unknowns (r and j, g, or f)")
    density_network: Optional[NetworkSpec] = option(None, doc="network of each macroscopic unknown (rho; for bgk "
                                                              "also u and T) (default: as network)")
    positive: bool = option(False, doc="positive transforms (exp) for the unknowns known to be >= 0")
    relax_initial: Optional[bool] = option(None, doc="impose the relaxed initial data f(0+) = rho0 instead of f0 "
                                                     "(default: when eps^2 < 1e-6 t_end, the initial layer is "
                                                     "unresolvable)")
    exact_walls: Optional[bool] = option(None, doc="bgk: wall values of rho, u, T built into the networks exactly "
                                                   "(default, the authors' construction) or left free (only the "
                                                   "kinetic inflow condition on f)")
    f_form: Optional[Literal["local_maxwellian", "envelope", "softplus"]] = option(
        None, doc="bgk: f = M(rho, u, T) softplus(N)/log 2 with the macroscopic networks (local_maxwellian, "
                  "default), softplus(N) exp(-v^2/(2 T_max)) (envelope), or softplus(N) (softplus, the authors')")
    eps_encoding: EncodingSpec = option(InputEncodingSpec("input"), doc="multi-task: how every network sees "
                                        "log10 eps: one more input (input), a learned code appended to the inputs "
                                        "(embedding), or scale and shift of every hidden layer (film)")
    points: PointsSpec = option(PointsSpec(), doc="collocation points")
    weights: dict[str, float] = option(field(default_factory=dict), doc="loss weights by term name")
    engine: Literal["reverse", "forward"] = option("reverse", doc="derivative engine")
    training: TrainingSpec = option(TrainingSpec(), doc="optimisation")
    dtype: Literal["float32", "float64"] = option("float32", doc="floating point type")
    device: str = option("auto", doc="auto, cpu, cuda or cuda:N",
                         check=lambda d: None if d in ("auto", "cpu", "cuda") or d.startswith("cuda:")
                         else f"expected auto, cpu, cuda or cuda:N, got {d!r}")


@dataclass(frozen=True)
class ReferenceSolverSpec:
    kind: Literal["reference"]
    nx: int = option(400, doc="cells", min=4, max=1_000_000)
    nv: int = option(128, doc="Gauss-Legendre velocities (even)", min=2, max=4096,
                     check=_even)
    dt: Optional[float] = option(None, doc="time step (default: automatic)", min=0.0, min_exclusive=True)
    cfl: float = option(0.5, doc="CFL number of explicit transport (bgk)", min=0.0, max=1.0, min_exclusive=True)
    limiter: Literal["minmod", "van_leer"] = option("minmod", doc="slope limiter of the MUSCL reconstruction (bgk)")


@dataclass(frozen=True)
class SVDLstsqSpec:
    kind: Literal["svd"]
    rcond: float = option(1e-15, doc="drop singular values below rcond * s_max", min=0.0)
    columns: bool = option(True, doc="scale the columns to unit norm before solving")


@dataclass(frozen=True)
class QRLstsqSpec:
    kind: Literal["qr"]
    rcond: float = option(1e-13, doc="rank cut of the column-pivoted QR (CPU only)", min=0.0)
    columns: bool = option(False, doc="scale the columns to unit norm before solving")


@dataclass(frozen=True)
class RidgeLstsqSpec:
    kind: Literal["ridge"]
    lam: float = option(1e-10, doc="Tikhonov parameter", min=0.0, min_exclusive=True)
    columns: bool = option(False, doc="scale the columns to unit norm before solving")


LstsqSpec = Union[SVDLstsqSpec, QRLstsqSpec, RidgeLstsqSpec]


@dataclass(frozen=True)
class NewtonSpec:
    max_iter: int = option(50, doc="most Newton iterations (nonlinear operators)", min=1, max=100000)
    tol: float = option(1e-12, doc="stop when the relative step or the relative scaled residual is below tol",
                        min=0.0)
    line_search: bool = option(True, doc="backtrack on the scaled residual")
    lstsq: LstsqSpec = option(SVDLstsqSpec("svd", rcond=1e-13), doc="least-squares solver of the Newton steps "
                                                                   "(its rank cut above the rounding noise)")
    polish: int = option(3, doc="then at most this many steps with solver.lstsq, each kept only if it lowers the "
                                "residual", min=0, max=1000)


def _constant(text) -> Optional[str]:
    from .expr import Expression
    from .errors import ConfigError
    try:
        e = Expression(str(text), ())
    except ConfigError as exc:
        return exc.message
    return None if e.is_constant else f"expected a constant such as 64*pi, got {text!r}"


@dataclass(frozen=True)
class PlaneWavesSpec:
    kind: Literal["plane_waves"]
    k: str = option(doc="wavenumber |omega|, a constant expression such as 64*pi", check=_constant)
    directions: int = option(64, doc="directions in [0, pi) (cos and sin columns each)", min=1, max=100000)


@dataclass(frozen=True)
class FourierEnrichSpec:
    kind: Literal["fourier"]
    kmax: int = option(16, doc="products sin/cos(m pi x/L) sin/cos(n pi y/L) for m, n <= kmax", min=1, max=1000)


EnrichSpec = Union[PlaneWavesSpec, FourierEnrichSpec]


@dataclass(frozen=True)
class MetaCollocSolverSpec:
    kind: Literal["metacolloc"]
    basis: str = option("2d", doc="trained basis: 2d or 3d (shipped in data/metacolloc/) or a path to a .pt file "
                                  "from `sciml metacolloc train`")
    interior: int = option(4000, doc="interior collocation points", min=1, max=10_000_000)
    boundary: int = option(1200, doc="boundary collocation points (over all conditions)", min=0, max=10_000_000)
    rows: Literal["max_norm", "unit"] = option("max_norm", doc="row weights (fixed at u = 0): each row divided by "
                                                               "its largest entry (max_norm, the authors') or as "
                                                               "written (unit)")
    row_scale: float = option(100.0, doc="factor on every row weight", min=0.0, min_exclusive=True)
    boundary_weight: float = option(0.01, doc="extra factor on the boundary rows", min=0.0, min_exclusive=True)
    lstsq: LstsqSpec = option(SVDLstsqSpec("svd"), doc="least-squares solver")
    newton: NewtonSpec = option(NewtonSpec(), doc="Newton–Raphson (nonlinear operators)")
    enrich: Optional[EnrichSpec] = option(None, doc="extra analytic columns beside the basis (2D): plane waves of "
                                                    "one wavenumber (Helmholtz) or a tensor Fourier basis")
    seed: int = option(0, doc="seed of the collocation points", min=0)
    device: str = option("auto", doc="auto, cpu, cuda or cuda:N",
                         check=lambda d: None if d in ("auto", "cpu", "cuda") or d.startswith("cuda:")
                         else f"expected auto, cpu, cuda or cuda:N, got {d!r}")


SolverSpec = Union[APNNSolverSpec, ReferenceSolverSpec, MetaCollocSolverSpec]


@dataclass(frozen=True)
class RunConfig:
    problem: ProblemSpec = option(doc="the equation and its data")
    solver: SolverSpec = option(doc="the solver (resolved from a preset in solvers/)")
    reference: ReferenceSpec = option(ReferenceSpec(), doc="reference data")
    output: OutputSpec = option(OutputSpec(), doc="output grid")


# ---- MetaColloc meta-training (`sciml metacolloc train`) --------------------------------------------
@dataclass(frozen=True)
class RandomFieldSpec:
    n_features: int = option(4096, doc="random Fourier features per field", min=2, max=1_000_000)
    smooth_lengthscale: tuple[float, float] = option((0.005, 0.05), doc="RBF lengthscale range (log-uniform)",
                                                     check=_interval)
    band_centre: tuple[float, float] = option((10.0, 300.0), doc="band-pass centre frequency range (rad per "
                                                                "unit length, per coordinate)", check=_interval)
    band_width: tuple[float, float] = option((1.0, 15.0), doc="band-pass width range", check=_interval)
    weights: tuple[float, float, float] = option((0.4, 0.4, 0.2), doc="probabilities of smooth, band-pass and "
                                                                      "half-and-half fields")


@dataclass(frozen=True)
class MetaTrainSpec:
    dim: int = option(2, doc="space dimension of the basis (the unit square or cube)", min=1, max=6)
    n_basis: int = option(512, doc="H, the number of basis functions", min=2, max=65536)
    kmax: int = option(128, doc="Fourier features sin/cos(k pi x) for k = 1, 2, 4, ..., kmax", min=1, max=65536,
                       check=lambda k: None if k & (k - 1) == 0 else f"must be a power of two, got {k}")
    fields: RandomFieldSpec = option(RandomFieldSpec(), doc="the random-field task family")
    tasks: int = option(32, doc="random fields per step (sharing the step's points)", min=1, max=100_000)
    fit_points: int = option(4000, doc="points of the inner ridge fit", min=1, max=10_000_000)
    test_points: int = option(1500, doc="held-out points of the outer loss", min=1, max=10_000_000)
    ridge: float = option(1e-8, doc="ridge parameter of the inner fit", min=0.0, min_exclusive=True)
    steps: int = option(1000, doc="AdamW steps", min=0, max=100_000_000)
    lr: float = option(1e-3, doc="peak learning rate", min=0.0, min_exclusive=True, max=10.0)
    final_lr: float = option(1e-5, doc="learning rate at the end of the cosine decay", min=0.0)
    warmup: int = option(20, doc="linear warmup steps (from 0.1 lr)", min=0)
    weight_decay: float = option(1e-4, doc="AdamW weight decay", min=0.0)
    grad_clip: float = option(1.0, doc="gradient-norm clip", min=0.0, min_exclusive=True)
    seed: int = option(0, doc="random seed", min=0)
    checkpoint_every: int = option(100, doc="steps between checkpoints", min=0)
    log_every: int = option(10, doc="steps between metric lines", min=1)
    device: str = option("auto", doc="auto, cpu, cuda or cuda:N",
                         check=lambda d: None if d in ("auto", "cpu", "cuda") or d.startswith("cuda:")
                         else f"expected auto, cpu, cuda or cuda:N, got {d!r}")

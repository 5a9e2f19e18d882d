"""Learned solvers for linear transport: plain PINN, APNN micro–macro, APNN even–odd.

All three share the problem data (:class:`~sciml.physics.LinearTransportProblem`),
the domain samplers, the residual engine and the trainer; they differ only in
the unknowns and the residual terms. Every velocity average comes from ONE
batched evaluation over (points x quadrature nodes)
(:class:`~sciml.residual.QuadratureProduct`).

Formulations (Jin, Ma, Wu, "Asymptotic-preserving neural networks for
multiscale time-dependent linear transport equations", arXiv 2111.02541):

* :class:`PINN` — one network ``f(t,x,v)``, residual of the equation multiplied by
  ``eps``: ``eps^2 f_t + eps v f_x - (<f> - f)``. As ``eps -> 0`` this loss only asks
  ``f = <f>`` and forgets the diffusion limit: it is *not* asymptotic preserving.
* :class:`MicroMacro` — ``f = rho + eps g`` with ``<g> = 0`` exactly (the network's
  quadrature mean is subtracted): ``rho_t + <v g_x> = 0`` and
  ``eps^2 g_t + eps (v g_x - <v g_x>) + v rho_x + g = 0``.
* :class:`EvenOdd` — parity ``r = (f(v)+f(-v))/2``, ``j = (f(v)-f(-v))/(2 eps)`` with
  ``r`` exactly even and ``j`` exactly odd in ``v``:
  ``eps^2 (r_t + v j_x) - (rho - r) = 0``, ``eps^2 j_t + v r_x + j = 0``, the
  conservation law ``rho_t + <v j_x> = 0`` and the constraint ``rho = <r>``.
  Because of the exact parity every residual at ``-v`` equals (up to sign) the one
  at ``v``, so only the ``v > 0`` quadrature nodes are evaluated (half the work,
  same loss). ``rho = t exp(-N)`` when the initial density is zero.

Boundary data act on the incoming half (``f = g`` for ``v > 0`` at the left wall,
``v < 0`` at the right wall); initial data on ``f(0, x, v) = f0``. Each term is a
mean square; the total is ``sum_k w_k * term_k``.
"""
from __future__ import annotations

import abc
from dataclasses import dataclass

import torch

from ..domain import Interval, Uniform
from ..nn import Even, Exp, Identity, Odd, TimesExp, build_field
from ..physics.linear_transport import Inflow, LinearTransportProblem
from ..residual import QuadratureProduct, derivatives
from .formulation import Formulation
from .formulation import mean_square as _ms


@dataclass(frozen=True)
class NetSpec:
    arch: str = "mlp"
    width: int = 128
    depth: int = 4
    act: str = "tanh"


@dataclass(frozen=True)
class PointSpec:
    interior: int = 512     # (t, x) points; each is paired with every quadrature node
    boundary: int = 128     # t points per wall
    initial: int = 128      # x points on t = 0


def _kw(spec: NetSpec) -> dict:
    return dict(arch=spec.arch, width=spec.width, depth=spec.depth, act=spec.act)


class LTFormulation(Formulation):
    """Shared machinery: sampling, boundary/initial data."""

    def __init__(self, problem: LinearTransportProblem, *, net: NetSpec = NetSpec(), rho_net: NetSpec | None = None,
                 points: PointSpec = PointSpec(), weights: dict[str, float] | None = None, sampler=Uniform(),
                 engine=None, positive: bool = False, relax_initial: bool | None = None, condition: tuple = ()):
        super().__init__(weights)
        self.cond = tuple(condition)   # extra inputs of every network (e.g. log10 eps for multi-task)
        self.problem = problem
        self.points = points
        self.sampler = sampler
        self.engine = engine
        self.eps = float(problem.eps)
        self.tx = problem.domain
        self.vint = problem.velocity_interval
        self.positive = positive
        # Initial layer: f relaxes to its average <f0> in a time of order eps^2. When
        # eps^2 is far below what a network resolves in time (eps^2 < 1e-6 t_end), the
        # kinetic initial condition f = f0 contradicts the equations at every t > 0 the
        # network can see; we then impose the relaxed (well-prepared) data f(0+) = rho0,
        # the asymptotic-preserving initial condition. None: decide from eps.
        span = self.tx["t"].length
        self.relax_initial = (self.eps**2 < 1e-6 * span) if relax_initial is None else bool(relax_initial)
        self.build(net, rho_net or net)

    # -- subclasses -------------------------------------------------------------------
    @abc.abstractmethod
    def build(self, net: NetSpec, rho_net: NetSpec) -> None:
        """Create the networks of the unknowns."""

    def _rho_field(self, spec: NetSpec):
        if self.problem.zero_initial_density:
            out = TimesExp("t", self.tx["t"].lo)
        else:
            out = Exp() if self.positive else Identity()
        return build_field(self.tx.intervals + self.cond, output=out, **_kw(spec))

    @abc.abstractmethod
    def density(self, t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """Density at the points ``(t, x)``."""

    def observables(self, t, x):
        return {"rho": self.density(t, x)}

    # -- shared -----------------------------------------------------------------------

    # wall and initial points: "speeds" pairs each (t) or (x) point with a sampled
    # speed |v| in (0, vmax] (one network evaluation per point: the authors' choice,
    # and 30x cheaper than pairing with every node); "nodes" pairs them with every
    # quadrature node (needed where a velocity average enters the wall value).
    wall_velocities = "speeds"

    def sample(self, generator: torch.Generator) -> dict:
        p = self.points
        box = self.tx
        if self.wall_velocities == "speeds":
            box = box * Interval(self.vint.name, 0.0, self.vint.hi)
        batch = {"interior": self.sampler.sample(self.tx, p.interior, generator),
                 "initial": self.sampler.sample(box.slice(t=box["t"].lo), p.initial, generator),
                 "left": self.sampler.sample(box.face("x", "lo"), p.boundary, generator)}
        if self.problem.periodic:
            batch["right"] = dict(batch["left"], x=torch.full_like(batch["left"]["x"], box["x"].hi))
        else:
            batch["right"] = self.sampler.sample(box.face("x", "hi"), p.boundary, generator)
        return batch

    def _data(self, fn, dtype, device, **cols):
        out = fn(**cols)
        shape = torch.broadcast_shapes(*[c.shape for c in cols.values()])
        return torch.broadcast_to(torch.as_tensor(out, dtype=dtype, device=device), shape)

    def _incoming(self, side: str, t: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        bc = self.problem.left if side == "left" else self.problem.right
        assert isinstance(bc, Inflow)
        return self._data(bc, t.dtype, t.device, t=t, v=v)

    def _f0(self, x: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """Initial data for f; the relaxed data ``rho0(x)`` when the initial layer is
        unresolvable (see :attr:`relax_initial`)."""
        if self.relax_initial:
            rho0 = self.problem.initial_density(x.reshape(-1)).reshape(x.shape)
            return torch.broadcast_to(rho0, torch.broadcast_shapes(x.shape, v.shape))
        return self._data(self.problem.f0, x.dtype, x.device, x=x, v=v)

    def _wall_terms(self, f_at, batch) -> dict[str, torch.Tensor]:
        """Boundary and initial mismatch for ``wall_velocities == "speeds"``.

        ``f_at(points, sign)`` is f at the points with velocity ``sign * |v|``."""
        left, right, init = batch["left"], batch["right"], batch["initial"]
        if self.problem.periodic:
            bc = 0.5 * (_ms(f_at(left, +1) - f_at(right, +1)) + _ms(f_at(left, -1) - f_at(right, -1)))
        else:
            gl = self._incoming("left", left["t"], left["v"]).unsqueeze(-1)
            gr = self._incoming("right", right["t"], -right["v"]).unsqueeze(-1)
            bc = 0.5 * (_ms(f_at(left, +1) - gl) + _ms(f_at(right, -1) - gr))
        x, v = init["x"], init["v"]
        ic = 0.5 * (_ms(f_at(init, +1) - self._f0(x, v).unsqueeze(-1))
                    + _ms(f_at(init, -1) - self._f0(x, -v).unsqueeze(-1)))
        return {"boundary": bc, "initial": ic}

    def _initial_density_term(self, batch) -> dict[str, torch.Tensor]:
        if self.problem.zero_initial_density:
            return {}
        pts = {"t": batch["initial"]["t"], "x": batch["initial"]["x"]}
        return {"initial_rho": _ms(self.rho(pts).squeeze(-1) - self.problem.initial_density(pts["x"]))}


class EvenOdd(LTFormulation):
    """Even–odd parity APNN (see module doc)."""

    # weights of the authors' code (wukekever/apnns, parity/parity.yaml): residuals 1,
    # boundary 10, initial f 10; initial rho 10 (theirs 1: too weak on the sine problem)
    default_weights = {"kinetic_r": 1.0, "kinetic_j": 1.0, "conservation": 1.0, "constraint": 1.0,
                       "boundary": 10.0, "initial": 10.0, "initial_rho": 10.0}

    def build(self, net: NetSpec, rho_net: NetSpec) -> None:
        phase = self.tx.intervals + (self.vint,) + self.cond
        self.rho = self._rho_field(rho_net)
        self.r = build_field(phase, parity=Even(self.vint.name), output=Exp() if self.positive else Identity(),
                             **_kw(net))
        self.j = build_field(phase, parity=Odd(self.vint.name), **_kw(net))
        self.vpos = self.problem.velocity.positive()

    def residuals(self, batch):
        eps, e2 = self.eps, self.eps**2
        wrt = [("t",), ("x",)]
        qp = QuadratureProduct(batch["interior"], self.vpos)
        inp = qp.inputs
        dr = derivatives(self.r, inp, wrt, engine=self.engine)
        dj = derivatives(self.j, inp, wrt, engine=self.engine)
        drho = derivatives(self.rho, batch["interior"], [("t",)], engine=self.engine)
        v = inp["v"].unsqueeze(-1)
        rho = drho[()]
        rho_m = rho.repeat_interleave(qp.m, dim=0)
        r, j = dr[()], dj[()]
        res_r = e2 * (dr[("t",)] + v * dj[("x",)]) - (rho_m - r)
        res_j = e2 * dj[("t",)] + v * dr[("x",)] + j
        cons = drho[("t",)] + qp.mean(v * dj[("x",)])
        constraint = rho - qp.mean(r)
        terms = {"kinetic_r": _ms(res_r), "kinetic_j": _ms(res_j), "conservation": _ms(cons),
                 "constraint": _ms(constraint)}

        # walls and t = 0: f(+-v) = r +- eps j at sampled speeds v > 0
        def f_at(pts, sign):
            return self.r(pts) + sign * eps * self.j(pts)

        terms.update(self._wall_terms(f_at, batch))
        terms.update(self._initial_density_term(batch))
        return terms

    def density(self, t, x):
        return self.rho({"t": t, "x": x}).squeeze(-1)


class MicroMacro(LTFormulation):
    """Micro–macro APNN: ``f = rho + eps g``, ``<g> = 0`` exactly (see module doc)."""

    default_weights = {"macro": 1.0, "micro": 1.0, "boundary": 10.0, "initial": 10.0, "initial_rho": 1.0}
    wall_velocities = "nodes"   # f = rho + eps (N - <N>) needs every node at a wall point

    def build(self, net: NetSpec, rho_net: NetSpec) -> None:
        self.rho = self._rho_field(rho_net)
        self.g_raw = build_field(self.tx.intervals + (self.vint,) + self.cond, **_kw(net))
        self.vel = self.problem.velocity

    def _g(self, qp: QuadratureProduct, values: torch.Tensor) -> torch.Tensor:
        """Subtract the quadrature mean over velocity: ``<g> = 0`` to round-off."""
        s = qp.split(values)
        return (s - qp.mean(s).unsqueeze(1)).reshape(values.shape)

    def residuals(self, batch):
        eps, e2 = self.eps, self.eps**2
        wrt = [("t",), ("x",)]
        qp = QuadratureProduct(batch["interior"], self.vel)
        inp = qp.inputs
        dg = derivatives(self.g_raw, inp, wrt, engine=self.engine)
        g, g_t, g_x = (self._g(qp, dg[k]) for k in [(), ("t",), ("x",)])
        drho = derivatives(self.rho, batch["interior"], wrt, engine=self.engine)
        v = inp["v"].unsqueeze(-1)
        vgx_mean = qp.mean(v * g_x)
        macro = drho[("t",)] + vgx_mean
        micro = e2 * g_t + eps * (v * g_x - vgx_mean.repeat_interleave(qp.m, 0)) \
            + v * drho[("x",)].repeat_interleave(qp.m, 0) + g
        terms = {"macro": _ms(macro), "micro": _ms(micro)}

        def f_full(qp_w):
            pts = qp_w.inputs
            rho = self.rho(qp_w.points).repeat_interleave(qp_w.m, 0)
            return qp_w.split(rho + eps * self._g(qp_w, self.g_raw(pts))).squeeze(-1)  # (N, M)

        vnodes = self.vel.nodes(self.device, inp["v"].dtype)
        pos, neg = vnodes > 0, vnodes < 0
        qpl = QuadratureProduct(batch["left"], self.vel)
        qpr = QuadratureProduct(batch["right"], self.vel)
        fl, fr = f_full(qpl), f_full(qpr)
        if self.problem.periodic:
            terms["boundary"] = _ms(fl - fr)
        else:
            tl = batch["left"]["t"].unsqueeze(-1)
            tr = batch["right"]["t"].unsqueeze(-1)
            gl = self._incoming("left", tl, vnodes[pos].unsqueeze(0))
            gr = self._incoming("right", tr, vnodes[neg].unsqueeze(0))
            terms["boundary"] = 0.5 * (_ms(fl[:, pos] - gl) + _ms(fr[:, neg] - gr))
        qpi = QuadratureProduct(batch["initial"], self.vel)
        f0 = self._f0(batch["initial"]["x"].unsqueeze(-1), vnodes.unsqueeze(0))
        terms["initial"] = _ms(f_full(qpi) - f0)
        terms.update(self._initial_density_term(batch))
        return terms

    def density(self, t, x):
        return self.rho({"t": t, "x": x}).squeeze(-1)


class PINN(LTFormulation):
    """Plain PINN baseline on ``f`` (not asymptotic preserving; see module doc)."""

    default_weights = {"residual": 1.0, "boundary": 10.0, "initial": 10.0}

    def build(self, net: NetSpec, rho_net: NetSpec) -> None:
        self.relax_initial = False  # the naive baseline imposes f0 as given
        self.f = build_field(self.tx.intervals + (self.vint,) + self.cond, output=Exp() if self.positive else Identity(),
                             **_kw(net))
        self.vel = self.problem.velocity

    def residuals(self, batch):
        eps, e2 = self.eps, self.eps**2
        qp = QuadratureProduct(batch["interior"], self.vel)
        inp = qp.inputs
        df = derivatives(self.f, inp, [("t",), ("x",)], engine=self.engine)
        v = inp["v"].unsqueeze(-1)
        mean_f = qp.mean(df[()]).repeat_interleave(qp.m, 0)
        res = e2 * df[("t",)] + eps * v * df[("x",)] - (mean_f - df[()])
        terms = {"residual": _ms(res)}

        def f_at(pts, sign):
            return self.f(dict(pts, v=sign * pts["v"]))

        terms.update(self._wall_terms(f_at, batch))
        return terms

    def density(self, t, x):
        qp = QuadratureProduct({"t": t, "x": x}, self.vel)
        return qp.mean(self.f(qp.inputs)).squeeze(-1)


FORMULATIONS = {"pinn": PINN, "micro_macro": MicroMacro, "even_odd": EvenOdd}

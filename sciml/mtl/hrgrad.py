r"""HRGrad: a conflict-aware, harmonised, rotated combination of task gradients.

Source: Z. Liang, "Conflict-Aware Harmonized Rotational Gradient for Multiscale
Kinetic Regimes", arXiv 2604.24745. Only the abstract is public. It states that the
final update (a) has a positive dot product with every task gradient, (b) keeps the
optimisation rates of all tasks consistent and (c) has a magnitude scaled by the
level of conflict. The closest published rule is ConFIG (Liu, Chu, Thuerey, ICLR
2025), whose direction is the minimum-norm vector with equal cosine to every task
gradient and whose length is ``sum_i g_i . d``. Everything below is OUR design from
those stated properties; each part is a small strategy object so that variants can
be compared (``sciml.mtl.aggregator("hrgrad", rates=..., magnitude=...)``).

Notation: ``G`` the ``K x n`` task gradients, ``nu_i = |g_i|``, ``u_i = g_i / nu_i``
(tasks with ``g_i = 0`` impose nothing and are left out), ``U`` the matrix of the
``u_i``.

1. **Rates** (the harmonisation / rotation part): target first-order rates ``r_i > 0``
   for the unit gradients, ``u_i . d = r_i``.

   * :class:`EqualRates`: ``r_i = 1``: equal cosines, ConFIG's direction (every
     task's loss decreases at a rate proportional to its gradient norm).
   * :class:`LossRatioRates` (default, ``alpha = 0.5``): ``r_i = (l_i / mean l)^alpha``
     with ``l_i = L_i / L_i(0)`` the task's loss relative to its first value. Tasks
     that have progressed less get a larger rate: the direction is *rotated* away
     from the equal-cosine one towards the lagging tasks, so that relative
     progress stays consistent across tasks (the inverse-training-rate idea of
     GradNorm, Chen et al., ICML 2018, applied to the direction instead of to loss
     weights). ``alpha = 0`` is :class:`EqualRates`. The rates are clipped to
     ``[1/rmax, rmax]`` (``rmax = 10``) so that no task's constraint vanishes.
   * :class:`RelativeRates` (``rates: relative``, default ``alpha = 1``):
     ``r_i = (s_i / mean s)^alpha`` with ``s_i = L_i / |g_i|``: rates that make every
     task's loss fall by the same *fraction* per step (``g_i . d / L_i`` equal), the
     rate of the logarithm of the losses, read as "optimisation rates kept
     consistent" in relative terms instead of against each task's first loss.
   * :class:`GainRates` (``rates: gain``, default ``alpha = 1``): ``r_i = (s_i / mean
     s)^alpha`` with ``s_i = |g_i| / L_i``, the inverse score: the tasks whose loss a
     step lowers by the largest fraction get the largest rate. With the ``mean``
     direction this is the direction of ``sum_i g_i / L_i``, uncertainty weighting's
     limit (Kendall et al., CVPR 2018), with the guarantee that no task loses.

   Why the default stays ``loss_ratio`` (docs/hrgrad-measurements.md, "Relative
   rates", "Gain rates"; linear transport on [0, 1], mid sizes on a CPU): ``relative``
   was worse in both seeds run, ``gain`` over five seeds level at the end (lower in 2
   of 5) and worse over the last 20 % of training, ``gain`` with ``direction: mean``
   worse in both seeds run (its guard acted at half the steps), ``gain`` with
   ``alpha = 2`` (the proportional direction weights orthogonal tasks by
   ``sqrt(r_i)``, so this puts uncertainty weighting's ``|g_i| / L_i`` on ``u_i``)
   the highest mean of seven rules over the two seeds run.

2. **Direction**. ``direction="equal"`` (:class:`MinNormDirection`): the minimum-norm ``d`` with ``U d = r``:
   ``d = U^T (U U^T)^{-1} r``, computed in the ``K``-space
   through the ``K x K`` Gram matrix in float64 (cost ``O(K^2 n)``, one pass over
   ``G``). For linearly independent gradients ``u_i . d = r_i > 0`` exactly: the
   update has a strictly positive dot product with every task gradient (property
   a). When the Gram matrix is singular (dependent gradients, or ``K > n``) a
   tiny Tikhonov shift (``ridge`` times its trace) makes it solvable; positivity is
   then not guaranteed and is reported by :func:`sciml.mtl.diagnostics`.

   ``direction="maxmin"`` (:class:`MaxMinDirection`) asks for less: the unit ``d`` that
   maximises the smallest ``u_i . d / r_i``, i.e. the largest rate that *every* task is
   guaranteed, instead of exactly equal rates. It is the normalised minimum-norm point
   of the convex hull of the ``u_i / r_i`` (MGDA's construction, Désidéri 2012, on the
   rate-scaled unit gradients instead of the raw ones), found exactly by Wolfe's
   active-set method on the ``K x K`` Gram matrix (:func:`min_norm_weights`). Where the
   equal-rate solution's weights ``(U U^T)^{-1} r`` are all positive the two directions
   coincide; where some are negative (nearly parallel gradients, as late in a PINN's
   training: the equal-rate direction is then built from their small differences, with
   small cosines to all of them), the max-min direction drops those tasks' constraints,
   which it satisfies with a larger rate anyway, and every task's rate is at least the
   equal-rate value. Property (a) holds with the same strictness (``u_i . d >= r_i |v|
   > 0`` for linearly independent gradients); (b) holds for the tasks the point rests
   on, the others progress faster.

   ``direction="proportional"`` (:class:`ProportionalDirection`, the default) maximises
   ``sum_i r_i log(u_i . d)`` over unit ``d``: proportional fairness instead of max-min
   fairness (a task's rate counts through its logarithm, so no task is starved and none
   decides alone). Its weights ``w`` solve ``w_i (U U^T w)_i = r_i``
   (:func:`proportional_weights`, Newton's method on a strictly convex ``K``-variable
   problem), so ``u_i . d > 0`` for every task. With ``r = 1`` it is Nash-MTL's
   direction (Navon et al., ICML 2022), which depends on the gradients only through
   their directions; HRGrad adds the loss-ratio rates as the bargaining weights, the
   unit length and the conflict scaling.

   ``direction="mean"`` (:class:`MeanDirection`) is the utilitarian choice: ``d`` along
   ``sum_i r_i u_i``, the unit direction with the largest rate-weighted sum of rates,
   falling back to max-min on the steps where it would lose a task.

   Why the default is ``proportional`` (docs/hrgrad-measurements.md, "The proportional
   direction", "The max-min direction", "The mean direction"; mid sizes on a CPU,
   paired runs with the same seed and only the direction changed): against ``maxmin``
   it lowered the worst-eps error in seven of nine pairs (linear transport on [0, 1],
   mean of three seeds 0.1003 -> 0.0885; on [0, 0.1] 0.527 -> 0.518; BGK level,
   0.0118 -> 0.0119), and ``maxmin`` had done the same against ``equal`` (seven of
   nine; [0, 1] 0.153 -> 0.100, BGK 0.0133 -> 0.0118). The cost: on [0, 0.1], where the
   eps = 1 task is a front no network of that size resolves, the other tasks are worse
   (geometric mean over the eps 0.106 with ``equal``, 0.128 with ``maxmin``, 0.167
   with ``proportional``). ``mean`` gave no gain (0.0885 / 0.1053 in two seeds against
   max-min's 0.0925 / 0.1034). All four remain for comparison.

3. **Magnitude** (property c): a base length multiplied by ``1 - gamma * kappa`` where
   ``kappa = mean_{i<j} max(0, -cos(g_i, g_j))`` in ``[0, 1]`` is the level of
   conflict (:class:`ConflictScaled`, default ``gamma = 0.5``): aligned tasks get the
   full step, conflicting tasks a shorter, more careful one. The base length
   (``length``) is

   * ``"projection"``: ``sum_i g_i . d_hat``, ConFIG's length (:class:`ProjectionSum`),
     which follows the scale of the gradients;
   * ``"unit"`` (default): 1 (:class:`UnitLength`), so that the update's length carries only the
     conflict factor and the optimiser's learning rate sets the step.

   Why the second: under Adam a length that follows the gradients' scale is not
   neutral. The first updates of a PINN loss are large (update norm about 1.8e3 at the
   first BGK step, loss 413) and they stay in Adam's second-moment average (beta2 =
   0.999) for hundreds of steps after the loss has fallen by decades, so the step
   Adam takes, ``lr m / sqrt(v)``, shrinks to 1.5-2.5 % of ``lr`` (RMS over the
   parameters, the trainer's ``step_rms``) from step 300 on in the mid-size BGK runs,
   against 9-17 % with the unit length (docs/hrgrad-measurements.md). The plain sum has the same
   trouble. A unit length keeps Adam's step scale fixed (as Nash-MTL's normalised
   update does) and the conflict factor then acts on the step itself. At the mid sizes
   of docs/hrgrad-measurements.md the unit length lowered HRGrad's worst-eps error in all three
   comparisons (one seed each); the normalised sum (``sum`` with ``length="unit"``)
   gained about as much, so most of the gain is the length, not the direction.

The update is zero when every task gradient is zero; the rule is equivariant to a
permutation of the tasks (the result does not change); NaN or Inf input raises a
``ValueError`` naming the task.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import torch

from .base import Aggregator


# ---- rates ------------------------------------------------------------------------------------
@dataclass
class EqualRates:
    """``r_i = 1`` (equal cosines: ConFIG's direction)."""

    def __call__(self, losses: torch.Tensor | None, norms: torch.Tensor, state: dict) -> torch.Tensor:
        return torch.ones(norms.numel(), dtype=torch.float64)


@dataclass
class _PoweredRates:
    """Rates ``(s_i / mean s)^alpha`` clipped to ``[1/rmax, rmax]``, for a per-task
    score ``s`` that the subclass defines."""

    alpha: float = 0.5
    rmax: float = 10.0

    def __post_init__(self):
        if not self.alpha >= 0:
            raise ValueError(f"alpha must be >= 0, got {self.alpha}")
        if not self.rmax >= 1:
            raise ValueError(f"rmax must be >= 1, got {self.rmax}")

    def _powered(self, s: torch.Tensor, mean: torch.Tensor) -> torch.Tensor:
        return ((s / mean).clamp_min(1e-300) ** self.alpha).clamp(1.0 / self.rmax, self.rmax)

    def _from_norms(self, losses: torch.Tensor | None, norms: torch.Tensor, score) -> torch.Tensor:
        """Powered rates from a score of the losses and gradient norms: ``score(L, nu)``
        gives the scores and which tasks take part; the others get the rate of the
        mean score (the relative and gain rates)."""
        K = norms.numel()
        if losses is None or self.alpha == 0:
            return torch.ones(K, dtype=torch.float64)
        L = losses.detach().double().cpu()
        nu = norms.detach().double().cpu()
        if L.shape != nu.shape:
            raise ValueError(f"HRGrad got {L.numel()} losses for {K} task gradients")
        s, active = score(L, nu)
        if not active.any():
            return torch.ones(K, dtype=torch.float64)
        s = torch.where(active, s, torch.ones_like(s))
        mean = s[active].mean()
        if not mean > 0:            # every active score is zero: nothing to balance
            return torch.ones(K, dtype=torch.float64)
        return self._powered(s, mean)


@dataclass
class LossRatioRates(_PoweredRates):
    """``r_i = (l_i / mean l)^alpha``, ``l_i = L_i / L_i(0)`` (see module doc)."""

    alpha: float = 0.5

    def __call__(self, losses: torch.Tensor | None, norms: torch.Tensor, state: dict) -> torch.Tensor:
        if losses is None or self.alpha == 0:
            return torch.ones(norms.numel(), dtype=torch.float64)
        L = losses.detach().double().cpu()
        if "initial_losses" not in state:
            state["initial_losses"] = L.clone()
        L0 = state["initial_losses"]
        if L0.shape != L.shape:
            raise ValueError(f"HRGrad saw {L0.numel()} tasks before and {L.numel()} now")
        rel = L / L0.clamp_min(1e-300)
        rel = torch.where(L0 > 0, rel, torch.ones_like(rel))
        return self._powered(rel, rel.mean().clamp_min(1e-300))


@dataclass
class RelativeRates(_PoweredRates):
    """``r_i = (s_i / mean s)^alpha`` with ``s_i = L_i / |g_i|`` over the tasks with a
    nonzero gradient (see module doc, 1). With ``alpha = 1`` and a direction that meets
    its rates exactly, every task's loss falls by the same fraction per unit step:
    ``d log L_i = g_i . d / L_i = |g_i| (u_i . d) / L_i`` is the same for all ``i``,
    the rate that the logarithm of the losses (uncertainty weighting's limit, Kendall
    et al., CVPR 2018) equalises, here without letting one task's gradient set the
    direction. Clipped to ``[1/rmax, rmax]``; ``alpha = 0`` is :class:`EqualRates`."""

    alpha: float = 1.0

    @staticmethod
    def _score(L, nu):
        active = nu > 0
        return L.clamp_min(0) / nu.where(active, torch.ones_like(nu)), active

    def __call__(self, losses: torch.Tensor | None, norms: torch.Tensor, state: dict) -> torch.Tensor:
        return self._from_norms(losses, norms, self._score)


@dataclass
class GainRates(_PoweredRates):
    """``r_i = (s_i / mean s)^alpha`` with ``s_i = |g_i| / L_i``: the relative decrease of
    task ``i``'s loss per unit step along its own gradient (``-d log L_i`` along
    ``u_i``), over the tasks with a nonzero loss and gradient (see module doc, 1). The
    inverse of :class:`RelativeRates`' score: the tasks whose loss a step lowers by the
    largest fraction get the largest rate. With the ``mean`` direction (``d`` along
    ``sum_i r_i u_i``) and ``alpha = 1`` the direction is that of ``sum_i g_i / L_i``,
    the gradient of ``sum_i log L_i``: uncertainty weighting's limit (Kendall et al.,
    CVPR 2018, whose weights tend to ``1 / L_i``) taken at every step instead of
    learned, with the mean direction's guard that no task loses. Clipped to
    ``[1/rmax, rmax]``; ``alpha = 0`` is :class:`EqualRates`."""

    alpha: float = 1.0

    @staticmethod
    def _score(L, nu):
        active = (nu > 0) & (L > 0)
        return nu / L.where(active, torch.ones_like(L)), active

    def __call__(self, losses: torch.Tensor | None, norms: torch.Tensor, state: dict) -> torch.Tensor:
        return self._from_norms(losses, norms, self._score)


RATES = {"loss_ratio": LossRatioRates, "relative": RelativeRates, "gain": GainRates}


# ---- direction ---------------------------------------------------------------------------------
@dataclass
class MinNormDirection:
    """Minimum-norm ``d`` with ``u_i . d = r_i`` (see module doc); returns the unit
    direction (float64, on G's device).

    ``rcond > 0`` solves in the span of the singular directions of ``U`` above
    ``rcond`` times the largest (eigenvalues of ``U U^T`` above ``rcond^2`` times the
    largest), as a pseudo-inverse with that cut-off does. When the unit gradients
    are nearly dependent, the exact solve needs a long ``d`` (equal cosines
    ``1/|d|``, tiny) built from their small differences; the cut-off keeps the
    direction in their dominant span. It is accepted only when it keeps every
    ``u_i . d > 0``; otherwise the exact solve is used, so property (a) holds as
    before. (TorchJD's ConFIG uses ``torch.linalg.pinv`` with its default cut-off,
    ``max(K, n)`` times the float32 machine epsilon, 2.4e-3 for ``n = 2e4``
    parameters: an implicit ``rcond`` that grows with the network.)"""

    ridge: float = 1e-12
    rcond: float = 0.0
    fell_back: bool = field(default=False, init=False, compare=False, repr=False)   # last call: cut-off rejected

    def __post_init__(self):
        if not 0.0 <= self.rcond < 1.0:
            raise ValueError(f"rcond must be in [0, 1), got {self.rcond}")
        if not self.ridge >= 0.0:
            raise ValueError(f"ridge must be >= 0, got {self.ridge}")

    def __call__(self, U: torch.Tensor, r: torch.Tensor, gram: torch.Tensor | None = None) -> torch.Tensor:
        gram = U @ U.T if gram is None else gram             # given by HRGrad, which needs it anyway
        K = gram.shape[0]
        r = r.to(gram.device)
        self.fell_back = False
        if self.rcond > 0:
            lam, V = torch.linalg.eigh(gram)
            keep = lam > (self.rcond ** 2) * lam.max()
            Vk = V[:, keep]
            alpha = Vk @ ((Vk.T @ r) / lam[keep])
            if bool(((gram @ alpha) > 0).all()):        # u_i . d = (U U^T alpha)_i
                d = alpha @ U
                return d / d.norm().clamp_min(1e-300)
            self.fell_back = True
        shift = self.ridge * float(torch.diagonal(gram).sum())
        alpha = torch.linalg.solve(gram + shift * torch.eye(K, dtype=gram.dtype, device=gram.device), r)
        d = alpha @ U
        return d / d.norm().clamp_min(1e-300)


def min_norm_weights(M: torch.Tensor, *, tol: float = 1e-12, max_iter: int | None = None) -> torch.Tensor:
    """Weights ``w`` on the simplex minimising ``w^T M w`` for a positive semi-definite
    Gram matrix ``M`` (``K x K``): the minimum-norm point of the convex hull of the
    vectors whose Gram matrix it is. Wolfe's active-set method (P. Wolfe, "Finding the
    nearest point in a polytope", Math. Programming 11, 1976) in weight space: exact up
    to rounding, finite, ``O(K^3)`` a step (``K <= 16`` here). Optimal when
    ``(M w)_i >= w^T M w`` for every ``i`` (to ``tol`` times the largest diagonal)."""
    device = M.device
    M = M.detach().to("cpu", torch.float64)     # K x K: cheaper on the host than many small device calls
    K = M.shape[0]
    scale = float(torch.diagonal(M).max().clamp_min(1e-300))
    atol = tol * scale
    w = torch.zeros(K, dtype=M.dtype, device=M.device)
    support = [int(torch.argmin(torch.diagonal(M)))]
    w[support[0]] = 1.0
    for _ in range(max_iter or 50 * K + 50):
        grad = M @ w
        j = int(torch.argmin(grad))
        if float(grad[j]) >= float(w @ grad) - atol or j in support:
            break
        support.append(j)
        while True:                     # the affine minimiser on the support, kept in the simplex
            idx = torch.tensor(support, device=M.device)
            s = len(support)
            kkt = torch.zeros(s + 1, s + 1, dtype=M.dtype, device=M.device)
            kkt[:s, :s] = M[idx][:, idx]
            kkt[:s, s] = 1.0
            kkt[s, :s] = 1.0
            rhs = torch.zeros(s + 1, dtype=M.dtype, device=M.device)
            rhs[s] = 1.0
            v = torch.linalg.lstsq(kkt, rhs.unsqueeze(1), driver="gelsd").solution[:s, 0]
            if bool((v > 0).all()):
                w.zero_()
                w[idx] = v
                break
            ws = w[idx]
            out = v <= 0                # the step from ws towards v stops where a weight reaches 0
            theta = float((ws[out] / (ws[out] - v[out])).min().clamp(0.0, 1.0))
            ws = ws + theta * (v - ws)
            keep = ws > 1e-15
            w.zero_()
            w[idx[keep]] = ws[keep] / ws[keep].sum()
            support = [support[k] for k in range(s) if bool(keep[k])]
    return w.to(device)


@dataclass
class MaxMinDirection:
    """The unit ``d`` that maximises ``min_i u_i . d / r_i``: the largest rate every
    task is guaranteed, instead of the same rate for all (see module doc). ``d`` is the
    minimum-norm point ``v`` of the convex hull of the ``u_i / r_i`` (normalised), so
    ``u_i . d >= r_i |v|`` for every task, with equality for the tasks the point rests
    on; it equals :class:`MinNormDirection` when that one's weights are all positive.
    When ``v`` vanishes (0 in the hull: no direction descends for every task) it falls
    back to :class:`MinNormDirection`."""

    tol: float = 1e-12
    fell_back: bool = field(default=False, init=False, compare=False, repr=False)   # last call fell back

    def __call__(self, U: torch.Tensor, r: torch.Tensor, gram: torch.Tensor | None = None) -> torch.Tensor:
        r = r.to(U.device, U.dtype)
        gram_u = U @ U.T if gram is None else gram
        A = U / r.unsqueeze(1)
        gram = gram_u / torch.outer(r, r)                  # the Gram matrix of the u_i / r_i
        w = min_norm_weights(gram, tol=self.tol).to(gram.dtype)
        norm2 = float(w @ gram @ w)
        self.fell_back = norm2 <= 1e-20 * float(torch.diagonal(gram).max())
        if self.fell_back:
            return MinNormDirection()(U, r, gram_u)
        d = w @ A
        return d / d.norm().clamp_min(1e-300)


def proportional_weights(M: torch.Tensor, r: torch.Tensor, *, tol: float = 1e-9,
                         max_iter: int = 100) -> torch.Tensor | None:
    """The weights ``w > 0`` with ``w_i (M w)_i = r_i`` for a positive semi-definite Gram
    matrix ``M`` (``K x K``) and ``r > 0``: the minimiser of the strictly convex
    ``w^T M w / 2 - sum_i r_i log w_i``, by Newton's method with a backtracking step that
    keeps ``w > 0`` (the same system as Nash-MTL's ``G G^T alpha = 1 / alpha``, Navon et
    al., ICML 2022, eq. 2, with weights ``r``). ``None`` when the objective is unbounded
    below (a positive combination of the vectors vanishes: no direction has a positive
    dot product with all of them) or Newton does not reach ``max_i |w_i (M w)_i - r_i| <=
    tol max_i r_i``."""
    M = M.detach().to("cpu", torch.float64)
    r = r.detach().to("cpu", torch.float64)
    a = float(M.sum())
    if not a > 0:
        return None
    w = torch.full_like(r, (float(r.sum()) / a) ** 0.5)      # the best multiple of (1, ..., 1)

    def f(v):
        return 0.5 * float(v @ M @ v) - float((r * torch.log(v)).sum())

    def converged(v):
        return float((v * (M @ v) - r).abs().max()) <= tol * float(r.max())

    for _ in range(max_iter):
        if converged(w):
            return w
        g = M @ w - r / w
        p, info = torch.linalg.solve_ex(M + torch.diag(r / w ** 2), g)
        if int(info) != 0 or not bool(torch.isfinite(p).all()):
            # M + diag(r / w^2) singular to rounding: w has grown until r / w^2 vanishes
            # beside M, which happens only along a null direction of M (unbounded below)
            return None
        p = -p
        dec = float(-(g @ p))                                # Newton decrement squared
        t, neg = 1.0, p < 0
        if bool(neg.any()):                                  # stay inside w > 0
            t = min(1.0, 0.99 * float((-w[neg] / p[neg]).min()))
        f0 = f(w)
        # backtracking (Armijo), unless the decrease is below what f can resolve in
        # float64: there Newton is in its quadratic phase and takes the full step
        while dec > 1e-12 * (abs(f0) + 1.0) and t > 1e-12 and f(w + t * p) > f0 - 0.25 * t * dec:
            t *= 0.5
        if t <= 1e-12:                                       # no progress left (rounding)
            break
        w = w + t * p
        if not bool(torch.isfinite(w).all()) or float(w.max()) > 1e12:    # unbounded: w grows without end
            return None
    return w if converged(w) else None


@dataclass
class ProportionalDirection:
    """The unit ``d`` that maximises ``sum_i r_i log(u_i . d)``: proportional fairness
    among the tasks, weighted by their rates (see module doc). ``d`` is proportional to
    ``U^T w`` with ``w_i (U U^T w)_i = r_i`` (:func:`proportional_weights`), so
    ``u_i . d = r_i / (w_i |U^T w|) > 0`` for every task; a task's rate is larger the
    smaller its weight. With ``r = 1`` this is Nash-MTL's direction: the Nash bargaining
    solution ``max sum_i log(g_i . d)``, ``|d| <= 1``, depends on the gradients only
    through their directions, since ``log(g_i . d) = log |g_i| + log(u_i . d)``. When no
    direction descends for every task it falls back to :class:`MinNormDirection`."""

    tol: float = 1e-9
    fell_back: bool = field(default=False, init=False, compare=False, repr=False)   # last call fell back

    def __call__(self, U: torch.Tensor, r: torch.Tensor, gram: torch.Tensor | None = None) -> torch.Tensor:
        gram = U @ U.T if gram is None else gram
        w = proportional_weights(gram, r, tol=self.tol)
        self.fell_back = w is None
        if w is None:
            return MinNormDirection()(U, r, gram)
        d = w.to(U.device, U.dtype) @ U
        return d / d.norm().clamp_min(1e-300)


@dataclass
class MeanDirection:
    """The unit ``d`` along ``sum_i r_i u_i``: the unit direction that maximises the
    rate-weighted sum of the tasks' rates, ``sum_i r_i u_i . d`` (the utilitarian
    choice, where max-min is the egalitarian one and proportional the Nash one; close
    to what uncertainty weighting does, whose update ``sum_i g_i / L_i`` weights every
    task by ``|g_i| / L_i``). It does not by itself keep every task descending: when it
    would lose one (some ``u_i . d <= 0``, strong conflict) it falls back to
    :class:`MaxMinDirection`, so property (a) holds at every step."""

    fell_back: bool = field(default=False, init=False, compare=False, repr=False)   # last call fell back

    def __call__(self, U: torch.Tensor, r: torch.Tensor, gram: torch.Tensor | None = None) -> torch.Tensor:
        gram = U @ U.T if gram is None else gram
        r = r.to(gram.device, gram.dtype)
        rates = gram @ r                                  # |sum r_j u_j| times u_i . d
        self.fell_back = not bool((rates > 0).all())
        if self.fell_back:
            return MaxMinDirection()(U, r, gram)
        d = r @ U
        return d / d.norm().clamp_min(1e-300)


DIRECTIONS = {"equal": MinNormDirection, "maxmin": MaxMinDirection, "proportional": ProportionalDirection,
              "mean": MeanDirection}


# ---- magnitude -------------------------------------------------------------------------------
@dataclass
class ProjectionSum:
    """``|update| = sum_i g_i . d_hat`` (ConFIG's length)."""

    def __call__(self, G: torch.Tensor, d_hat: torch.Tensor, cos: torch.Tensor) -> torch.Tensor:
        return (G @ d_hat).sum()


@dataclass
class UnitLength:
    """``|update| = 1``: a length independent of the gradients' scale (the optimiser's
    learning rate alone sets the step; see module doc)."""

    def __call__(self, G: torch.Tensor, d_hat: torch.Tensor, cos: torch.Tensor) -> torch.Tensor:
        return torch.ones((), dtype=d_hat.dtype, device=d_hat.device)


LENGTHS = {"projection": ProjectionSum, "unit": UnitLength}


@dataclass
class ConflictScaled:
    """``base * (1 - gamma * kappa)``, ``kappa`` the mean negative part of the pairwise
    cosines, ``base`` :class:`UnitLength` (default) or :class:`ProjectionSum` (see
    module doc)."""

    gamma: float = 0.5
    base: object = dataclasses.field(default_factory=UnitLength)

    def __post_init__(self):
        if not 0.0 <= self.gamma < 1.0:
            raise ValueError(f"gamma must be in [0, 1), got {self.gamma}")

    def __call__(self, G: torch.Tensor, d_hat: torch.Tensor, cos: torch.Tensor) -> torch.Tensor:
        K = cos.shape[0]
        if K < 2:
            kappa = torch.zeros((), dtype=cos.dtype, device=cos.device)
        else:
            iu = torch.triu_indices(K, K, 1, device=cos.device)
            kappa = (-cos[iu[0], iu[1]]).clamp_min(0).mean()
        return self.base(G, d_hat, cos) * (1.0 - self.gamma * kappa)


class HRGrad(Aggregator):
    """Harmonised rotational gradient (see module doc). Parts by keyword:
    ``rates`` (:class:`LossRatioRates` / :class:`RelativeRates` / :class:`GainRates` /
    :class:`EqualRates`, or a name: ``"loss_ratio"``, ``"relative"``, ``"gain"``; any callable ``(losses, norms, state) -> r``), ``direction``
    (:class:`ProportionalDirection` by default, or a name: ``"proportional"`` = it,
    ``"maxmin"`` = :class:`MaxMinDirection`, ``"equal"`` = :class:`MinNormDirection`,
    ``"mean"`` = :class:`MeanDirection`; any callable ``(U, r, gram) -> unit d``, ``gram = U U^T``),
    ``magnitude`` (:class:`ConflictScaled` over
    :class:`UnitLength` by default, or any callable ``(G, d_hat, cos) -> length``).
    The numbers ``alpha`` (rotation strength), ``gamma`` (conflict scaling),
    ``rcond`` (the equal-rate direction's cut-off; given alone it selects that direction) and the name ``length`` (``"unit"``, default,
    or ``"projection"``: ConFIG's length) set the default parts' parameters, which is
    what a YAML file can give (``aggregator_options: {alpha: 0, length: projection}``:
    no rotation, ConFIG's length scaled by the conflict; ``{rates: relative}``: equal
    relative rates)."""

    name = "hrgrad"

    def __init__(self, *, rates=None, direction=None, magnitude=None, alpha: float | None = None,
                 gamma: float | None = None, rcond: float | None = None, length: str | None = None):
        if isinstance(rates, str):      # a name: the default parts' rates, with alpha if given
            if rates not in RATES:
                raise ValueError(f"rates must be one of {sorted(RATES)}, got {rates!r}")
            rates = RATES[rates]() if alpha is None else RATES[rates](alpha=float(alpha))
            alpha = None
        if alpha is not None and rates is not None:
            raise ValueError("give either rates or alpha, not both")
        if direction is None:           # rcond alone is the equal-rate direction's cut-off and selects it
            direction = "proportional" if rcond is None else "equal"
        if isinstance(direction, str):
            if direction not in DIRECTIONS:
                raise ValueError(f"direction must be one of {sorted(DIRECTIONS)}, got {direction!r}")
            if rcond is not None and direction != "equal":
                raise ValueError("rcond is the cut-off of direction 'equal'")
            direction = DIRECTIONS[direction]() if rcond is None else MinNormDirection(rcond=float(rcond))
            rcond = None
        if rcond is not None:           # a direction object and rcond
            raise ValueError("give either direction or rcond, not both")
        if (gamma is not None or length is not None) and magnitude is not None:
            raise ValueError("give either magnitude or gamma / length, not both")
        if length is not None and length not in LENGTHS:
            raise ValueError(f"length must be one of {sorted(LENGTHS)}, got {length!r}")
        self.rates = rates if rates is not None else (LossRatioRates() if alpha is None else
                                                       LossRatioRates(alpha=float(alpha)))
        self.direction = direction
        if magnitude is None:
            magnitude = ConflictScaled(gamma=0.5 if gamma is None else float(gamma),
                                       base=LENGTHS[length or "unit"]())
        self.magnitude = magnitude
        self.state: dict = {}

    def aggregate(self, G, losses):
        Gd = G.double()
        norms = Gd.norm(dim=1)
        active = norms > 0
        if not active.any():
            return torch.zeros_like(G[0])
        Ga = Gd[active]
        U = Ga / norms[active].unsqueeze(1)
        r_all = self.rates(losses, norms, self.state).to(Gd.device)
        cos = U @ U.T                   # the unit gradients' Gram matrix, shared by direction and magnitude
        d_hat = self.direction(U, r_all[active], cos)
        if getattr(self.direction, "fell_back", False):
            self.state["direction_fallbacks"] = self.state.get("direction_fallbacks", torch.tensor(0)) + 1
        length = self.magnitude(Ga, d_hat, cos)
        return (length * d_hat).to(G.dtype)

    def options(self) -> dict:
        """The YAML options that rebuild this HRGrad, its defaults written out (see
        :meth:`sciml.mtl.Aggregator.options`); a ValueError when a part is not one the
        options can name (a custom rates, direction or magnitude object)."""
        rates, direction, magnitude = self.rates, self.direction, self.magnitude
        names = {v: k for k, v in DIRECTIONS.items()}
        lengths = {v: k for k, v in LENGTHS.items()}
        rate_names = {v: k for k, v in RATES.items()}
        if (type(rates) not in rate_names or rates.rmax != type(rates).rmax
                or type(direction) not in names or type(magnitude) is not ConflictScaled
                or type(magnitude.base) not in lengths or direction != type(direction)(
                    **({"rcond": direction.rcond} if isinstance(direction, MinNormDirection) else {}))):
            raise ValueError(f"{self!r} is built from parts that aggregator options cannot name")
        out = {"alpha": rates.alpha, "direction": names[type(direction)], "gamma": magnitude.gamma,
               "length": lengths[type(magnitude.base)]}
        if isinstance(direction, MinNormDirection):
            out["rcond"] = direction.rcond
        if type(rates) is not LossRatioRates:   # written only when not the default, so that the runs
            out["rates"] = rate_names[type(rates)]  # saved before the option existed keep their configuration
        return out

    def stats(self) -> dict:
        """``direction_fallbacks``: the steps so far (over resumes) at which the direction
        fell back: max-min / proportional: no direction descends for every task, the
        equal-rate direction was taken; ``rcond``: the cut-off would have lost a task,
        the exact equal-rate solve was taken; mean: it would have lost a task, the
        max-min direction was taken."""
        return {"direction_fallbacks": int(self.state.get("direction_fallbacks", 0))}

    def state_dict(self) -> dict:
        return {k: v.clone() for k, v in self.state.items()}

    def load_state_dict(self, state: dict) -> None:
        self.state = {k: torch.as_tensor(v).clone() for k, v in state.items()}

    def __repr__(self) -> str:
        return f"HRGrad(rates={self.rates}, direction={self.direction}, magnitude={self.magnitude})"

"""Gaussian random fields by random Fourier features, sampled in batches.

A field is ``y(x) = sqrt(2/D) sum_j w_j cos(omega_j . x + b_j)`` with
``w_j ~ N(0, 1)``, ``b_j ~ U(0, 2 pi)``: unit variance, and its covariance is the
Fourier transform of the law of ``omega`` (Rahimi and Recht, NeurIPS 2007). The
law of ``omega`` makes the family (choices and ranges of the MetaColloc code,
VincentdeCristo/MetaColloc, ``sample_multiscale_grf``):

* :class:`RBF`: ``omega ~ N(0, I) / l``, one lengthscale ``l`` per field,
  log-uniform in ``lengthscale`` (a squared-exponential kernel);
* :class:`BandPass`: ``omega = +-(mu + sigma N(0, I))`` with one centre ``mu``
  (uniform per coordinate in ``centre``) and one width ``sigma`` per field:
  oscillations near ``|mu|`` (a high-frequency band);
* :class:`Mixture`: each field draws one of several families with given
  probabilities; ``mix`` of them combine two families half and half.

``sample(n_fields, points, generator)`` returns the values ``(n_fields, N)`` of
``n_fields`` independent fields at the same points, in one batched product.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch


def _log_uniform(n, lo, hi, g, dtype):
    u = torch.rand(n, generator=g, device=g.device, dtype=dtype)
    return torch.exp(math.log(lo) + u * (math.log(hi) - math.log(lo)))


def _uniform(shape, lo, hi, g, dtype):
    return lo + (hi - lo) * torch.rand(shape, generator=g, device=g.device, dtype=dtype)


@dataclass(frozen=True)
class RBF:
    lengthscale: tuple[float, float] = (0.005, 0.05)

    def frequencies(self, n_fields: int, n_features: int, dim: int, g, dtype) -> torch.Tensor:
        ell = _log_uniform(n_fields, *self.lengthscale, g, dtype)
        z = torch.randn(n_fields, n_features, dim, generator=g, device=g.device, dtype=dtype)
        return z / ell[:, None, None]


@dataclass(frozen=True)
class BandPass:
    centre: tuple[float, float] = (10.0, 300.0)
    width: tuple[float, float] = (1.0, 15.0)

    def frequencies(self, n_fields: int, n_features: int, dim: int, g, dtype) -> torch.Tensor:
        mu = _uniform((n_fields, 1, dim), *self.centre, g, dtype)
        sigma = _uniform((n_fields, 1, 1), *self.width, g, dtype)
        half = n_features // 2
        z = mu + sigma * torch.randn(n_fields, n_features - half, dim, generator=g, device=g.device, dtype=dtype)
        return torch.cat([z[:, :half], -z], dim=1)[:, :n_features] if half else z


@dataclass(frozen=True)
class Half:
    """Half the features from ``a``, half from ``b`` (a field with both scales)."""

    a: object
    b: object

    def frequencies(self, n_fields, n_features, dim, g, dtype):
        h = n_features // 2
        return torch.cat([self.a.frequencies(n_fields, h, dim, g, dtype),
                          self.b.frequencies(n_fields, n_features - h, dim, g, dtype)], dim=1)


@dataclass(frozen=True)
class Mixture:
    """Each field is drawn from ``families[i]`` with probability ``weights[i]``."""

    families: tuple
    weights: tuple[float, ...]

    def __post_init__(self):
        if len(self.families) != len(self.weights) or not self.families:
            raise ValueError("Mixture needs one weight per family")
        if min(self.weights) < 0 or sum(self.weights) <= 0:
            raise ValueError(f"Mixture weights must be >= 0 with a positive sum, got {self.weights}")

    def frequencies(self, n_fields, n_features, dim, g, dtype):
        w = torch.tensor(self.weights, dtype=torch.float64, device=g.device)
        which = torch.multinomial(w / w.sum(), n_fields, replacement=True, generator=g)
        out = torch.empty(n_fields, n_features, dim, device=g.device, dtype=dtype)
        for i, fam in enumerate(self.families):
            idx = (which == i).nonzero().flatten()
            if idx.numel():
                out[idx] = fam.frequencies(idx.numel(), n_features, dim, g, dtype)
        return out


def metacolloc_family(dim: int) -> Mixture:
    """The task family of the MetaColloc code: smooth 0.4, high-frequency 0.4,
    both 0.2; ranges for 2D (lengthscale 0.005-0.05, band 10-300) and 3D
    (0.05-0.5, band 5-50)."""
    smooth = RBF((0.005, 0.05)) if dim <= 2 else RBF((0.05, 0.5))
    band = BandPass((10.0, 300.0), (1.0, 15.0)) if dim <= 2 else BandPass((5.0, 50.0), (1.0, 10.0))
    return Mixture((smooth, band, Half(smooth, band)), (0.4, 0.4, 0.2))


@dataclass(frozen=True)
class RandomFields:
    """Batches of random fields of one ``family`` with ``n_features`` features."""

    family: object
    n_features: int = 4096

    def sample(self, n_fields: int, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Values ``(n_fields, N)`` at the points ``x (N, dim)``."""
        n, dim = x.shape
        dt = x.dtype
        omega = self.family.frequencies(n_fields, self.n_features, dim, generator, dt)     # (F, D, dim)
        b = 2 * math.pi * torch.rand(n_fields, self.n_features, generator=generator, device=x.device, dtype=dt)
        w = torch.randn(n_fields, self.n_features, generator=generator, device=x.device, dtype=dt)
        out = torch.empty(n_fields, n, device=x.device, dtype=dt)
        chunk = max(1, 2**24 // max(1, self.n_features * n))       # ~128 MiB of phases at a time
        for i in range(0, n_fields, chunk):
            j = min(n_fields, i + chunk)
            phase = torch.baddbmm(b[i:j, :, None], omega[i:j], x.T.expand(j - i, dim, n))   # (f, D, N)
            out[i:j] = torch.bmm(w[i:j, None, :], phase.cos_()).squeeze(1)
        return out.mul_(math.sqrt(2.0 / self.n_features))

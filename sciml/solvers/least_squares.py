"""Least-squares solves of collocation systems that may be rank deficient.

Each strategy is a small object: ``solve(A, b) -> LstsqResult`` with the solution,
the numerical rank, the 2-norm condition number of ``A`` (largest over smallest
singular value, ``inf`` when singular) and the relative residual
``||A w - b|| / ||b||``.

* :class:`SVD` — truncated SVD: singular values below ``rcond * s_max`` are
  dropped (LAPACK ``gelsd`` on the CPU, ``torch.linalg.svd`` on GPUs). The default:
  the minimum-norm solution of the numerically nonsingular part.
* :class:`PivotedQR` — column-pivoted QR (LAPACK ``gelsy``; CPU only), what
  ``torch.linalg.lstsq`` does by default on the CPU; faster than the SVD.
* :class:`Ridge` — Tikhonov: ``min ||A w - b||^2 + lam ||w||^2`` by a QR of the
  stacked matrix ``[A; sqrt(lam) I]`` (works on every device).

``columns=True`` (any strategy) first scales every column to unit 2-norm and maps
the solution back, so the rank cut compares directions rather than the sizes of
the basis functions' derivatives (measured in ``docs/metacolloc.md``).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class LstsqResult:
    w: torch.Tensor
    rank: int
    cond: float
    residual: float        # ||A w - b|| / ||b||

    def info(self) -> dict:
        return {"rank": self.rank, "cond": self.cond, "lstsq_residual": self.residual}


def _residual(A, w, b) -> float:
    nb = float(torch.linalg.vector_norm(b))
    return float(torch.linalg.vector_norm(A @ w - b)) / (nb if nb > 0 else 1.0)


def _cond(s: torch.Tensor) -> float:
    s = s[s.isfinite()]
    return float(s.max() / s.min()) if s.numel() and float(s.min()) > 0 else math.inf


def _column_scaled(solve):
    """Solve with unit-norm columns (``A D z = b``, ``w = D z``): the rank cut then
    compares directions, not the sizes of the basis functions' derivatives."""
    def wrapped(self, A, b):
        if not getattr(self, "columns", False):
            return solve(self, A, b)
        d = 1.0 / torch.linalg.vector_norm(A, dim=0).clamp_min(1e-300)
        r = solve(self, A * d, b)
        return LstsqResult(r.w * d, r.rank, r.cond, r.residual)
    return wrapped


@dataclass(frozen=True)
class SVD:
    rcond: float = 1e-13
    columns: bool = False

    @_column_scaled
    def solve(self, A: torch.Tensor, b: torch.Tensor) -> LstsqResult:
        if A.device.type == "cpu":
            out = torch.linalg.lstsq(A, b.unsqueeze(-1), rcond=self.rcond, driver="gelsd")
            w, s = out.solution.squeeze(-1), out.singular_values
            rank = int(out.rank)
        else:
            U, s, Vh = torch.linalg.svd(A, full_matrices=False)
            keep = s > self.rcond * s[0]
            w = Vh[keep].T @ ((U[:, keep].T @ b) / s[keep])
            rank = int(keep.sum())
        return LstsqResult(w, rank, _cond(s), _residual(A, w, b))


@dataclass(frozen=True)
class PivotedQR:
    rcond: float = 1e-13
    columns: bool = False

    @_column_scaled
    def solve(self, A, b):
        if A.device.type != "cpu":
            raise ValueError("PivotedQR runs on the CPU (LAPACK gelsy); use SVD or Ridge on a GPU")
        out = torch.linalg.lstsq(A, b.unsqueeze(-1), rcond=self.rcond, driver="gelsy")
        w = out.solution.squeeze(-1)
        s = torch.linalg.svdvals(A)
        return LstsqResult(w, int(out.rank), _cond(s), _residual(A, w, b))


@dataclass(frozen=True)
class Ridge:
    lam: float = 1e-10
    columns: bool = False

    def __post_init__(self):
        if not self.lam > 0:
            raise ValueError(f"Ridge needs lam > 0, got {self.lam}")

    @_column_scaled
    def solve(self, A, b):
        n = A.shape[1]
        stacked = torch.cat([A, math.sqrt(self.lam) * torch.eye(n, dtype=A.dtype, device=A.device)])
        Q, R = torch.linalg.qr(stacked)
        rhs = Q[: A.shape[0]].T @ b
        w = torch.linalg.solve_triangular(R, rhs.unsqueeze(-1), upper=True).squeeze(-1)
        s = torch.linalg.svdvals(A)
        return LstsqResult(w, int((s > 1e-15 * s[0]).sum()), _cond(s), _residual(A, w, b))


LSTSQ = {"svd": SVD, "qr": PivotedQR, "ridge": Ridge}

"""``sciml metacolloc train``: meta-train a basis through the shared trainer and
write it with its manifest (command, seed, time, validation score, versions)."""
from __future__ import annotations

import platform
import time
from pathlib import Path

import numpy as np
import torch

from .. import distributed
from ..domain.random_fields import RBF, BandPass, Half, Mixture, RandomFields
from ..nn.basis import DualBranchBasis, octaves
from ..train import Cosine, TrainConfig, Trainer
from .apnn import resolve_device
from .metacolloc import MetaFit, save_basis


def build_fields(spec) -> RandomFields:
    f = spec.fields
    smooth, band = RBF(tuple(f.smooth_lengthscale)), BandPass(tuple(f.band_centre), tuple(f.band_width))
    return RandomFields(Mixture((smooth, band, Half(smooth, band)), tuple(f.weights)), n_features=f.n_features)


def build_objective(spec, device) -> MetaFit:
    torch.manual_seed(spec.seed)
    basis = DualBranchBasis(spec.dim, spec.n_basis, octaves(spec.kmax)).to(device=device, dtype=torch.float64)
    return MetaFit(basis, build_fields(spec), tasks=spec.tasks, fit_points=spec.fit_points,
                   test_points=spec.test_points, ridge=spec.ridge)


def meta_train(spec, out: str | Path, *, resume: bool = False, progress: bool = True, device: str | None = None,
               command: str = "", config_text: str = "") -> dict:
    """Train, then write ``out/basis.pt`` and ``out/basis.json``; returns the manifest."""
    out = Path(out)
    dev = resolve_device(device or spec.device)
    model = build_objective(spec, dev)
    schedule = Cosine(final_factor=spec.final_lr / spec.lr, warmup=spec.warmup)
    config = TrainConfig(steps=spec.steps, lr=spec.lr, weight_decay=spec.weight_decay, schedule=schedule,
                         grad_clip=spec.grad_clip, seed=spec.seed, checkpoint_every=spec.checkpoint_every,
                         log_every=spec.log_every, progress=progress)
    before = model.score()
    t0 = time.perf_counter()
    history = Trainer(model, model.loss, config=config, out_dir=out / "training").fit(resume=resume)
    wall = time.perf_counter() - t0
    after = model.score()
    manifest = {
        "what": f"MetaColloc dual-branch basis, {spec.dim}D, H = {spec.n_basis}",
        "command": command, "config": config_text, "seed": spec.seed, "steps": spec.steps,
        "train_seconds_this_run": round(wall, 1),
        "train_seconds_total": float(history.time[-1]) if history.time else 0.0,
        "device": str(dev) if dev.type == "cpu" else torch.cuda.get_device_name(dev),
        "validation": {"what": "held-out RMS error of the ridge fit over 64 fixed random fields (unit variance)",
                       "untrained": before, "trained": after},
        "final_loss": history.final_loss,
        "world_size": distributed.world_size(),     # processes, each with its own random fields per step
        "versions": {"python": platform.python_version(), "torch": torch.__version__, "numpy": np.__version__},
        "date": time.strftime("%Y-%m-%d"),
    }
    if distributed.is_main():          # under torchrun: every rank drew its own fields, rank 0 writes
        save_basis(out / "basis.pt", model.basis, manifest)
    return manifest

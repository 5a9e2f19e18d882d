"""torch.distributed as launched by ``torchrun``: one process per device, one process
group, rank 0 writes.

``torchrun --nproc_per_node=N -m sciml solve FILE.yaml`` starts N copies of the
command with ``RANK``, ``LOCAL_RANK`` and ``WORLD_SIZE`` (and the rendezvous address)
in their environment. :func:`process_group` turns that environment into an
initialised group for the duration of the command (NCCL on GPUs, each rank on
``cuda:LOCAL_RANK``; gloo on CPUs), and :func:`is_main` tells the rank that writes
files. The trainer (:mod:`sciml.train.trainer`) does the rest: the model broadcast from
rank 0, each rank's own points (generator seeded with ``seed + rank``), gradients and
logged losses averaged every step.
"""
from __future__ import annotations

import contextlib
import os

import torch


def current():
    """``torch.distributed`` when a process group is initialised, else ``None``."""
    d = torch.distributed
    if d.is_available() and d.is_initialized():
        return d
    return None


def launched_world_size() -> int:
    """The number of processes torchrun started (``WORLD_SIZE``; 1 outside torchrun)."""
    try:
        return int(os.environ.get("WORLD_SIZE", "1"))
    except ValueError:
        return 1


def rank() -> int:
    d = current()
    return d.get_rank() if d is not None else 0


def world_size() -> int:
    d = current()
    return d.get_world_size() if d is not None else 1


def is_main() -> bool:
    """Whether this process writes files (rank 0, or the only process)."""
    return rank() == 0


def barrier() -> None:
    d = current()
    if d is not None and d.get_world_size() > 1:
        d.barrier()


@contextlib.contextmanager
def process_group(backend: str | None = None):
    """Initialise the process group torchrun's environment describes, for the body of
    the ``with``; a no-op outside torchrun (``WORLD_SIZE`` unset or 1) or when a group
    exists already. ``backend``: ``"nccl"`` when CUDA is available (each rank then uses
    ``cuda:LOCAL_RANK`` as its current device), else ``"gloo"``. At the end every rank
    waits for the others before the group is destroyed (so that rank 0's writing is
    finished and no rank tears the group down under another)."""
    if launched_world_size() <= 1 or current() is not None:
        yield
        return
    d = torch.distributed
    if not d.is_available():
        raise RuntimeError("WORLD_SIZE > 1 (torchrun) but this torch build has no torch.distributed")
    cuda = torch.cuda.is_available()
    if cuda:
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    d.init_process_group(backend or ("nccl" if cuda else "gloo"))
    try:
        yield
        d.barrier()
    finally:
        d.destroy_process_group()

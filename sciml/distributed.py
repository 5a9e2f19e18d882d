"""torch.distributed as launched by ``torchrun``: one process per device, one process
group, rank 0 writes.

``torchrun --nproc_per_node=N -m sciml solve FILE.yaml`` starts N copies of the
command with ``RANK``, ``LOCAL_RANK`` and ``WORLD_SIZE`` (and the rendezvous address)
in their environment. :func:`process_group` turns that environment into an
initialised group for the duration of the command (NCCL on GPUs, each rank on
``cuda:LOCAL_RANK``; gloo on CPUs), and :func:`is_main` tells the rank that writes
files. Two ways to use the processes:

* one training shared by all (``sciml solve``): the trainer
  (:mod:`sciml.train.trainer`) broadcasts the model from rank 0, gives each rank its
  own points (generator seeded with ``seed + rank``) and averages gradients and logged
  losses every step; a multi-task rule sees the task gradients averaged over the ranks
  (:mod:`sciml.mtl.backward`);
* independent trainings, one per process (``sciml reproduce`` of a comparison: its
  runs are dealt out to the ranks): inside :func:`independent` this process works
  alone (:func:`current` is ``None``, so neither the trainer nor the multi-task hook
  communicate, and the process writes its own runs).

A leaf module (torch only), so that every layer can ask.
"""
from __future__ import annotations

import contextlib
import contextvars
import datetime
import os

import torch

_ALONE = contextvars.ContextVar("sciml_distributed_alone", default=False)


def current():
    """``torch.distributed`` when a process group is initialised and this process is not
    working alone (:func:`independent`), else ``None``."""
    d = torch.distributed
    if not _ALONE.get() and d.is_available() and d.is_initialized():
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
    """Whether this process writes the shared files (rank 0, or a process alone)."""
    return rank() == 0


def barrier() -> None:
    d = current()
    if d is not None and d.get_world_size() > 1:
        d.barrier()


@contextlib.contextmanager
def independent():
    """For the body of the ``with`` this process works alone: :func:`current` is
    ``None`` (no collective calls, :func:`is_main` true, its own files written), while
    the group stays initialised for the other ranks' later collectives."""
    token = _ALONE.set(True)
    try:
        yield
    finally:
        _ALONE.reset(token)


@contextlib.contextmanager
def process_group(backend: str | None = None, *, timeout: datetime.timedelta | None = None):
    """Initialise the process group torchrun's environment describes, for the body of
    the ``with``; a no-op outside torchrun (``WORLD_SIZE`` unset or 1), inside
    :func:`independent`, or when a group exists already. ``backend``: ``"nccl"`` when
    CUDA is available and the node has a GPU for every process (each rank then uses
    ``cuda:LOCAL_RANK`` as its current device), else ``"gloo"`` (with more processes
    than GPUs they share them: ``cuda:(LOCAL_RANK mod count)``). At the end every rank waits for the others before the group is
    destroyed (so that rank 0's writing is finished and no rank tears the group down
    under another). ``timeout``: how long a collective may wait (torch's default when
    ``None``); a comparison whose ranks finish hours apart needs a long one."""
    d = torch.distributed
    if launched_world_size() <= 1 or _ALONE.get() or (d.is_available() and d.is_initialized()):
        yield
        return
    if not d.is_available():
        raise RuntimeError("WORLD_SIZE > 1 (torchrun) but this torch build has no torch.distributed")
    cuda = torch.cuda.is_available()
    default = "gloo"
    if cuda:
        local, count = int(os.environ.get("LOCAL_RANK", "0")), torch.cuda.device_count()
        torch.cuda.set_device(local % count)
        # NCCL wants one GPU per process; more processes than GPUs on a node (several
        # small runs of a comparison sharing one GPU) talk through gloo instead
        default = "nccl" if int(os.environ.get("LOCAL_WORLD_SIZE", "1")) <= count else "gloo"
    d.init_process_group(backend or default, **({"timeout": timeout} if timeout else {}))
    try:
        yield
        d.barrier()
    finally:
        d.destroy_process_group()

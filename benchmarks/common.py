"""Helpers shared by the benchmark scripts (run as ``python benchmarks/<name>.py``)."""
from __future__ import annotations

import torch


def sync(device) -> None:
    """Wait for queued GPU work (timings on CUDA are asynchronous)."""
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def peak_mib(device) -> float:
    """Peak memory of this process: CUDA's max allocated, or the peak RSS (VmHWM)."""
    if torch.device(device).type == "cuda":
        return torch.cuda.max_memory_allocated() / 2**20
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")

"""Device handling shared by the benchmarks (`--device cpu|cuda`): wall time of a block (CUDA events on a GPU,
perf_counter on the CPU), peak memory (GPU allocator peak, else the process's peak RSS), the matmul peak of a
precision, and whether that precision is native here (lora_nlg.precision decides, as for `auto`)."""
from __future__ import annotations

import math
import resource
import time

import torch

from lora_nlg import precision


def device_of(name: str) -> torch.device:
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: CUDA is not available on this machine")
    return device


class Timer:
    """`with Timer(device) as t: ...` then t.seconds. On CUDA the block is bracketed by events and the host waits
    for the end event only (the block's own kernels are queued without a stall); elsewhere perf_counter."""

    def __init__(self, device: torch.device) -> None:
        self.cuda = device.type == "cuda"

    def __enter__(self) -> "Timer":
        if self.cuda:
            self.start, self.end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            self.start.record()
        else:
            self.tic = time.perf_counter()
        return self

    def __exit__(self, *exc) -> None:
        if self.cuda:
            self.end.record()
            self.end.synchronize()
            self.seconds = self.start.elapsed_time(self.end) / 1e3
        else:
            self.seconds = time.perf_counter() - self.tic


def reset_peak_memory(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def peak_memory_mb(device: torch.device) -> float:
    """GPU: the allocator's peak since the last reset; CPU: the process's peak RSS (Linux reports KiB)."""
    if device.type == "cuda":
        return round(torch.cuda.max_memory_allocated(device) / 2**20, 1)
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def measured_peak_flops(dtype: torch.dtype, size: int = 2048, reps: int = 5, device: torch.device | str = "cpu") -> float:
    """The best of `reps` size^3 matmuls in `dtype` on `device` (FLOP/s)."""
    device = torch.device(device)
    a, b = torch.randn(size, size, dtype=dtype, device=device), torch.randn(size, size, dtype=dtype, device=device)
    a @ b
    best = math.inf
    for _ in range(reps):
        with Timer(device) as t:
            a @ b
        best = min(best, t.seconds)
    return 2 * size ** 3 / best


def precision_facts(dtype_name: str, device: torch.device) -> dict:
    """What a row's precision is on this machine: `precision_native` False marks bf16 that is emulated here."""
    facts = {"device": str(device), "precision_native": dtype_name != "bf16" or precision.native_bf16(device)}
    if device.type == "cpu":
        facts["cpu_capability"] = precision.cpu_capability()
    else:
        facts["gpu"] = torch.cuda.get_device_name(device)
    return facts

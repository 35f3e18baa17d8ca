"""Which precision the hardware computes natively: the one place that decides `train.precision: auto`,
`decode --dtype auto` and the warning for bf16 where it is only emulated.

bf16 is native on CUDA devices that support it and on CPUs with avx512_bf16 or AMX (and ATen/oneDNN allowed to
use them). Elsewhere (AVX2-only CPUs: most laptops and many cloud VMs) PyTorch emulates bf16 matmuls at 0.3-3
GFLOP/s against 60-250 in fp32: 20-130x slower, so `auto` picks fp32 there and an explicit bf16 warns.
Tests monkeypatch `cpu_flags` / `cpu_capability` / `cuda_bf16_supported` to play either kind of machine.
"""
from __future__ import annotations

import functools
import os

import torch

NATIVE_BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")
# ONEDNN_MAX_CPU_ISA values that keep oneDNN off its bf16 instructions (oneDNN's ISA names, upper case)
_ONEDNN_ISAS_WITHOUT_BF16 = ("SSE41", "AVX", "AVX2", "AVX2_VNNI", "AVX2_VNNI_2", "AVX512_CORE", "AVX512_CORE_VNNI")
RESOLVABLE = ("fp32", "bf16", "fp16")
CHOICES = RESOLVABLE + ("auto",)


@functools.lru_cache(maxsize=1)
def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags from /proc/cpuinfo (empty where there is none, e.g. macOS)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith(("flags", "Features")):
                    return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


def cpu_capability() -> str:
    """ATen's CPU kernel level (AVX512, AVX2, DEFAULT, ...); ATEN_CPU_CAPABILITY lowers it."""
    return torch.backends.cpu.get_cpu_capability()


def cuda_bf16_supported(device: torch.device) -> bool:
    with torch.cuda.device(device):
        return torch.cuda.is_bf16_supported(including_emulation=False)


def cpu_has_native_bf16() -> bool:
    """avx512_bf16 or AMX in the CPU, and neither ATen nor oneDNN held below them by the environment."""
    if not any(flag in cpu_flags() for flag in NATIVE_BF16_CPU_FLAGS):
        return False
    if cpu_capability().upper() in ("DEFAULT", "AVX2", "ZVECTOR", "VSX"):
        return False
    return os.environ.get("ONEDNN_MAX_CPU_ISA", "").upper() not in _ONEDNN_ISAS_WITHOUT_BF16


def native_bf16(device: torch.device | str) -> bool:
    device = torch.device(device)
    if device.type == "cuda":
        return cuda_bf16_supported(device)
    if device.type == "cpu":
        return cpu_has_native_bf16()
    return False


def describe_cpu() -> str:
    """E.g. 'CPU capability AVX2, no avx512_bf16/amx_bf16' for messages and benchmark reports."""
    have = [f for f in NATIVE_BF16_CPU_FLAGS if f in cpu_flags()]
    return f"CPU capability {cpu_capability()}, " + (", ".join(have) if have else "no avx512_bf16/amx_bf16")


def resolve(requested: str, device: torch.device | str, what: str) -> tuple[str, str | None]:
    """(precision to use, warning or None) for `requested` in CHOICES on `device`; `what` names the setting in
    the warning (e.g. 'train.precision'). auto: bf16 where native, else fp32."""
    if requested not in CHOICES:
        raise ValueError(f"{what}: {requested!r} not {'|'.join(CHOICES)}")
    device = torch.device(device)
    if requested == "auto":
        return ("bf16" if native_bf16(device) else "fp32"), None
    if requested == "bf16" and not native_bf16(device):
        where = describe_cpu() if device.type == "cpu" else f"{device} without native bf16"
        return "bf16", (f"warning: {what}=bf16 on a machine that only emulates bf16 ({where}): it runs 20-130x "
                        f"slower than fp32 there; use fp32 (or auto, which picks fp32 here)")
    return requested, None

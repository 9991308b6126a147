"""Which device to run on and which dtype the user's `precision` means there."""
from __future__ import annotations

import functools

import torch


def detect_device() -> str:
    if torch.cuda.is_available():
        return "cuda"
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        return "mps"
    return "cpu"


@functools.cache
def cpu_has_bf16() -> bool:
    """True when the CPU multiplies bf16 natively (AVX512-BF16 or AMX): there bf16 is ~4x fp32."""
    try:
        flags = open("/proc/cpuinfo", encoding="utf-8").read()
    except OSError:
        return False
    return any(flag in flags for flag in ("avx512_bf16", "amx_bf16"))


def resolve_precision(precision: str, device: str | None = None) -> str:
    """Map `auto` to bf16 where the hardware supports it, else fp32 (fp16 only when asked)."""
    if precision != "auto":
        return precision
    device = device or detect_device()
    if device == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    if device == "cpu":
        return "bf16" if cpu_has_bf16() else "fp32"
    return "fp32"


DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def inference_dtype(name: str, device: str | None = None) -> torch.dtype:
    """dtype for generation: `auto` is bf16 where supported, else fp32."""
    return DTYPES[resolve_precision(name, device)]

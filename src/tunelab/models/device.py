"""Which device to run on and which dtype the user's `precision` means there.

`TUNELAB_CPU_BF16=0` makes a CPU with native bf16 behave like one without: `precision: auto` trains in
fp32 and bitsandbytes keeps its generic 4-bit kernel (see methods/qlora.py). Both paths can then be run
on one machine; tests of what differs between them are marked `cpu_precision`.
"""
from __future__ import annotations

import functools
import os

import torch

CPU_BF16_SWITCH = "TUNELAB_CPU_BF16"
_OFF = {"0", "false", "no", "off"}


def detect_device() -> str:
    if torch.cuda.is_available():
        return "cuda"
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        return "mps"
    return "cpu"


def cpu_has_bf16() -> bool:
    """True when the CPU multiplies bf16 natively (AVX512-BF16 or AMX), where bf16 is ~4x fp32, and
    TUNELAB_CPU_BF16 does not switch that off."""
    if os.environ.get(CPU_BF16_SWITCH, "").strip().lower() in _OFF:
        return False
    return _cpu_flags_have_bf16()


@functools.cache
def _cpu_flags_have_bf16() -> bool:
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
    """dtype for chat and serving, where speed matters most: `auto` is bf16 where supported, else fp32."""
    return DTYPES[resolve_precision(name, device)]


def eval_dtype(name: str, device: str | None = None) -> torch.dtype:
    """dtype for evaluation, whose numbers users compare across machines: `auto` is fp32 on every CPU (with
    or without native bf16), so a score does not depend on which CPU the eval ran on; bf16 on a GPU that
    supports it (a large model's only practical choice there), else fp32. eval.json records the dtype."""
    if name != "auto":
        return DTYPES[name]
    device = device or detect_device()
    if device == "cuda" and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return torch.float32


def dtype_name(dtype: torch.dtype) -> str:
    return next((name for name, value in DTYPES.items() if value == dtype), str(dtype).replace("torch.", ""))

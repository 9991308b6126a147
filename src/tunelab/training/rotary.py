"""Rotary position tables in the autocast dtype while a bf16 (or fp16) run trains.

Why by hand: a decoder's rotary module computes cos/sin in fp32 and casts them to the dtype of the hidden
states it is given, which under autocast is the fp32 residual stream. The queries and keys come out of their
projections in bf16, so `q * cos + rotate_half(q) * sin` runs in mixed dtypes: every product is promoted to
fp32 over the strided [B, H, T, D] views, and attention casts the fp32 result back to bf16. A model loaded in
bf16 gets its tables in bf16 and does the whole rotation in bf16; here the tables are cast to the autocast
dtype as they leave the rotary module (one forward hook on each `*RotaryEmbedding` module, every architecture
alike), so the rotation runs in bf16 as in that model. Numerics: the rotated q/k are rounded in bf16 a few
times instead of once (as in any bf16 model); tests bound the LoRA gradients against the fp32 path.
"""
from __future__ import annotations

import torch
from torch import nn


def rotary_modules(model: nn.Module) -> list[nn.Module]:
    return [m for m in model.modules() if type(m).__name__.endswith("RotaryEmbedding")]


def _to_autocast_dtype(module, args, output):
    if not isinstance(output, tuple) or not all(isinstance(t, torch.Tensor) for t in output):
        return output
    device = output[0].device.type
    if not torch.is_autocast_enabled(device):
        return output
    dtype = torch.get_autocast_dtype(device)
    if dtype not in (torch.bfloat16, torch.float16) or output[0].dtype != torch.float32:
        return output
    return tuple(t.to(dtype) for t in output)


class RotaryInComputeDtype:
    """Context manager: the model's rotary tables leave their module in the autocast dtype (when it is on)."""

    def __init__(self, model: nn.Module, enabled: bool = True):
        self.modules = rotary_modules(model) if enabled else []
        self.handles = []

    def __enter__(self):
        self.handles = [m.register_forward_hook(_to_autocast_dtype) for m in self.modules]
        return self

    def __exit__(self, *exc):
        for handle in self.handles:
            handle.remove()
        self.handles = []
        return False

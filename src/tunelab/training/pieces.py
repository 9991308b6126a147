"""How many tokens one piece of a packed batch holds (`train.piece_tokens`), and `auto`: sized from memory.

A packed batch runs forward and backward in pieces with gradients accumulated (`split_packed`), so peak
activation memory follows the piece, not the batch. Small pieces cost speed: every layer's kernels run once
per piece on fewer rows, and a matmul over fewer rows runs slower (measured on the LoRA bench, 2-core AMX
Xeon, batches of ~1,800 tokens: fixed pieces of 1,024 tokens 454 tokens/s, 2,048 521, 3,072 552, the whole
batch 559 at 5.7 GB peak RSS). A fixed count cannot suit every model: a token of a 7B model saves ~10x the
activations of a token of a 135M one. So `auto` measures: the first training step runs in pieces of
max(FIRST, max_length) tokens while autograd's saved tensors are weighed (`ActivationMeter`), and from then
on a piece may hold as many tokens as keep its saved activations within 1/SHARE of the memory free at that
moment (never fewer than max_length, so an example is never cut). With 22 GB free, the same bench (912 KB
of activations per token): 1/8 -> pieces of 2,816 tokens, 545 tokens/s, 5.9 GB peak; 1/12 -> 1,792, 575,
5.0 GB; 1/16 -> 1,280, 514, 4.5 GB. The peak grows by ~1.5x what the meter counts (the backward's own
buffers, the allocator's slack), and the memory stays the user's for everything else the machine runs.
Splitting changes no arithmetic beyond float summation order: the pieces' gradients add up to the batch's.
"""
from __future__ import annotations

import contextlib
import logging

from tunelab.training import memory

log = logging.getLogger("tunelab")

FIRST = 1024  # tokens per piece while the first step is measured
SHARE = 12    # one piece's saved activations may take 1/SHARE of the free memory
ROUND = 256   # piece sizes are multiples of this (a stable size, not one that follows the free memory's noise)


class PieceSize:
    """The current piece size (`tokens`, 0: the whole batch); with "auto", `measuring` wraps the first step and
    sets it from what that step saved."""

    def __init__(self, setting: int | str, max_length: int):
        self.auto = setting == "auto"
        self.floor = max_length
        self.tokens = max(FIRST, max_length) if self.auto else int(setting)
        self.bytes_per_token: float | None = None

    @contextlib.contextmanager
    def measuring(self, model):
        """Weigh the saved activations of what runs inside (the first step) and size the pieces from them."""
        if not self.auto or self.bytes_per_token is not None:
            yield
            return
        with memory.ActivationMeter(model) as meter:
            yield
        self.settle(meter.bytes_per_token(), memory.available_memory(_device(model)))

    def settle(self, bytes_per_token: float, free_bytes: int | None) -> None:
        self.bytes_per_token = bytes_per_token
        if bytes_per_token <= 0 or not free_bytes:
            return  # nothing measured (no gradient) or no way to know the memory: keep the first size
        fits = int(free_bytes / SHARE / bytes_per_token) // ROUND * ROUND
        self.tokens = max(self.floor, fits)
        log.info("pieces of up to %s tokens (activations %.0f KB/token measured, %.1f GB free)",
                 f"{self.tokens:,}", bytes_per_token / 1e3, free_bytes / 1e9)


def auto_tokens(bytes_per_token: float, free_bytes: int | None, max_length: int) -> int:
    """What `auto` would choose for these measurements (tunelab plan's estimate)."""
    size = PieceSize("auto", max_length)
    size.settle(bytes_per_token, free_bytes)
    return size.tokens


def _device(model) -> str:
    try:
        return next(model.parameters()).device.type
    except StopIteration:
        return "cpu"

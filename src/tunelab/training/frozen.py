"""Frozen Linear weights stored in the compute dtype for the length of a bf16 (or fp16) run.

Why by hand: under autocast every `F.linear` casts its fp32 weight to bf16 again, in every forward and
backward, and autocast caches those casts only for weights that require grad. With LoRA on a frozen base
that is one full copy of the model per forward pass (measured on a bf16 CPU: ~38,000 `_to_copy` calls,
16% of a step). A frozen weight that enters only matmuls gives the same numbers when it is stored in the
compute dtype already: autocast would have rounded it to exactly that before every use. So for the length
of training the frozen Linear weights hold their bf16 values; trainable tensors keep fp32 masters and fp32
optimizer state. Afterwards every weight gets its original values back, bit for bit, so what is saved,
merged or evaluated after training is the model the run was given. Where rounding loses nothing (a base
published in bf16, as most are), no fp32 copy is kept at all.

Not for every tensor: an embedding (often the output head too, when tied) feeds the residual stream, which
stays fp32, and a method that reads its base weight outside a matmul (DoRA's weight norm) opts out.
"""
from __future__ import annotations

import contextlib

import torch
from torch import nn


def run_compute_dtype(args) -> torch.dtype | None:
    """The dtype a Trainer's autocast computes in (None: fp32), when its weights live whole on this process;
    FSDP and DeepSpeed shard and flatten the weights themselves, so they keep what they were given."""
    if getattr(args, "fsdp", None) or getattr(args, "deepspeed", None):
        return None
    return torch.bfloat16 if args.bf16 else torch.float16 if args.fp16 else None


def frozen_linear_weights(model: nn.Module) -> list[nn.Parameter]:
    """The fp32 weights of nn.Linear layers that do not train and are not shared with an embedding."""
    embedded = {id(m.weight) for m in model.modules() if isinstance(m, nn.Embedding)}
    seen, found = set(), []
    for module in model.modules():
        weight = getattr(module, "weight", None)
        if (isinstance(module, nn.Linear) and isinstance(weight, nn.Parameter) and not weight.requires_grad
                and weight.dtype == torch.float32 and id(weight) not in embedded and id(weight) not in seen):
            seen.add(id(weight))
            found.append(weight)
    return found


class FrozenInDtype:
    """While entered, frozen Linear weights are stored in `dtype` (None or fp32: nothing changes).
    `original()` gives them their original values for a block (a checkpoint being written)."""

    def __init__(self, model: nn.Module, dtype: torch.dtype | None):
        self.model, self.dtype = model, dtype
        self.originals: list[tuple[nn.Parameter, torch.Tensor | None]] = []
        self.depth = 0  # evaluate() runs inside train(): only the outermost block converts

    @property
    def active(self) -> bool:
        return self.dtype is not None and self.dtype != torch.float32

    @torch.no_grad()
    def __enter__(self):
        self.depth += 1
        if self.active and self.depth == 1:
            self._store()
        return self

    def _store(self) -> None:
        if self.active:
            for weight in frozen_linear_weights(self.model):
                stored = weight.data.to(self.dtype)
                # keep the fp32 values only where rounding changed them
                original = None if torch.equal(stored.float(), weight.data) else weight.data
                self.originals.append((weight, original))
                weight.data = stored

    @torch.no_grad()
    def __exit__(self, *exc):
        self.depth -= 1
        if self.depth == 0:
            self._restore()
        return False

    def _restore(self) -> None:
        for weight, original in self.originals:
            weight.data = original if original is not None else weight.data.float()
        self.originals = []

    @contextlib.contextmanager
    def original(self):
        if not self.originals:
            yield
            return
        with torch.no_grad():
            self._restore()
        try:
            yield
        finally:
            with torch.no_grad():
                self._store()

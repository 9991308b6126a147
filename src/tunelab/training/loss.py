"""Causal LM loss computed only where labels exist, in chunks, without the full logits tensor.

Why by hand: transformers computes `lm_head` for every position and then an fp32 cross-entropy over
[tokens x vocab] (400 MB for 2048 tokens of a 49k vocabulary), and keeps those logits for backward.
Prompt tokens need no logits at all. Fused linear+CE kernels exist only for CUDA (Liger, Triton);
this is the same idea in plain torch: for each chunk of labelled positions, compute its logits,
the loss and — right away — the gradient with respect to the hidden states (softmax - one-hot),
then drop the logits. Nothing of size vocab is kept for backward.

Under autocast the two matmuls run in the autocast dtype (bf16: ~2x fp32 on a CPU with native bf16, and the
lm_head of a 49k vocabulary is ~20% of a step's FLOPs), as they would in the model's own lm_head; the
softmax, the loss and the accumulated weight gradient stay fp32.
"""
from __future__ import annotations

import weakref

import torch
import torch.nn.functional as F

from tunelab.data.tokenize import IGNORE

CHUNK = 512


class _LinearCrossEntropy(torch.autograd.Function):
    """sum_i CE(hidden_i @ weight.T, target_i); gradients are computed in forward, chunk by chunk."""

    @staticmethod
    def forward(ctx, hidden, weight, targets, chunk, dtype):
        with torch.autocast(hidden.device.type, enabled=False):
            w = _cast(weight, dtype)
            loss = torch.zeros((), dtype=torch.float32, device=hidden.device)
            grad_hidden = torch.empty_like(hidden) if hidden.requires_grad else None
            grad_weight = torch.zeros_like(weight, dtype=torch.float32) if weight.requires_grad else None
            scratch = _scratch(min(chunk, hidden.shape[0]), w.shape[0], dtype, hidden.device)
            for start in range(0, hidden.shape[0], chunk):
                h, t = hidden[start : start + chunk].to(dtype), targets[start : start + chunk]
                loss += _softmax_minus_one_hot(h, w, t, scratch)
                grad = scratch.logits[: t.shape[0]]  # d loss / d logits, in the compute dtype
                if grad_hidden is not None:
                    grad_hidden[start : start + chunk] = grad @ w
                if grad_weight is not None:
                    scratch.add_weight_grad(grad_weight, grad, h)
        ctx.save_for_backward(grad_hidden, grad_weight)
        ctx.weight_dtype = weight.dtype
        return loss

    @staticmethod
    def backward(ctx, grad_loss):
        grad_hidden, grad_weight = ctx.saved_tensors
        gh = grad_hidden * grad_loss.to(grad_hidden.dtype) if grad_hidden is not None else None
        gw = (grad_weight * grad_loss).to(ctx.weight_dtype) if grad_weight is not None else None
        return gh, gw, None, None, None


class _Scratch:
    """One chunk's logits (compute dtype) and their fp32 copy, reused by every chunk and every step.

    Why: a chunk's logits are tens of MB (512 x 49k); allocated fresh for each chunk, glibc hands such blocks
    out by mmap and returns them on free, so every chunk paid page faults and zeroing on ~200 MB of new memory
    (measured: the fp32 -> bf16 copy of one chunk's gradient took 40-80 ms, ~8% of a LoRA step on a CPU with
    AMX). In place on kept buffers, the same arithmetic as log_softmax costs only its passes over memory."""

    def __init__(self, rows: int, vocab: int, dtype: torch.dtype, device):
        self.logits = torch.empty(rows, vocab, dtype=dtype, device=device)
        self.fp32 = self.logits if dtype == torch.float32 else torch.empty(rows, vocab, device=device)
        self.product: torch.Tensor | None = None  # the head's weight-gradient product, when the head trains

    def add_weight_grad(self, grad_weight: torch.Tensor, grad: torch.Tensor, h: torch.Tensor) -> None:
        """grad_weight (fp32) += grad.T @ h: in place in fp32; in a lower dtype through one kept [vocab x hidden]
        product buffer (fresh, it was another ~56 MB paged in per chunk when the head trains)."""
        if grad.dtype == grad_weight.dtype:
            grad_weight.addmm_(grad.T, h)
            return
        if self.product is None or self.product.shape != grad_weight.shape:
            self.product = torch.empty(grad_weight.shape, dtype=grad.dtype, device=grad.device)
        grad_weight.add_(torch.mm(grad.T, h, out=self.product))

    def fits(self, rows: int, vocab: int, dtype: torch.dtype, device) -> bool:
        return (self.logits.shape[0] >= rows and self.logits.shape[1] == vocab and self.logits.dtype == dtype
                and self.logits.device == torch.device(device))


_SCRATCH: list[_Scratch] = []  # at most one, kept while training runs (free_scratch drops it)


def _scratch(rows: int, vocab: int, dtype: torch.dtype, device) -> _Scratch:
    if not (_SCRATCH and _SCRATCH[0].fits(rows, vocab, dtype, device)):
        _SCRATCH[:] = []  # the old buffers go before the new ones are made
        _SCRATCH.append(_Scratch(rows, vocab, dtype, device))
    return _SCRATCH[0]


def free_scratch() -> None:
    """Drop the kept loss buffers and head casts (the trainer calls it when training ends): a cast head of a
    large vocabulary is hundreds of MB that chat, eval or export after training would not use."""
    _SCRATCH.clear()
    _CASTS.entries.clear()


def _softmax_minus_one_hot(h, w, targets, scratch: _Scratch) -> torch.Tensor:
    """Summed cross-entropy of the chunk `h @ w.T`; leaves softmax - one_hot (the gradient with respect to the
    logits) in scratch.logits. The log-softmax maths in fp32, in place: z = x - max, loss = log sum exp z - z_t."""
    n = targets.shape[0]
    logits, z = scratch.logits[:n], scratch.fp32[:n]
    torch.mm(h, w.T, out=logits)
    if z is not logits:
        z.copy_(logits)
    z.sub_(z.amax(dim=-1, keepdim=True))
    rows = torch.arange(n, device=targets.device)
    picked = z[rows, targets]
    total = z.exp_().sum(dim=-1, keepdim=True)
    loss = (total.log().squeeze(1) - picked).sum()
    z.div_(total)
    z[rows, targets] -= 1.0
    if z is not logits:
        logits.copy_(z)
    return loss


def compute_dtype(hidden: torch.Tensor) -> torch.dtype:
    """The autocast dtype where autocast is on (as the model's own lm_head would compute), else hidden's."""
    device = hidden.device.type
    return torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else hidden.dtype


class _Casts:
    """The compute-dtype copy of each output head, kept while the head is unchanged.

    Why: a tied head is the fp32 embedding (it feeds the fp32 residual stream), so every packed piece cast all
    of it again: 28M values, ~40 ms per piece on a bf16 CPU, ~2% of a LoRA step. A copy is reused only while
    the weight still holds the very storage it was made from (the entry keeps that storage alive, so its
    address cannot be handed to another tensor) at the same version: an optimizer step bumps the version, and
    swapping values in through `.data` (full fine-tuning's KL-to-base) changes the storage.
    """

    LIMIT = 4  # heads alive at once: a policy and its reference model, with room to spare

    def __init__(self):
        self.entries: dict[int, tuple] = {}

    def get(self, weight: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        if weight.dtype == dtype:
            return weight
        entry = self.entries.get(id(weight))
        if entry is not None:
            owner, source, version, cast = entry
            if (owner() is weight and cast.dtype == dtype and source.data_ptr() == weight.data_ptr()
                    and source.shape == weight.shape and source.stride() == weight.stride()
                    and weight._version == version):
                return cast
        cast = weight.detach().to(dtype)
        self.entries = {key: value for key, value in self.entries.items() if value[0]() is not None}
        while len(self.entries) >= self.LIMIT:
            self.entries.pop(next(iter(self.entries)))
        self.entries[id(weight)] = (weakref.ref(weight), weight.detach(), weight._version, cast)
        return cast


_CASTS = _Casts()


def _cast(weight: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    return _CASTS.get(weight, dtype)


def linear_cross_entropy_sum(hidden, weight, targets, chunk: int = CHUNK) -> torch.Tensor:
    """Summed cross-entropy of `hidden @ weight.T` against `targets` ([N, H], [V, H], [N])."""
    if hidden.shape[0] == 0:
        return hidden.sum() * 0.0 + weight.sum() * 0.0
    dtype = compute_dtype(hidden)
    if not torch.is_grad_enabled():
        with torch.no_grad():
            return _plain_sum(hidden, weight, targets, chunk, dtype)
    return _LinearCrossEntropy.apply(hidden, weight, targets, chunk, dtype)


def _plain_sum(hidden, weight, targets, chunk, dtype):
    total = torch.zeros((), dtype=torch.float32, device=hidden.device)
    w = _cast(weight, dtype)
    for start in range(0, hidden.shape[0], chunk):
        logits = hidden[start : start + chunk].to(dtype) @ w.T
        total += F.cross_entropy(logits.float(), targets[start : start + chunk], reduction="sum")
    return total


def causal_lm_loss_sum(hidden: torch.Tensor, weight: torch.Tensor, labels: torch.Tensor,
                       chunk: int = CHUNK) -> tuple[torch.Tensor, int]:
    """(summed loss, number of predicted tokens) for hidden [B, T, H] and labels [B, T].

    Position t predicts labels[t + 1] within each row; only positions with a label are projected.
    """
    targets = labels[:, 1:].reshape(-1)
    keep = (targets != IGNORE).nonzero().flatten()
    selected = hidden[:, :-1].reshape(-1, hidden.shape[-1]).index_select(0, keep)
    return linear_cross_entropy_sum(selected, weight, targets.index_select(0, keep), chunk), keep.numel()

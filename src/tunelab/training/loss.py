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
            for start in range(0, hidden.shape[0], chunk):
                h, t = hidden[start : start + chunk].to(dtype), targets[start : start + chunk]
                logp = torch.log_softmax(h @ w.T, dim=-1, dtype=torch.float32)  # one pass, fp32 out
                rows = torch.arange(t.shape[0], device=t.device)
                loss -= logp[rows, t].sum()
                # d loss / d logits = softmax - one_hot, computed in the log-softmax buffer
                grad = logp.exp_()
                grad[rows, t] -= 1.0
                grad = grad.to(dtype)
                if grad_hidden is not None:
                    grad_hidden[start : start + chunk] = grad @ w
                if grad_weight is not None:
                    grad_weight += (grad.T @ h).float()
        ctx.save_for_backward(grad_hidden, grad_weight)
        ctx.weight_dtype = weight.dtype
        return loss

    @staticmethod
    def backward(ctx, grad_loss):
        grad_hidden, grad_weight = ctx.saved_tensors
        gh = grad_hidden * grad_loss.to(grad_hidden.dtype) if grad_hidden is not None else None
        gw = (grad_weight * grad_loss).to(ctx.weight_dtype) if grad_weight is not None else None
        return gh, gw, None, None, None


def compute_dtype(hidden: torch.Tensor) -> torch.dtype:
    """The autocast dtype where autocast is on (as the model's own lm_head would compute), else hidden's."""
    device = hidden.device.type
    return torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else hidden.dtype


def _cast(weight: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    # Once per call, shared by its chunks. Not cached across calls: a weight's identity is not enough to
    # know it is unchanged (full fine-tuning's KL-to-base swaps the starting values in through .data).
    return weight if weight.dtype == dtype else weight.detach().to(dtype)


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

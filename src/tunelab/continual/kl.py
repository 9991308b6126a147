"""KL to the base: keep the tuned model's next-token distributions on the old data close to the base model's,
weight * mean over the reference rows' answer positions of KL(base || tuned). The base is the same model with
the method switched off (adapters disabled, or the starting values swapped in for full/freeze): no second copy.

Cached (the default, `continual.kl_top_k` 32): the base's distributions never change, so they are computed once
before training and cached (tunelab.continual.targets); each step only the tuned model runs on
`kl_batch_size` reference rows. When the stage packs its batches and uses tunelab's fused loss, those rows join
the task batch's own forward (one pass over both; the trainer hands back their hidden states), otherwise the
term runs its own forward. The KL is between the distributions coarsened to the base's top k tokens plus
"everything else": never above the exact KL, equal to it when the base's mass is on those k tokens.

Exact (`kl_top_k: 0`): a base pass over the same rows every step (no gradients, run first so swapping weights in
and out never touches tensors the tuned pass saved for backward) and the full-vocabulary KL.

With gradient accumulation or a batch run in pieces the term is called once per piece: each call takes its share
of the step's rows, and the trainer scales its value by that share, so `weight` means the same per optimizer step.
"""
from __future__ import annotations

import math
from contextlib import nullcontext

import torch
import torch.nn.functional as F

from tunelab.continual.base import ContinualMethod, LossTerm, Setting, register
from tunelab.continual.targets import (
    Targets, answer_logits, answer_positions, base_identity, cached_targets, compute_targets, log_rest,
)
from tunelab.models.tokens import pad_id


class KlToBase(LossTerm):
    name = "kl"

    def __init__(self, weight: float, model, method, rows: list[dict], per_step: int, pad_id: int,
                 targets: Targets | None = None, autocast=nullcontext, split=None):
        self.weight, self.model, self.method, self.rows = weight, model, method, rows
        self.per_step, self.pad_id, self.targets = per_step, pad_id, targets
        self.autocast, self.split = autocast, split
        self.share = 1.0         # the trainer's share of a step this call is (set before each call)
        self.cursor = 0
        self.handed: tuple[list[int], torch.Tensor] | None = None  # rows that joined the task forward + hidden

    @property
    def joins_forward(self) -> bool:
        """Whether the trainer may run this term's rows in its own forward (cached targets and a plain head)."""
        return self.targets is not None and self.split is not None

    def rows_to_join(self, share: float) -> list[dict]:
        """The rows of this call, for the trainer to append to its packed batch; `hand_over` returns them."""
        self.share = share
        self.pending = self._next()
        return [self.rows[i] for i in self.pending]

    def hand_over(self, hidden: torch.Tensor) -> None:
        """The joined rows' final hidden states [1, tokens, hidden], laid end to end as `rows_to_join` gave them."""
        self.handed = (self.pending, hidden)

    def __call__(self, model, inputs, outputs) -> torch.Tensor:
        if self.handed is not None:
            indices, hidden = self.handed
            self.handed = None
            tuned = self._head(hidden, [self.rows[i] for i in indices])
        else:
            indices = self._next()
            base = self._exact_base(indices) if self.targets is None else None
            with self.autocast():
                tuned = answer_logits(self.model, [self.rows[i] for i in indices], self.pad_id, self.split)
            if base is not None:
                return self.weight * kl_full(base, tuned)
        return self.weight * kl_top_k(*self.targets.of_rows(indices), tuned)

    def _next(self) -> list[int]:
        count = max(1, math.ceil(self.per_step * self.share))
        picked = [(self.cursor + i) % len(self.rows) for i in range(count)]
        self.cursor = (self.cursor + count) % len(self.rows)
        return picked

    def _head(self, hidden: torch.Tensor, rows: list[dict]) -> torch.Tensor:
        where = answer_positions(rows).to(hidden.device)
        selected = hidden.reshape(-1, hidden.shape[-1]).index_select(0, where)
        with self.autocast():
            return self.split[1](selected).float()

    def _exact_base(self, indices: list[int]) -> torch.Tensor:
        with torch.no_grad(), self.method.disable(self.model), self.autocast():
            return answer_logits(self.model, [self.rows[i] for i in indices], self.pad_id, self.split)


def kl_full(base_logits: torch.Tensor, tuned_logits: torch.Tensor) -> torch.Tensor:
    """Mean over positions of KL(base || tuned) of the next-token distributions, over the whole vocabulary."""
    base_logp, tuned_logp = F.log_softmax(base_logits.float(), dim=-1), F.log_softmax(tuned_logits.float(), dim=-1)
    return (base_logp.exp() * (base_logp - tuned_logp)).sum(dim=-1).mean()


def kl_top_k(ids: torch.Tensor, logp: torch.Tensor, rest: torch.Tensor, tuned_logits: torch.Tensor) -> torch.Tensor:
    """Mean over positions of KL(base || tuned) over the base's top-k tokens plus one "everything else" outcome:
    sum_i p_i (log p_i - log q_i) + p_rest (log p_rest - log q_rest)."""
    device = tuned_logits.device
    ids, logp, rest = ids.to(device), logp.to(device), rest.to(device)
    tuned = F.log_softmax(tuned_logits.float(), dim=-1).gather(-1, ids)
    per_position = (logp.exp() * (logp - tuned)).sum(dim=-1) + rest.exp() * (rest - log_rest(tuned))
    return per_position.mean() if per_position.numel() else tuned_logits.sum() * 0.0


@register("kl")
class KL(ContinualMethod):
    def loss_term(self, setting: Setting) -> LossTerm:
        from tunelab.data.cache import tokenizer_fingerprint
        from tunelab.training.trainer import split_causal_lm

        tokenizer, model, rows = setting.tokenizer, setting.model, setting.reference()
        pad = pad_id(tokenizer)
        split = split_causal_lm(model)
        targets, k = None, self.config.kl_top_k
        if k:
            parts = {"base": base_identity(setting.config.model, model), "tokenizer": tokenizer_fingerprint(tokenizer),
                     "k": k, "compute_dtype": setting.compute_dtype}
            targets = cached_targets(parts, rows, lambda: compute_targets(model, setting.method, rows, k, pad,
                                                                          setting.autocast, split))
        return KlToBase(self.weight, model, setting.method, rows, self.config.kl_batch_size, pad, targets,
                        setting.autocast, split)

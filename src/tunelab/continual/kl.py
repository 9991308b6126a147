"""KL to the base: keep the tuned model's next-token distributions on the old data close to the base model's,
weight * mean over answer tokens of KL(base || tuned). The base is the same model with the method switched
off (adapters disabled, or the starting values swapped in for full/freeze): no second copy in memory.

One reference batch per training step; the base pass runs first and without gradients, so swapping weights
in and out never touches tensors the tuned pass saved for backward.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from tunelab.continual.base import ContinualMethod, LossTerm, Setting, register
from tunelab.continual.reference import batches
from tunelab.data.tokenize import IGNORE


class KlToBase(LossTerm):
    name = "kl"

    def __init__(self, weight: float, model, method, batches_):
        self.weight, self.model, self.method, self.batches = weight, model, method, batches_

    def __call__(self, model, inputs, outputs) -> torch.Tensor:
        batch = next(self.batches)
        device = next(p for p in self.model.parameters() if p.requires_grad).device
        ids, mask = batch["input_ids"].to(device), batch["attention_mask"].to(device)
        keep = batch["labels"].to(device) != IGNORE
        with torch.no_grad(), self.method.disable(self.model):
            base = self._logits(ids, mask, keep)
        tuned = self._logits(ids, mask, keep)
        return self.weight * kl_divergence(base, tuned)

    def _logits(self, ids, mask, keep) -> torch.Tensor:
        logits = self.model(input_ids=ids, attention_mask=mask).logits
        return logits[:, -ids.shape[1]:][keep].float()  # prompt tuning prepends virtual positions


def kl_divergence(base_logits: torch.Tensor, tuned_logits: torch.Tensor) -> torch.Tensor:
    """Mean over positions of KL(base || tuned) of the next-token distributions."""
    base_logp, tuned_logp = F.log_softmax(base_logits, dim=-1), F.log_softmax(tuned_logits, dim=-1)
    return (base_logp.exp() * (base_logp - tuned_logp)).sum(dim=-1).mean()


@register("kl")
class KL(ContinualMethod):
    def loss_term(self, setting: Setting) -> LossTerm:
        pad = setting.tokenizer.pad_token_id if setting.tokenizer.pad_token_id is not None else 0
        return KlToBase(self.weight, setting.model, setting.method,
                        batches(setting.reference(), self.config.kl_batch_size, pad))

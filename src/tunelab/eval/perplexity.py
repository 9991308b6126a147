"""Loss on the reference answers, one batch at a time: per example the summed negative log-likelihood of
its trained (assistant) tokens and how many there are. Perplexity = exp(total nll / total tokens).

Only one batch of logits exists at any time and each is reduced to two numbers per example at once:
keeping logits (or predictions as logits) for the whole set is how other toolkits run out of memory.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from tunelab.data.tokenize import IGNORE


def pad_batch(rows: list[dict], pad_id: int) -> dict[str, torch.Tensor]:
    """Right-padded input_ids / attention_mask / labels of tokenized rows."""
    width = max(len(row["input_ids"]) for row in rows)

    def padded(key: str, fill: int) -> torch.Tensor:
        return torch.tensor([row[key] + [fill] * (width - len(row[key])) for row in rows])

    return {"input_ids": padded("input_ids", pad_id), "attention_mask": padded("attention_mask", 0),
            "labels": padded("labels", IGNORE)}


@torch.inference_mode()
def answer_nll(model: torch.nn.Module, batch: dict[str, torch.Tensor], device: str) -> list[tuple[float, int]]:
    """(summed nll, token count) of each row's labelled tokens."""
    labels = batch["labels"].to(device)
    logits = model(input_ids=batch["input_ids"].to(device), attention_mask=batch["attention_mask"].to(device)).logits
    logits = logits[:, -labels.shape[1]:]  # prompt tuning prepends virtual tokens to the outputs
    shifted, targets = logits[:, :-1].float(), labels[:, 1:]
    nll = F.cross_entropy(shifted.reshape(-1, shifted.shape[-1]), targets.reshape(-1), ignore_index=IGNORE,
                          reduction="none").view(targets.shape)
    counts = (targets != IGNORE).sum(dim=1)
    return [(float(total), int(count)) for total, count in zip(nll.sum(dim=1).cpu(), counts.cpu())]

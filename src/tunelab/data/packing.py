"""Padding-free packing: the examples of a micro-batch laid end to end in one row.

`train.batch_size` keeps meaning examples per optimizer step: the Trainer's sampler still hands the
collator `batch_size` examples; packing only changes their layout (one row, no padding, positions
restarting at 0 for each example), never how many there are. Packed attention
(`tunelab.models.attention`) keeps the examples apart.

Pretraining documents are packed differently, before batching: `pack_documents` fills blocks of
`max_length` tokens with whole documents (cut only when one is longer than a block), each block
carrying per-document positions so no token attends across a document boundary.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from tunelab.data.tokenize import IGNORE


def _positions(row: dict) -> list[int]:
    return list(row["position_ids"]) if "position_ids" in row else list(range(len(row["input_ids"])))


@dataclass
class PackedCollator:
    """Rows -> one packed row {input_ids, labels, position_ids} of shape [1, total tokens].

    The label at each sequence start is IGNORE: after the causal shift it would be the target of the
    previous sequence's last token, i.e. a prediction across a boundary.
    """

    def __call__(self, rows: list[dict]) -> dict:
        input_ids, labels, positions = [], [], []
        for row in rows:
            row_positions = _positions(row)
            input_ids.extend(row["input_ids"])
            positions.extend(row_positions)
            labels.extend(IGNORE if p == 0 else label for p, label in zip(row_positions, row["labels"]))
        return {
            "input_ids": torch.tensor([input_ids], dtype=torch.long),
            "labels": torch.tensor([labels], dtype=torch.long),
            "position_ids": torch.tensor([positions], dtype=torch.long),
        }


def pack_documents(rows: list[dict], max_length: int) -> list[dict]:
    """Greedy first-fit of tokenized documents (already cut to <= max_length) into blocks of max_length.

    Order is kept within the stream; a block takes the next document while it fits.
    """
    blocks, current = [], {"input_ids": [], "labels": [], "position_ids": []}
    for row in rows:
        n = len(row["input_ids"])
        if current["input_ids"] and len(current["input_ids"]) + n > max_length:
            blocks.append(current)
            current = {"input_ids": [], "labels": [], "position_ids": []}
        current["input_ids"].extend(row["input_ids"])
        current["labels"].extend(row["labels"])
        current["position_ids"].extend(range(n))
    if current["input_ids"]:
        blocks.append(current)
    return blocks


def split_packed(batch: dict, max_tokens: int) -> list[dict]:
    """Cut a packed [1, T] batch at sequence starts into pieces of at most `max_tokens` tokens
    (a single longer sequence stays whole). Training runs the pieces one after the other and
    accumulates their gradients: peak activation memory follows `max_tokens`, not the batch size."""
    positions = batch["position_ids"][0]
    total = positions.numel()
    if positions.dim() != 1 or batch["input_ids"].shape[0] != 1 or total <= max_tokens:
        return [batch]
    starts = (positions == 0).nonzero().flatten().tolist()
    cuts, begin = [], 0
    for start, end in zip(starts, [*starts[1:], total]):
        if start > begin and end - begin > max_tokens:
            cuts.append((begin, start))
            begin = start
    cuts.append((begin, total))
    return [{key: value[:, a:b] for key, value in batch.items()} for a, b in cuts]


def piece_tokens(train) -> int | str:
    """The most tokens one piece of a packed batch holds (`split_packed`): train.piece_tokens, but never
    fewer than train.max_length, so an example always fits; 0 runs the whole batch at once; "auto" is sized
    from the first step's measured activations (tunelab.training.pieces)."""
    if train.piece_tokens == "auto" or not train.piece_tokens:
        return train.piece_tokens
    return max(train.piece_tokens, train.max_length)

"""Hold out part of the tokenized rows for evaluation, reproducibly."""
from __future__ import annotations

import random


def split_rows(rows: list[dict], val_size: float, seed: int) -> tuple[list[dict], list[dict]]:
    """`val_size` < 1 is a fraction, >= 1 a count; at least one row always stays for training."""
    if val_size <= 0 or len(rows) < 2:
        return rows, []
    count = int(val_size) if val_size >= 1 else max(1, round(len(rows) * val_size))
    count = min(count, len(rows) - 1)
    order = list(range(len(rows)))
    random.Random(seed).shuffle(order)
    held = set(order[:count])
    return [r for i, r in enumerate(rows) if i not in held], [r for i, r in enumerate(rows) if i in held]

"""The 'old' data the continual methods protect: `continual.reference_data` (default the shipped general
instruction set), loaded once, tokenized like SFT, and cut into padded batches."""
from __future__ import annotations

import random
from functools import lru_cache
from typing import Iterator

from tunelab.data.tokenize import TokenizeStats, conversation_rows, tokenize_text
from tunelab.errors import TunelabError
from tunelab.eval.perplexity import pad_batch


@lru_cache(maxsize=4)
def _load(path: str, dataset: str | None) -> tuple[dict, ...]:
    from tunelab.data.loading import load_examples

    return tuple(load_examples(path, dataset))


def reference_examples(config) -> list[dict]:
    """The reference data's examples (conversations or plain text), checked to be usable."""
    examples = list(_load(config.reference_data, config.reference_dataset))
    if not examples:
        raise TunelabError(f"continual.reference_data {config.reference_data}: no examples")
    odd = next((e for e in examples if "messages" not in e and "text" not in e), None)
    if odd is not None:
        raise TunelabError(f"{odd.get('source')}: continual.reference_data must hold conversations or plain text "
                           f"(got a record with {sorted(k for k in odd if k != 'source')})")
    return examples


def tokenized(examples: list[dict], tokenizer, max_length: int, count: int, seed: int) -> list[dict]:
    """Up to `count` rows (input_ids, attention_mask, labels) from a seeded sample of the examples."""
    picked = random.Random(seed).sample(examples, min(count, len(examples)))
    stats, rows = TokenizeStats(), []
    for example in picked:
        if "messages" in example:
            rows += conversation_rows(tokenizer, example, max_length, stats)[-1:]
        else:
            rows += [r for r in tokenize_text(tokenizer, example, max_length, stats) if r][:1]
    if not rows:
        raise TunelabError("continual.reference_data: no example has tokens left to score at train.max_length")
    return rows


def batches(rows: list[dict], size: int, pad_id: int) -> Iterator[dict]:
    """Padded batches of the rows, cycling for as long as training asks."""
    while True:
        for start in range(0, len(rows), size):
            yield pad_batch(rows[start : start + size], pad_id)

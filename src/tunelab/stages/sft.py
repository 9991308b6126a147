"""Supervised fine-tuning: loss on assistant turns only (every turn of multi-turn data), EOS included."""
from __future__ import annotations

from tqdm.auto import tqdm

from tunelab.data.tokenize import TokenizeStats, tokenize_conversation
from tunelab.stages.base import Stage, register


@register("sft")
class SftStage(Stage):
    example_kind = "messages"

    def tokenize(self, examples, tokenizer):
        stats, rows = TokenizeStats(), []
        for example in tqdm(examples, desc="tokenize", unit="ex", leave=False, mininterval=1.0):
            row = tokenize_conversation(tokenizer, example, self.config.train.max_length, stats)
            if row is not None:
                rows.append(row)
        return rows, stats

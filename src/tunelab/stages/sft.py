"""Supervised fine-tuning: loss on assistant turns only (every turn of multi-turn data), EOS included."""
from __future__ import annotations

from tunelab.data.tokenize import tokenize_conversation
from tunelab.stages.base import Stage, register


@register("sft")
class SftStage(Stage):
    example_kind = "messages"

    def tokenize_example(self, example, tokenizer, stats):
        row = tokenize_conversation(tokenizer, example, self.config.train.max_length, stats)
        return [row] if row is not None else []

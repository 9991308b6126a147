"""Continued pretraining: causal LM on every token of plain-text documents."""
from __future__ import annotations

from tunelab.data.tokenize import tokenize_text
from tunelab.stages.base import Stage, register


@register("pretrain")
class PretrainStage(Stage):
    example_kind = "text"

    def tokenize_example(self, example, tokenizer, stats):
        return tokenize_text(tokenizer, example, self.config.train.max_length, stats)

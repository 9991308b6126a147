"""Continued pretraining: causal LM on every token of plain-text documents."""
from __future__ import annotations

from tqdm.auto import tqdm

from tunelab.data.tokenize import TokenizeStats, tokenize_text
from tunelab.stages.base import Stage, register


@register("pretrain")
class PretrainStage(Stage):
    example_kind = "text"

    def tokenize(self, examples, tokenizer):
        stats, rows = TokenizeStats(), []
        for example in tqdm(examples, desc="tokenize", unit="doc", leave=False, mininterval=1.0):
            rows.extend(tokenize_text(tokenizer, example, self.config.train.max_length, stats))
        return rows, stats

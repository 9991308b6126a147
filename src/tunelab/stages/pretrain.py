"""Continued pretraining: causal LM on every token of plain-text documents.

With packing on, documents are packed whole into blocks of `train.max_length` tokens (positions
restart per document, so no token attends across a document boundary); a block is one example.
"""
from __future__ import annotations

from tunelab.data.packing import pack_documents
from tunelab.data.tokenize import tokenize_text
from tunelab.stages.base import Stage, register


@register("pretrain")
class PretrainStage(Stage):
    def tokenize_example(self, example, tokenizer, stats):
        return tokenize_text(tokenizer, example, self.config.train.max_length, stats)

    def pack(self, rows):
        return pack_documents(rows, self.config.train.max_length)

"""Supervised fine-tuning: loss on assistant turns only (every turn of multi-turn data), EOS included."""
from __future__ import annotations

from tunelab.data.records import has_empty_answer
from tunelab.data.reasoning import Thinking
from tunelab.data.tokenize import conversation_rows
from tunelab.stages.base import Stage, register


@register("sft")
class SftStage(Stage):
    def skips(self, example, stats):
        """An empty assistant answer would teach the model to end its answer at once: skipped and counted."""
        if not has_empty_answer(example):
            return False
        stats.empty += 1
        stats.empty_sources.append(example.get("source", "?"))
        return True

    def tokenize_example(self, example, tokenizer, stats):
        return conversation_rows(tokenizer, example, self.config.train.max_length, stats, Thinking.of(self.config.data))

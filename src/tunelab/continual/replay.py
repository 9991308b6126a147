"""Replay: mix old examples into the new data, `continual.replay_ratio` of the resulting training set. The task's
own examples all stay, once; the reference examples are taken as a data.mix takes a source's rows
(tunelab.data.mixture: a seeded shuffled order, each example once before any repeats). Drawn once, so every
epoch sees the same replayed examples."""
from __future__ import annotations

from tunelab.continual.base import ContinualMethod, register
from tunelab.data.mixture import take
from tunelab.errors import TunelabError


@register("replay")
class Replay(ContinualMethod):
    def examples(self, examples: list[dict], reference: list[dict], seed: int) -> list[dict]:
        kind = "messages" if "messages" in examples[0] else "text"
        usable = [example for example in reference if kind in example]
        if not usable:
            raise TunelabError(f"continual.reference_data {self.config.reference_data}: replay needs examples like "
                               f"the training data ({kind!r} records)")
        ratio = self.config.replay_ratio
        picked = take(usable, round(ratio * len(examples) / (1 - ratio)), seed)
        self.replayed = len(picked)
        return examples + [{**example, "source": f"replay {example.get('source')}"} for example in picked]

    def summary(self) -> dict:
        return {"replayed_examples": getattr(self, "replayed", 0)}

"""Replay: mix old examples into the new data, `continual.replay_ratio` of the resulting training set (a seeded
sample of the reference data; drawn once, so every epoch sees the same replayed examples)."""
from __future__ import annotations

import random

from tunelab.continual.base import ContinualMethod, register
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
        wanted = round(ratio * len(examples) / (1 - ratio))
        rng = random.Random(seed)
        picked = rng.sample(usable, wanted) if wanted <= len(usable) else rng.choices(usable, k=wanted)
        self.replayed = len(picked)
        return examples + [{**example, "source": f"replay {example.get('source')}"} for example in picked]

    def summary(self) -> dict:
        return {"replayed_examples": getattr(self, "replayed", 0)}

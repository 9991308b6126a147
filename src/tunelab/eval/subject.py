"""The model under evaluation and its base, behind one interface: generate answers, score reference answers.

The base of an adapter run is the same model with the adapter switched off (no second copy). A full or
freeze run read from disk has no adapter to switch off, so its starting model is loaded beside it.
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

from tunelab.errors import TunelabError
from tunelab.eval.firmness import answer_gap
from tunelab.eval.perplexity import answer_nll
from tunelab.runs.loading import LoadedModel
from tunelab.serve import ChatEngine, GenerationSettings


class Subject:
    def __init__(self, loaded: LoadedModel, device: str):
        self.loaded, self.device = loaded, device
        self.engine = ChatEngine(loaded, device)
        self._separate_base: Subject | None = None

    @property
    def tokenizer(self):
        return self.engine.tokenizer

    def generate(self, prompts: list[list[dict]], settings: GenerationSettings) -> list[str]:
        return self.engine.generate(prompts, settings)

    def nll(self, batch) -> list[tuple[float, int]]:
        return answer_nll(self.engine.model, batch, self.device)

    def answer_gap(self, messages: list[dict], answer: str, accepted: list[str]) -> float | None:
        """How firmly this model gives `answer` (tunelab.eval.firmness)."""
        return answer_gap(self.engine, messages, answer, accepted)

    @contextmanager
    def as_base(self) -> Iterator["Subject"]:
        """This subject answering as its base model."""
        if self.loaded.method is not None:
            with self.engine.base_model():
                yield self
            return
        yield self.separate_base()

    def separate_base(self) -> "Subject":
        """The starting model of a whole-model run, loaded beside it on first use."""
        if self.loaded.run is None:
            raise TunelabError("--compare-base: --model is not a run directory, so there is no base to compare with")
        if self._separate_base is None:
            from tunelab.runs import load_any

            config = self.loaded.run.config.model
            self._separate_base = Subject(load_any(config.path, self.loaded.dtype, model_cfg=config), self.device)
        return self._separate_base

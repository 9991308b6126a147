"""The `continual:` section applied to one run: the chosen methods, built from the registry, change the
examples (replay), add loss terms (ewc, l2sp, kl) or callbacks (nullspace) to the trainer, and save what a later
task reuses."""
from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path

from tunelab.continual.base import PENALTIES, ContinualMethod, LossTerm, Setting
from tunelab.continual.reference import reference_examples, tokenized


@dataclass
class Continual:
    config: object                                   # ContinualConfig
    methods: list[ContinualMethod] = field(default_factory=list)
    setting: Setting | None = None
    task_examples: list[dict] = field(default_factory=list)  # this task's own data (before replay)

    @classmethod
    def of(cls, run_config) -> "Continual | None":
        section = run_config.continual
        if section is None:
            return None
        return cls(section, [PENALTIES[name](weight, section) for name, weight in section.entries()])

    def examples(self, examples: list[dict], seed: int) -> list[dict]:
        self.task_examples = examples
        for method in self.methods:
            if type(method).examples is not ContinualMethod.examples:
                examples = method.examples(examples, reference_examples(self.config), seed)
        return examples

    def loss_terms(self, run_config, model, tokenizer, method, output_dir: Path, autocast=nullcontext,
                   compute_dtype: str = "float32") -> list[LossTerm]:
        rows: list[dict] = []

        def reference() -> list[dict]:
            if not rows:
                count = max(self.config.fisher_samples, 256)
                rows.extend(tokenized(reference_examples(self.config), tokenizer, run_config.train.max_length, count,
                                      run_config.train.seed))
            return rows

        self.setting = Setting(run_config, model, tokenizer, method, reference, Path(output_dir), autocast,
                               compute_dtype)
        terms = [m.loss_term(self.setting) for m in self.methods]
        return [term for term in terms if term is not None]

    def callbacks(self) -> list:
        """The methods' Trainer callbacks (after `loss_terms`, which builds the setting they read)."""
        found = [m.callback(self.setting) for m in self.methods] if self.setting is not None else []
        return [callback for callback in found if callback is not None]

    def finish(self) -> None:
        """After training: methods save what the next task needs (EWC adds this task's Fisher)."""
        if self.setting is None:
            return
        own = [e for e in self.task_examples if "messages" in e or "text" in e]
        train = self.setting.config.train
        rows = tokenized(own, self.setting.tokenizer, train.max_length, self.config.fisher_samples, train.seed) \
            if own else []
        for method in self.methods:
            method.finish(self.setting, rows)

    def summary(self) -> dict:
        found = {"methods": [{"method": m.name, "weight": m.weight} for m in self.methods]}
        for method in self.methods:
            found.update(method.summary())
        return {"continual": found}

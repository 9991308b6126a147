"""What every training stage provides: which data it takes, how it tokenizes, what loss it trains.

Stages differ in data and loss, never in the training loop: all build on the Hugging Face Trainer
(resume, mixed precision, accumulation, schedulers, early stopping, logging integrations).
"""
from __future__ import annotations

import logging

from tqdm.auto import tqdm
from transformers import DataCollatorForSeq2Seq

from tunelab.config.run import RunConfig
from tunelab.data.packing import PackedCollator, piece_tokens
from tunelab.data.tokenize import IGNORE, TokenizeStats
from tunelab.errors import TunelabError
from tunelab.registry import Registry
from tunelab.specs.base import StageSpec, adopt
from tunelab.specs.stages import STAGE_SPECS
from tunelab.training.arguments import training_arguments
from tunelab.training.hooks import method_hooks
from tunelab.training.trainer import TunelabTrainer

STAGES: Registry["Stage"] = Registry("stage", STAGE_SPECS)
register = STAGES.register
log = logging.getLogger("tunelab")


class Stage:
    """Its name, description, options (the train.* keys it reads beyond the common ones), the data it takes
    (`example_kind`, `wants`) and capabilities come from its spec (tunelab.specs.stages) when it registers."""
    trainer_class = TunelabTrainer
    compute_metrics = None      # or a function: EvalPrediction -> {name: value}

    def __init__(self, config: RunConfig):
        self.config = config

    def check_examples(self, examples: list[dict]) -> None:
        for example in examples:
            if self.example_kind not in example:
                raise TunelabError(
                    f"{example.get('source', self.config.data.label)}: train.stage {self.name!r} needs {self.wants} "
                    f"(a {self.example_kind!r} record), got {sorted(k for k in example if k != 'source')}"
                )

    def tokenize(self, examples: list[dict], tokenizer) -> tuple[list[dict], TokenizeStats]:
        stats, rows = TokenizeStats(), []
        for example in tqdm(examples, desc="tokenize", unit="ex", leave=False, mininterval=1.0):
            if not self.skips(example, stats):
                rows.extend(self.tokenize_example(example, tokenizer, stats))
        if stats.empty:
            log.info("data: skipped %d of %d examples with an empty assistant answer (first: %s)", stats.empty,
                     len(examples), stats.empty_sources[0])
        if examples and not rows:
            raise self.nothing_to_train(examples, stats)
        return rows, stats

    def skips(self, example: dict, stats: TokenizeStats) -> bool:
        """Whether `example` stays out of training (counted in `stats`); in memory and when streaming alike."""
        return False

    def nothing_to_train(self, examples: list[dict], stats: TokenizeStats) -> TunelabError:
        """The error when tokenizing left no row at all, naming the reason: empty answers or train.max_length."""
        path, max_length = self.config.data.label, self.config.train.max_length
        left = len(examples) - stats.empty
        if left == 0:
            return TunelabError(f"{path}: all {stats.empty} examples have an empty assistant answer (first: "
                                f"{stats.empty_sources[0]}); nothing to train (expected answer text)")
        first = (stats.dropped_sources or [examples[0].get("source", "?")])[0]
        if stats.truncated == left:
            return TunelabError(
                f"{path}: all {left} examples are longer than train.max_length ({max_length} tokens) and none has "
                f"a token left to train after the cut (first: {first}); raise train.max_length or shorten the "
                "prompts (expected at least one example whose first answer fits)"
            )
        return TunelabError(f"{path}: none of the {left} examples has a token to train ({stats.truncated} longer "
                            f"than train.max_length {max_length}; first: {first})")

    def tokenize_example(self, example: dict, tokenizer, stats: TokenizeStats) -> list[dict]:
        """Zero or more training rows (input_ids, attention_mask, labels) for one example."""
        raise NotImplementedError

    def model_kwargs(self) -> dict:
        """Extra from_pretrained arguments (the classify stage's num_labels and label names)."""
        return {}

    def train(self, trainer, checkpoint=None):
        """Run training, from `checkpoint` (a complete checkpoint-N folder) when resuming; a TrainOutput
        (global_step, training_loss, metrics)."""
        return trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None)

    def trained_model(self, trainer):
        """The model whose weights the method saves (PPO's trainer also holds a value model)."""
        return trainer.model

    def summary(self, trainer) -> dict:
        """Stage-specific numbers for summary.json (TRL's reward margins, ...)."""
        return {}

    def save(self, out_dir) -> None:
        """Files the stage keeps beside the weights (e.g. the label names)."""

    def load_saved(self, weights_dir) -> None:
        """Read back what `save` wrote (before the model is loaded)."""

    def pack(self, rows: list[dict]) -> list[dict]:
        """Rows as the sampler will see them when packing is on (one row per example by default)."""
        return rows

    def build_trainer(self, model, tokenizer, method, train_rows, val_rows, callbacks, output_dir, packing: bool):
        """The ready Trainer: tunelab's own (packing, fused loss, the method's hooks) unless a stage needs TRL's."""
        return self.trainer_class(
            model=model,
            args=training_arguments(self.config, output_dir, has_eval=bool(val_rows), packing=packing),
            train_dataset=train_rows,
            eval_dataset=val_rows or None,
            data_collator=self.collator(tokenizer, packing),
            processing_class=tokenizer,
            callbacks=callbacks,
            packed=packing,
            row_tokens=piece_tokens(self.config.train), max_length=self.config.train.max_length,
            fused_loss=method.fused_loss,
            frozen_in_compute_dtype=method.frozen_in_compute_dtype,
            compute_metrics=self.compute_metrics,
            **method_hooks(method, model),
        )

    def collator(self, tokenizer, packing: bool):
        if packing:
            return PackedCollator()
        # Pads labels with IGNORE by position, so a pad id equal to EOS never masks a real EOS.
        return DataCollatorForSeq2Seq(tokenizer, padding=True, label_pad_token_id=IGNORE, return_tensors="pt")


adopt(Stage, StageSpec("base", ""))  # the defaults, for subclasses that are not registered (tests)


def get_stage(config: RunConfig) -> Stage:
    return STAGES[config.train.stage](config)


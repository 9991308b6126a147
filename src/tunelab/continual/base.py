"""What a continual-learning method is: a named strength, and either a loss term (EWC, L2-SP, KL) that the
stage's trainer adds to its loss through the same list as the methods' own terms, a change to the training
examples (replay), or a callback acting on the trained weights (nullspace). Everything a method needs arrives in
one `Setting`."""
from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from tunelab.registry import Registry
from tunelab.specs.base import PenaltySpec, adopt
from tunelab.specs.continual import PENALTY_SPECS

PENALTIES: Registry = Registry("continual method", PENALTY_SPECS)
register = PENALTIES.register


@dataclass
class Setting:
    """The run as a continual method sees it."""
    config: object              # RunConfig
    model: nn.Module            # with the adaptation method applied
    tokenizer: object
    method: object              # tunelab.methods.Method (its `disable` gives the base model)
    reference: Callable[[], list[dict]]  # the old data's tokenized rows (loaded once, on first call)
    output_dir: Path
    autocast: Callable = nullcontext  # the trainer's mixed-precision context (forwards outside the trainer's own)
    compute_dtype: str = "float32"    # what that context computes in


class LossTerm:
    """`(model, inputs, outputs) -> tensor` added to the loss; `name` labels its value in metrics.jsonl. A term
    computed on a batch of its own can say `joins_forward`: the trainer then appends its `rows_to_join(share)` to
    a packed task batch and gives their hidden states to `hand_over` before calling it."""
    name = "term"
    joins_forward = False

    def __call__(self, model: nn.Module, inputs: dict, outputs) -> torch.Tensor:
        raise NotImplementedError


class ContinualMethod:
    """Its name, description, default weight and capabilities come from its spec (tunelab.specs.continual)."""

    def __init__(self, weight: float | None, config):
        self.weight = self.default_weight if weight is None else weight
        self.config = config    # ContinualConfig

    def loss_term(self, setting: Setting) -> LossTerm | None:
        return None

    def callback(self, setting: Setting):
        """A TrainerCallback the method acts through during training (nullspace projects after each step)."""
        return None

    def examples(self, examples: list[dict], reference: list[dict], seed: int) -> list[dict]:
        """The training examples with this method's changes (replay mixes reference examples in)."""
        return examples

    def finish(self, setting: Setting, task_rows: list[dict]) -> None:
        """After training, with this task's tokenized rows: save what a later task reuses (the EWC Fisher)."""

    def summary(self) -> dict:
        return {}


adopt(ContinualMethod, PenaltySpec("base", ""))  # the defaults


def trainable(model: nn.Module) -> dict[str, torch.Tensor]:
    return {name: p for name, p in model.named_parameters() if p.requires_grad}


def anchor(model: nn.Module) -> dict[str, torch.Tensor]:
    """The trainable parameters' values now (at the start of training): with LoRA the zero update, with
    full/freeze the starting weights (reusing the copy those methods keep for `disable`)."""
    from tunelab.methods.switches import ORIGINALS

    kept = getattr(model, ORIGINALS, None) or {}
    return {name: (kept[name] if name in kept else p.detach().clone()) for name, p in trainable(model).items()}

"""What every adaptation method provides. Methods decide which parameters train and how;
stages decide the loss. Each method module registers one subclass in `METHODS`."""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from tunelab.config.method import MethodConfig
from tunelab.registry import Registry

METHODS: Registry["Method"] = Registry("method")
register = METHODS.register


class Method:
    name = "base"
    description = ""
    options: tuple[str, ...] = ()   # the method.* keys it reads
    shared_options: tuple[str, ...] = ()  # keys a whole family reads (listed after `options`)
    is_adapter = True        # saves only adapter weights next to a reference to the base
    mergeable = True         # can be folded into the base weights
    supports_packing = True  # lives inside the decoder's modules, so examples can share packed rows
    starts_as_base = True    # at step 0 the model computes exactly what the base does
    fused_loss = True        # the Trainer may run the decoder itself and compute the loss (skipping model.forward)
    works_with_trl = True    # a TRL trainer (own loss, reference adapter) can train it
    adds_loss_terms = False  # loss_terms() returns something: needs a stage whose loss tunelab can extend
    trains_task_heads = True  # trains (and saves) a new head a stage adds, e.g. a classifier's score layer
    extra_positions = 0      # positions it adds in front of every example (virtual tokens)
    # its frozen Linear weights enter only matmuls, so a bf16 run may store them in bf16 while it trains
    # (tunelab.training.frozen); False where the method reads a base weight outside a matmul
    frozen_in_compute_dtype = True
    # can train the embedding rows of tokens added for a chat template (tunelab.models.tokens); the ids are in
    # `added_tokens` before `apply`
    trains_added_tokens = False

    def __init__(self, config: MethodConfig):
        self.config = config
        self.added_tokens: list[int] = []

    lr_scale = None          # or a function: parameter name -> learning-rate multiplier
    saves_checkpoints = False  # checkpoints need the method's own save (the Trainer's would be wrong)
    unused_parameters = False  # some trainable tensors may get no gradient in a step (DDP must then look for them)
    checkpoint_resumes = True  # its checkpoint files restart training exactly (else they also keep the raw tensors)

    @classmethod
    def all_options(cls) -> tuple[str, ...]:
        return cls.options + tuple(key for key in cls.shared_options if key not in cls.options)

    def load_base(self, resolved, model_config, dtype=None, precision: str | None = None, **load_kwargs) -> nn.Module:
        """The base model as this method needs it (QLoRA loads it quantized and computes in `precision`).
        `load_kwargs`: the stage's head and its arguments (see tunelab.models.load_model)."""
        from tunelab.models import load_model

        return load_model(resolved, model_config, dtype or torch.float32, **load_kwargs)

    def apply(self, model: nn.Module) -> nn.Module:
        raise NotImplementedError

    def loss_terms(self, model: nn.Module) -> list:
        """Extra `(model, inputs, outputs) -> tensor` terms added to the stage's loss (MoE balance, ...)."""
        return []

    def summary(self, model: nn.Module) -> dict:
        """Method-specific facts for summary.json after training (e.g. MoE routing counts)."""
        return {}

    def callbacks(self, model: nn.Module) -> list:
        """Trainer callbacks the method needs during training (AdaLoRA's rank allocation, ...)."""
        return []

    def save(self, model: nn.Module, out_dir: Path) -> None:
        model.save_pretrained(out_dir)

    def load(self, base: nn.Module, weights_dir: Path, trainable: bool = False) -> nn.Module:
        raise NotImplementedError

    def merge(self, model: nn.Module) -> nn.Module:
        raise NotImplementedError

    def disable(self, model: nn.Module):
        """A context in which `model` behaves as its base (no second copy in memory)."""
        raise NotImplementedError


def task_heads(model: nn.Module) -> list[str]:
    """Names of the freshly initialised heads of a sequence classifier (`score` or `classifier`): they
    must train, and be saved, with any method."""
    inner = model.get_base_model() if hasattr(model, "get_base_model") else model
    if not type(inner).__name__.endswith("ForSequenceClassification"):
        return []
    return [name for name in ("score", "classifier") if isinstance(getattr(inner, name, None), nn.Module)]


def get_method(config: MethodConfig) -> Method:
    return METHODS[config.name](config)


def count_parameters(model: nn.Module) -> tuple[int, int]:
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    return trainable, total

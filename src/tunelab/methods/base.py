"""What every adaptation method provides. Methods decide which parameters train and how;
stages decide the loss. Each method module registers one subclass in `METHODS`."""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from tunelab.config.method import MethodConfig
from tunelab.registry import Registry
from tunelab.specs.base import MethodSpec, adopt
from tunelab.specs.methods import METHOD_SPECS

METHODS: Registry["Method"] = Registry("method", METHOD_SPECS)
register = METHODS.register


class Method:
    """Its name, description, options (the method.* keys it reads) and capabilities come from its spec
    (tunelab.specs.methods) when it registers; a method trains the embedding rows of tokens added for a chat
    template (`trains_added_tokens`) from the ids in `added_tokens`, set before `apply`."""
    extra_positions = 0      # positions it adds in front of every example (virtual tokens)

    def __init__(self, config: MethodConfig):
        self.config = config
        self.added_tokens: list[int] = []

    lr_scale = None          # or a function: parameter name -> learning-rate multiplier

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


adopt(Method, MethodSpec("base", ""))  # the defaults, for subclasses that are not registered (tests)


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

"""What every adaptation method provides. Methods decide which parameters train and how;
stages decide the loss. Each method module registers one subclass in `METHODS`."""
from __future__ import annotations

from pathlib import Path

from torch import nn

from tunelab.config.method import MethodConfig
from tunelab.registry import Registry

METHODS: Registry["Method"] = Registry("method")
register = METHODS.register


class Method:
    name = "base"
    description = ""
    options: tuple[str, ...] = ()   # the method.* keys it reads
    is_adapter = True        # saves only adapter weights next to a reference to the base
    mergeable = True         # can be folded into the base weights
    supports_packing = True  # lives inside the decoder's modules: packed rows and the fused loss apply
    starts_as_base = True    # at step 0 the model computes exactly what the base does

    def __init__(self, config: MethodConfig):
        self.config = config

    lr_scale = None          # or a function: parameter name -> learning-rate multiplier
    saves_checkpoints = False  # checkpoints need the method's own save (the Trainer's would be wrong)

    def apply(self, model: nn.Module) -> nn.Module:
        raise NotImplementedError

    def save(self, model: nn.Module, out_dir: Path) -> None:
        model.save_pretrained(out_dir)

    def load(self, base: nn.Module, weights_dir: Path, trainable: bool = False) -> nn.Module:
        raise NotImplementedError

    def merge(self, model: nn.Module) -> nn.Module:
        raise NotImplementedError

    def disable(self, model: nn.Module):
        """A context in which `model` behaves as its base (no second copy in memory)."""
        raise NotImplementedError


def get_method(config: MethodConfig) -> Method:
    return METHODS[config.name](config)


def count_parameters(model: nn.Module) -> tuple[int, int]:
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    return trainable, total

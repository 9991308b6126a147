"""Methods that train the model's own weights: all of them (`full`) or the last blocks (`freeze`).
Both save a whole model directory (safetensors), which loads in plain transformers."""
from __future__ import annotations

from pathlib import Path

from torch import nn

from tunelab.errors import TunelabError
from tunelab.methods.base import Method, register


class OwnWeightsMethod(Method):
    is_adapter = False

    def load(self, base: nn.Module, weights_dir: Path, trainable: bool = False) -> nn.Module:
        raise TunelabError(f"{weights_dir}: a {self.name} run holds a whole model; load it as a model directory")

    def merge(self, model: nn.Module) -> nn.Module:
        return model  # nothing to fold: the weights are the model's own

    def disable(self, model: nn.Module):
        raise TunelabError(f"method {self.name}: the base model is not kept beside the trained weights; "
                           "load the base model itself")


@register("full")
class FullMethod(OwnWeightsMethod):
    description = "full fine-tuning: every parameter trains"

    def apply(self, model: nn.Module) -> nn.Module:
        for parameter in model.parameters():
            parameter.requires_grad_(True)
        return model


def decoder_blocks(model: nn.Module) -> nn.ModuleList:
    """The stack of transformer blocks: the first ModuleList as long as the config's layer count."""
    count = getattr(model.config, "num_hidden_layers", None)
    for module in model.modules():
        if isinstance(module, nn.ModuleList) and len(module) == count:
            return module
    raise TunelabError(f"method freeze: cannot find the {count} transformer blocks of {type(model).__name__}")


@register("freeze")
class FreezeMethod(OwnWeightsMethod):
    description = "freeze tuning: only the last method.trainable_layers blocks (and method.trainable_modules) train"
    options = ("trainable_layers", "trainable_modules")

    def apply(self, model: nn.Module) -> nn.Module:
        blocks = decoder_blocks(model)
        layers = self.config.trainable_layers
        if layers > len(blocks):
            raise TunelabError(f"method.trainable_layers: {layers} is more than the model's {len(blocks)} blocks")
        model.requires_grad_(False)
        for block in blocks[len(blocks) - layers:]:
            block.requires_grad_(True)
        self._unfreeze_named(model)
        return model

    def _unfreeze_named(self, model: nn.Module) -> None:
        for wanted in self.config.trainable_modules:
            matched = [p for name, p in model.named_parameters() if wanted in name.split(".")]
            if not matched:
                raise TunelabError(f"method.trainable_modules: no module named {wanted!r} in the model")
            for parameter in matched:
                parameter.requires_grad_(True)

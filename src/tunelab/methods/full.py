"""Methods that train the model's own weights: all of them (`full`) or the last blocks (`freeze`).
Both save a whole model directory (safetensors), which loads in plain transformers.

To offer the base model (evaluation, KL-to-base, PPO's reference) they keep a copy of the starting
values of the parameters that train, and only those: the last blocks for `freeze`, everything for
`full` (the price of full fine-tuning; the frozen rest is shared).
"""
from __future__ import annotations

from pathlib import Path

from torch import nn

from tunelab.errors import TunelabError
from tunelab.methods.base import Method, register, task_heads
from tunelab.methods.switches import keep_starting_values, starting_values


class OwnWeightsMethod(Method):
    def load(self, base: nn.Module, weights_dir: Path, trainable: bool = False) -> nn.Module:
        raise TunelabError(f"{weights_dir}: a {self.name} run holds a whole model; load it as a model directory")

    def merge(self, model: nn.Module) -> nn.Module:
        return model  # nothing to fold: the weights are the model's own

    def disable(self, model: nn.Module):
        return starting_values(model, self.name)


@register("full")
class FullMethod(OwnWeightsMethod):
    def apply(self, model: nn.Module) -> nn.Module:
        for parameter in model.parameters():
            parameter.requires_grad_(True)
        return keep_starting_values(model)


def decoder_blocks(model: nn.Module, method: str = "freeze") -> nn.ModuleList:
    """The stack of transformer blocks: the first ModuleList as long as the config's layer count."""
    count = getattr(model.config, "num_hidden_layers", None)
    for module in model.modules():
        if isinstance(module, nn.ModuleList) and len(module) == count:
            return module
    raise TunelabError(f"method {method}: cannot find the {count} transformer blocks of {type(model).__name__}")


@register("freeze")
class FreezeMethod(OwnWeightsMethod):
    def apply(self, model: nn.Module) -> nn.Module:
        blocks = decoder_blocks(model)
        layers = self.config.trainable_layers
        if layers > len(blocks):
            raise TunelabError(f"method.trainable_layers: {layers} is more than the model's {len(blocks)} blocks")
        model.requires_grad_(False)
        for block in blocks[len(blocks) - layers:]:
            block.requires_grad_(True)
        self._unfreeze_named(model)
        if self.added_tokens:  # tokens added for the chat template: the embedding (and lm_head) train whole
            model.get_input_embeddings().requires_grad_(True)
            if model.get_output_embeddings() is not None:
                model.get_output_embeddings().requires_grad_(True)
        for head in task_heads(model):  # a classifier's new head always trains
            getattr(model, head).requires_grad_(True)
        return keep_starting_values(model)

    def _unfreeze_named(self, model: nn.Module) -> None:
        """method.trainable_modules (and modules_to_save, the same thing for this method) train in full."""
        for key in ("trainable_modules", "modules_to_save"):
            for wanted in getattr(self.config, key):
                matched = [p for name, p in model.named_parameters() if wanted in name.split(".")]
                if not matched:
                    raise TunelabError(f"method.{key}: no module named {wanted!r} in the model")
                for parameter in matched:
                    parameter.requires_grad_(True)

"""What every peft-backed method shares: wrap, load, merge and switch off through peft itself.
A method module only says which peft config it builds."""
from __future__ import annotations

from pathlib import Path

from torch import nn

from tunelab.errors import TunelabError
from tunelab.methods.base import Method


class PeftMethod(Method):
    def peft_config(self):
        raise NotImplementedError

    def apply(self, model: nn.Module) -> nn.Module:
        from peft import get_peft_model

        try:
            return get_peft_model(model, self.peft_config())
        except (TypeError, ValueError) as exc:  # e.g. a layer type the method does not support
            raise TunelabError(f"method.name {self.name!r}: peft cannot apply it to this model ({exc})") from None

    def load(self, base: nn.Module, weights_dir: Path, trainable: bool = False) -> nn.Module:
        from peft import PeftModel

        return PeftModel.from_pretrained(base, str(weights_dir), is_trainable=trainable)

    def merge(self, model: nn.Module) -> nn.Module:
        return model.merge_and_unload()

    def disable(self, model: nn.Module):
        return model.disable_adapter()

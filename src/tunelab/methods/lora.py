"""LoRA through peft: low-rank updates on the chosen linear layers of a frozen base."""
from __future__ import annotations

from pathlib import Path

from torch import nn

from tunelab.methods.base import Method, register


@register("lora")
class LoraMethod(Method):
    def peft_config(self):
        from peft import LoraConfig, TaskType

        cfg = self.config
        return LoraConfig(
            task_type=TaskType.CAUSAL_LM,
            r=cfg.r,
            lora_alpha=cfg.alpha,
            lora_dropout=cfg.dropout,
            target_modules=cfg.target_modules,
        )

    def apply(self, model: nn.Module) -> nn.Module:
        from peft import get_peft_model

        return get_peft_model(model, self.peft_config())

    def load(self, base: nn.Module, weights_dir: Path, trainable: bool = False) -> nn.Module:
        from peft import PeftModel

        return PeftModel.from_pretrained(base, str(weights_dir), is_trainable=trainable)

    def merge(self, model: nn.Module) -> nn.Module:
        return model.merge_and_unload()

    def disable(self, model: nn.Module):
        return model.disable_adapter()

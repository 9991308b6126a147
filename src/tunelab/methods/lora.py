"""The LoRA family through peft: low-rank updates on the chosen linear layers of a frozen base."""
from __future__ import annotations

from tunelab.methods.base import register
from tunelab.methods.peft_base import PeftMethod


@register("lora")
class LoraMethod(PeftMethod):
    description = "LoRA: low-rank update B·A added to each targeted linear layer"
    lora_options: dict = {}
    options = ("r", "alpha", "dropout", "target_modules")

    def peft_config(self):
        from peft import LoraConfig, TaskType

        cfg = self.config
        return LoraConfig(
            task_type=TaskType.CAUSAL_LM, r=cfg.r, lora_alpha=cfg.alpha, lora_dropout=cfg.dropout,
            target_modules=cfg.target_modules, **self.lora_options,
        )


@register("dora")
class DoraMethod(LoraMethod):
    description = "DoRA: LoRA on the direction, a learned magnitude per output (weight-decomposed)"
    lora_options = {"use_dora": True}


@register("rslora")
class RsLoraMethod(LoraMethod):
    description = "rsLoRA: LoRA scaled by alpha/sqrt(r), stable at high rank"
    lora_options = {"use_rslora": True}


@register("loraplus")
class LoraPlusMethod(LoraMethod):
    description = "LoRA+: LoRA whose B matrices learn method.loraplus_ratio times faster"
    options = ("r", "alpha", "dropout", "target_modules", "loraplus_ratio")

    def lr_scale(self, name: str) -> float:
        return self.config.loraplus_ratio if ".lora_B." in name else 1.0

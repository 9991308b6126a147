"""Other peft methods that live inside the targeted linear layers (so packing and the fused loss apply)."""
from __future__ import annotations

from tunelab.methods.base import register
from tunelab.methods.peft_base import PeftMethod


# MLP output projections across model families (IA3 rescales their input rather than their output).
FEEDFORWARD_OUTPUTS = ("down_proj", "fc2", "c_proj", "dense_4h_to_h", "w2")


@register("ia3")
class Ia3Method(PeftMethod):
    def peft_config(self):
        from peft import IA3Config, TaskType

        targets = self.config.target_modules
        if targets == "all-linear":  # peft's per-architecture IA3 recipe (keys, values, MLP output)
            return IA3Config(task_type=TaskType.CAUSAL_LM)
        feedforward = [name for name in targets if name in FEEDFORWARD_OUTPUTS]  # scaled on their input
        return IA3Config(task_type=TaskType.CAUSAL_LM, target_modules=targets, feedforward_modules=feedforward)


@register("vera")
class VeraMethod(PeftMethod):
    def peft_config(self):
        from peft import TaskType, VeraConfig

        cfg = self.config
        return VeraConfig(task_type=TaskType.CAUSAL_LM, r=cfg.r, vera_dropout=cfg.dropout,
                          target_modules=cfg.target_modules)


class LycorisMethod(PeftMethod):
    """LoHa and LoKr take the same keys; only the peft config class differs."""

    peft_config_class = ""

    def peft_config(self):
        import peft

        cfg = self.config
        return getattr(peft, self.peft_config_class)(
            task_type=peft.TaskType.CAUSAL_LM, r=cfg.r, alpha=cfg.alpha, module_dropout=cfg.dropout,
            target_modules=cfg.target_modules,
        )


@register("loha")
class LohaMethod(LycorisMethod):
    peft_config_class = "LoHaConfig"


@register("lokr")
class LokrMethod(LycorisMethod):
    peft_config_class = "LoKrConfig"

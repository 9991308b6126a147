"""The LoRA family through peft: low-rank updates on the chosen linear layers of a frozen base."""
from __future__ import annotations

from pathlib import Path

from torch import nn

from tunelab.methods.base import register
from tunelab.methods.peft_base import PeftMethod


@register("lora")
class LoraMethod(PeftMethod):
    lora_options: dict = {}

    def peft_config(self):
        from peft import LoraConfig, TaskType

        cfg = self.config
        return LoraConfig(
            task_type=TaskType.CAUSAL_LM, r=cfg.r, lora_alpha=cfg.alpha, lora_dropout=cfg.dropout,
            target_modules=cfg.target_modules, **self.lora_options,
        )


@register("dora")
class DoraMethod(LoraMethod):
    lora_options = {"use_dora": True}


@register("rslora")
class RsLoraMethod(LoraMethod):
    lora_options = {"use_rslora": True}


@register("loraplus")
class LoraPlusMethod(LoraMethod):
    def lr_scale(self, name: str) -> float:
        return self.config.loraplus_ratio if ".lora_B." in name else 1.0


@register("pissa")
class PissaMethod(LoraMethod):
    """PiSSA starts A and B from the principal singular vectors and subtracts them from the base
    weights. Saved as-is, the adapter would need that modified base; so the initial adapter is kept
    and the saved one is converted to a plain LoRA against the original base (peft does the maths)."""

    lora_options = {"init_lora_weights": "pissa"}

    def apply(self, model: nn.Module) -> nn.Module:
        import shutil
        import tempfile
        import weakref

        model = super().apply(model)
        initial = tempfile.mkdtemp(prefix="tunelab-pissa-init-")
        model.peft_config["default"].init_lora_weights = True  # reloading the initial copy must not redo SVD
        model.save_pretrained(initial)
        model.peft_config["default"].init_lora_weights = "pissa"
        model._tunelab_pissa_initial = initial
        weakref.finalize(model, shutil.rmtree, initial, ignore_errors=True)  # also runs at interpreter exit
        return model

    def save(self, model: nn.Module, out_dir: Path) -> None:
        initial = getattr(model, "_tunelab_pissa_initial", None)
        if initial is None:  # a reloaded, already converted adapter
            return super().save(model, out_dir)
        model.save_pretrained(str(out_dir), path_initial_model_for_weight_conversion=initial)

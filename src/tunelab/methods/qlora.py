"""QLoRA: LoRA on a frozen base that bitsandbytes holds in 4-bit NF4 with double quantization (or 8-bit).

The base is quantized while loading (transformers' bitsandbytes integration), on CPU and CUDA alike;
only the adapter is ever written. Merging dequantizes the base and adds the LoRA update in full
precision, so the merged model computes what was trained, and is a plain model without bitsandbytes.
"""
from __future__ import annotations

import importlib.util

import torch
from torch import nn

from tunelab.errors import TunelabError
from tunelab.methods.base import register
from tunelab.methods.lora import LoraMethod
from tunelab.models.device import DTYPES, detect_device


def quantization_config(bits: int, compute_dtype: torch.dtype):
    from transformers import BitsAndBytesConfig

    if bits == 8:
        return BitsAndBytesConfig(load_in_8bit=True)
    return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                              bnb_4bit_compute_dtype=compute_dtype, bnb_4bit_quant_storage=torch.uint8)


def is_quantized(model: nn.Module) -> bool:
    inner = model.get_base_model() if hasattr(model, "get_base_model") else model
    return bool(getattr(inner, "is_loaded_in_4bit", False) or getattr(inner, "is_loaded_in_8bit", False))


@register("qlora")
class QLoraMethod(LoraMethod):
    description = "QLoRA: LoRA on a base quantized by bitsandbytes (4-bit NF4 + double quant, or 8-bit)"
    options = ("r", "alpha", "dropout", "target_modules", "bits")

    def load_base(self, resolved, model_config, dtype=None, precision: str | None = None, **load_kwargs) -> nn.Module:
        from tunelab.models import load_model

        if importlib.util.find_spec("bitsandbytes") is None:
            raise TunelabError("method.name 'qlora' needs the package bitsandbytes (pip install bitsandbytes)")
        dtype = dtype or torch.float32
        compute = DTYPES.get(precision or "", dtype)  # the training precision: bf16 matmuls where supported
        return load_model(resolved, model_config, dtype, quantization_config=quantization_config(
            self.config.bits, compute), device_map={"": detect_device()}, **load_kwargs)

    def apply(self, model: nn.Module) -> nn.Module:
        from peft import prepare_model_for_kbit_training

        if not is_quantized(model):  # never train plain LoRA while the user believes it is QLoRA
            raise TunelabError("method qlora: the base model is not quantized; QLoRA starts from a base model "
                               "(to continue from another method's run, merge and save it first)")
        # Norms and embeddings to fp32 for stable training, inputs require grad for the frozen embedding.
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
        return super().apply(model)

    def merge(self, model: nn.Module) -> nn.Module:
        """A plain full-precision model: dequantized base + the LoRA update, added in float."""
        from peft.tuners.lora import LoraLayer

        deltas = {name: module.get_delta_weight("default").detach().float()
                  for name, module in model.get_base_model().named_modules()
                  if isinstance(module, LoraLayer) and "default" in module.lora_A}
        inner = model.unload()
        inner = inner.dequantize(dtype=torch.float32)
        layers = dict(inner.named_modules())
        with torch.no_grad():
            for name, delta in deltas.items():
                weight = layers[name].weight
                weight.add_(delta.to(weight.device, weight.dtype))
        return inner

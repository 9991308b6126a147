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
from tunelab.models.device import CPU_BF16_SWITCH, DTYPES, cpu_has_bf16, detect_device

# bitsandbytes 0.50's packed CPU layout for 4-bit weights (Linear4bit.forward -> _convert_weight_packed_for_cpu)
# groups output rows in blocks of 32 and reshapes the scales to [out, in / blocksize].
PACKED_BLOCK_ROWS = 32


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
    def load_base(self, resolved, model_config, dtype=None, precision: str | None = None, **load_kwargs) -> nn.Module:
        from tunelab.models import load_model

        if importlib.util.find_spec("bitsandbytes") is None:
            raise TunelabError("method.name 'qlora' needs the package bitsandbytes (pip install bitsandbytes)")
        dtype = dtype or torch.float32
        compute = DTYPES.get(precision or "", dtype)  # the training precision: bf16 matmuls where supported
        model = load_model(resolved, model_config, dtype, quantization_config=quantization_config(
            self.config.bits, compute), device_map={"": detect_device()}, **load_kwargs)
        use_packed_cpu_kernel(model, False)
        return model

    def load(self, base: nn.Module, weights_dir, trainable: bool = False) -> nn.Module:
        if not trainable:  # inference only: bitsandbytes' faster CPU kernel where the model computes in bf16
            use_packed_cpu_kernel(base, True)
        return super().load(base, weights_dir, trainable)

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
        unpack_cpu_layout(model)
        inner = model.unload()
        inner = inner.dequantize(dtype=torch.float32)
        layers = dict(inner.named_modules())
        with torch.no_grad():
            for name, delta in deltas.items():
                weight = layers[name].weight
                weight.add_(delta.to(weight.device, weight.dtype))
        return inner


def use_packed_cpu_kernel(model: nn.Module, wanted: bool) -> None:
    """Choose, per 4-bit layer, whether bitsandbytes may switch it to its packed CPU layout.

    bitsandbytes 0.50 does that by itself the first time a Linear4bit runs outside training on a CPU with
    avx512_bf16 (`support_avx512bf16_for_cpu`). That kernel computes in bf16 whatever the compute dtype
    and has no backward, and after the switch the layer keeps the layout, training included. So we allow
    it only for inference (never in a training run, whose evaluation loop would switch it) of a model that
    computes in bf16 anyway, on a CPU where TUNELAB_CPU_BF16 leaves native bf16 on; a layer too narrow
    for the layout is an error here, before any work, instead of a reshape error in the middle of it."""
    layers = _four_bit_layers(model)
    for _, layer in layers:
        on_cpu = layer.weight.device.type == "cpu"
        layer.support_avx512bf16_for_cpu = bool(
            wanted and on_cpu and cpu_has_bf16() and _has_native_kernel() and layer.compute_dtype == torch.bfloat16)
    narrow = [(name, layer) for name, layer in layers if layer.support_avx512bf16_for_cpu and not _packable(layer)]
    if narrow:
        raise TunelabError(_narrow_message(narrow))


def unpack_cpu_layout(model: nn.Module) -> None:
    """Back to bitsandbytes' standard 4-bit layout, from the packed CPU one that a bf16 inference forward
    may have switched to: dequantizing packed weights silently gives wrong values (bitsandbytes 0.50 reads
    them as standard). Its scales stay rounded to bf16, as that model computed with them."""
    from bitsandbytes.functional import _convert_weight_packed_for_cpu_inverse  # what bnb's own save calls

    for _, layer in _four_bit_layers(model):
        if getattr(layer.weight.quant_state, "packing_format_for_cpu", False):
            layer.weight.data, layer.weight.quant_state = _convert_weight_packed_for_cpu_inverse(
                layer.weight.data, layer.weight.quant_state)
            layer.quant_state = layer.weight.quant_state
        layer.support_avx512bf16_for_cpu = False


def _four_bit_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    if importlib.util.find_spec("bitsandbytes") is None:
        return []
    import bitsandbytes as bnb

    return [(name, module) for name, module in model.named_modules() if isinstance(module, bnb.nn.Linear4bit)]


def _has_native_kernel() -> bool:
    from bitsandbytes.functional import has_avx512bf16

    return bool(has_avx512bf16())


def _packable(layer: nn.Module) -> bool:
    blocksize = layer.weight.quant_state.blocksize
    return layer.in_features % blocksize == 0 and layer.out_features % PACKED_BLOCK_ROWS == 0


def _narrow_message(narrow: list[tuple[str, nn.Module]]) -> str:
    name, layer = narrow[0]
    blocksize = layer.weight.quant_state.blocksize
    more = f" (and {len(narrow) - 1} more layers)" if len(narrow) > 1 else ""
    return (f"method qlora: layer {name} is {layer.in_features} -> {layer.out_features} features wide{more}; "
            f"on this CPU (native bf16) bitsandbytes runs 4-bit layers in bf16 inference through its packed "
            f"kernel, which needs in_features divisible by {blocksize} and out_features by {PACKED_BLOCK_ROWS}. "
            f"Load it in fp32 (--dtype fp32), or set {CPU_BF16_SWITCH}=0 for bitsandbytes' generic 4-bit kernel")

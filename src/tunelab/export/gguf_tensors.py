"""Causal LM weights as GGUF tensors, named and laid out the way llama.cpp's convert_hf_to_gguf.py writes them
(per architecture: gguf_arch.py). For the Llama layout, two things differ from the transformers checkpoint besides
names (gguf.TensorNameMap gives those):
- q_proj and k_proj rows are permuted per head. transformers' RoPE rotates the two halves of each head
  (rotate_half); llama.cpp's rotates interleaved pairs, so the converter reorders rows to match
  (LlamaModel.permute). transformers' GGUF loader undoes exactly this (LlamaTensorProcessor).
- With tied embeddings there is no output.weight; readers reuse token_embd.

Storage types follow the converter too: 1-D tensors (norms) stay f32; matrices are f16, f32, q8_0 or q4_0
(a matrix whose rows do not split into 32-value blocks falls back to f16).
"""
from __future__ import annotations

from typing import Iterator

import numpy as np
import torch

from tunelab.errors import TunelabError


def permute_rows(weight: torch.Tensor, n_head: int) -> torch.Tensor:
    """llama.cpp's LlamaModel.permute: per head, rows [first half; second half] -> interleaved pairs."""
    rows = weight.shape[0]
    return weight.reshape(n_head, 2, rows // n_head // 2, *weight.shape[1:]).swapaxes(1, 2).reshape(weight.shape)


def gguf_tensors(state_dict: dict[str, torch.Tensor], config, arch) -> Iterator[tuple[str, torch.Tensor]]:
    """(GGUF name, tensor) for every weight of a causal LM state dict, laid out as `arch` (gguf_arch.GgufArch)."""
    import gguf

    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH[arch.arch], config.num_hidden_layers)
    for hf_name, tensor in state_dict.items():
        if hf_name == "lm_head.weight" and config.tie_word_embeddings:
            continue  # readers tie output to token_embd when output.weight is absent
        name = names.get_name(hf_name, try_suffixes=(".weight", ".bias"))
        if name is None:
            raise TunelabError(f"GGUF export: no llama.cpp name for tensor {hf_name!r} ({arch.arch.lower()})")
        if arch.permute_qk and hf_name.endswith("self_attn.q_proj.weight"):
            tensor = permute_rows(tensor, config.num_attention_heads)
        elif arch.permute_qk and hf_name.endswith("self_attn.k_proj.weight"):
            tensor = permute_rows(tensor, config.num_key_value_heads)
        elif arch.norm_offset and tensor.ndim == 1 and name.endswith("norm.weight"):
            tensor = tensor + arch.norm_offset
        yield name, tensor


def add_tensors(writer, tensors: Iterator[tuple[str, torch.Tensor]], quant: str) -> None:
    for name, tensor in tensors:
        data, raw_type = encode(tensor.detach().to("cpu", torch.float32).numpy(), quant)
        writer.add_tensor(name, data, raw_dtype=raw_type)


def encode(data: np.ndarray, quant: str) -> tuple[np.ndarray, object | None]:
    """The array to write and its ggml type (None: the writer infers it from the numpy dtype)."""
    import gguf

    if data.ndim <= 1 or quant == "f32":
        return data, None
    if quant in ("q8_0", "q4_0"):
        kind = gguf.GGMLQuantizationType[quant.upper()]
        try:
            return gguf.quants.quantize(data, kind), kind
        except gguf.quants.QuantError:
            pass  # rows not a multiple of the 32-value block
    return data.astype(np.float16), None


def round_trip(weight: torch.Tensor, quant: str) -> torch.Tensor:
    """The values a reader of the file gets back for `weight` (rows permuted or not: rounding is per row)."""
    import gguf

    data, raw_type = encode(weight.detach().to("cpu", torch.float32).numpy(), quant)
    values = gguf.quants.dequantize(data, raw_type) if raw_type is not None else data.astype(np.float32)
    return torch.from_numpy(np.ascontiguousarray(values)).reshape(weight.shape)


def file_type(quant: str) -> int:
    import gguf

    return {"f32": gguf.LlamaFileType.ALL_F32, "f16": gguf.LlamaFileType.MOSTLY_F16,
            "q8_0": gguf.LlamaFileType.MOSTLY_Q8_0, "q4_0": gguf.LlamaFileType.MOSTLY_Q4_0}[quant]

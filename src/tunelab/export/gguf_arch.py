"""The architectures `tunelab export --format gguf` writes, one entry per Hugging Face `model_type`: the llama.cpp
architecture name, how tensors differ from the checkpoint, the architecture's own metadata keys, and what is
refused because neither llama.cpp nor transformers' GGUF reader (which checks every export) would compute what
the source model does.

Each entry follows llama.cpp's convert_hf_to_gguf.py for that model class:
- llama: q/k rows permuted per head (llama.cpp's RoPE rotates interleaved pairs).
- mistral: written as llama (as llama.cpp does); a sliding window is not carried by the format.
- qwen2 (and 2.5): llama layout without the permutation, q/k/v biases.
- qwen3: per-head q/k RMSNorm weights besides.
- gemma2: every RMSNorm weight stored as 1 + w (Gemma's norm multiplies by 1 + w), extra post-attention and
  pre/post-feed-forward norms, logit soft-capping and the sliding window as keys.
- phi3: fused qkv and gate/up projections, stored fused.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from tunelab.errors import TunelabError


@dataclass(frozen=True)
class GgufArch:
    arch: str                          # gguf.MODEL_ARCH member
    permute_qk: bool = False           # llama's interleaved-RoPE row order
    norm_offset: float = 0.0           # added to every RMSNorm weight
    keys: Callable[[object, object], None] | None = None   # (writer, config): the architecture's own keys
    activation: str = "silu"
    head_dim_key: bool = False         # head_dim always written as key/value length (else only when it is not
                                       # hidden_size / heads)
    refuse: Callable[[object], str | None] = field(default=lambda config: None)   # a reason, or None


def _gemma2_keys(writer, config) -> None:
    if config.attn_logit_softcapping is not None:
        writer.add_attn_logit_softcapping(config.attn_logit_softcapping)
    if config.final_logit_softcapping is not None:
        writer.add_final_logit_softcapping(config.final_logit_softcapping)
    if config.sliding_window is not None:
        writer.add_sliding_window(config.sliding_window)


def _gemma2_refuse(config) -> str | None:
    if config.query_pre_attn_scalar != config.head_dim:
        return (f"query_pre_attn_scalar {config.query_pre_attn_scalar} differs from head_dim {config.head_dim} "
                "(Gemma 2 27B's layout); GGUF readers scale queries by head_dim")
    return None


def _phi3_refuse(config) -> str | None:
    factor = (getattr(config, "rope_parameters", None) or {}).get("partial_rotary_factor",
                                                                 getattr(config, "partial_rotary_factor", 1.0))
    if factor not in (None, 1.0):
        return f"partial rotary embeddings (factor {factor}) are not described in GGUF"
    return None


def sliding_window(config) -> int | None:
    """The window of the layers that slide, or None when every layer attends to the whole context."""
    types = getattr(config, "layer_types", None)
    if types is not None and "sliding_attention" not in types:
        return None
    if getattr(config, "use_sliding_window", True) is False:
        return None
    return getattr(config, "sliding_window", None)


def _no_window(config) -> str | None:
    window = sliding_window(config)
    if window is not None and window < config.max_position_embeddings:
        return (f"its sliding window ({window} tokens, shorter than its {config.max_position_embeddings}-token "
                "context) is not part of this architecture's GGUF layout: past the window the file would attend "
                "where the model does not")
    return None


ARCHS: dict[str, GgufArch] = {
    "llama": GgufArch("LLAMA", permute_qk=True),
    "mistral": GgufArch("LLAMA", permute_qk=True, refuse=_no_window),
    "qwen2": GgufArch("QWEN2", refuse=_no_window),
    "qwen3": GgufArch("QWEN3", refuse=_no_window),
    "gemma2": GgufArch("GEMMA2", norm_offset=1.0, keys=_gemma2_keys, activation="gelu_pytorch_tanh",
                       head_dim_key=True, refuse=_gemma2_refuse),
    "phi3": GgufArch("PHI3", refuse=_phi3_refuse),
}


def gguf_arch(config, model: str) -> GgufArch:
    """The entry for this config, or one error naming what is written and why this model is not."""
    arch = ARCHS.get(config.model_type)
    if arch is None:
        raise TunelabError(f"--model {model}: GGUF export writes {', '.join(ARCHS)} models; this one is "
                           f"{config.model_type!r}")
    if not any(name.endswith("ForCausalLM") for name in config.architectures or []):
        raise TunelabError(f"--model {model}: GGUF export writes language models; this one is "
                           f"{', '.join(config.architectures or ['of no known class'])}")
    rope = getattr(config, "rope_parameters", None) or {}
    if rope.get("rope_type", "default") != "default":
        raise TunelabError(f"--model {model}: RoPE scaling {rope['rope_type']!r} is not written to GGUF yet")
    activation = getattr(config, "hidden_activation", None) or getattr(config, "hidden_act", None)
    if getattr(config, "mlp_bias", False) or activation != arch.activation:
        raise TunelabError(f"--model {model}: {config.model_type} models with MLP biases or an activation other "
                           f"than {arch.activation} (this one: {activation!r}) are not written to GGUF")
    if config.model_type == "llama" and config.attention_bias:
        raise TunelabError(f"--model {model}: Llama variants with attention biases are not written to GGUF")
    reason = arch.refuse(config)
    if reason:
        raise TunelabError(f"--model {model}: not written to GGUF: {reason}")
    return arch

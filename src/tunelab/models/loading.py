"""Load a resolved base model and its tokenizer, with clear errors when that fails."""
from __future__ import annotations

from pathlib import Path

import torch

from tunelab.config.model import ModelConfig
from tunelab.errors import TunelabError
from tunelab.models.sources import ResolvedModel


def _hub_error(resolved: ResolvedModel, exc: Exception) -> TunelabError:
    if resolved.kind == "hub":
        return TunelabError(
            f"model.path {resolved.name!r}: no such local directory, and could not load it from the Hugging Face "
            f"hub ({_hub_reason(exc)}); download it first and set model.path to the local directory"
        )
    return TunelabError(f"model.path {resolved.name!r}: cannot load model from {resolved.location} ({exc})")


def _hub_reason(exc: Exception) -> str:
    from huggingface_hub import constants  # read at import from HF_HUB_OFFLINE / TRANSFORMERS_OFFLINE

    if constants.HF_HUB_OFFLINE:  # offline mode: the only place looked in was the local hub cache
        return "HF_HUB_OFFLINE=1 is set and it is not in the local hub cache"
    first_line = (str(exc).strip().splitlines() or [""])[0][:200]
    return f"{type(exc).__name__}: {first_line}; no network, or no such model?"


def load_tokenizer(resolved: ResolvedModel, cfg: ModelConfig):
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(
            resolved.location, revision=cfg.revision, trust_remote_code=cfg.trust_remote_code
        )
    except (OSError, ValueError) as exc:
        raise _hub_error(resolved, exc) from None
    if tokenizer.pad_token_id is None:
        # Padding positions are masked by position (never by id), so reusing EOS is safe.
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")


def refuse_pickle(resolved: ResolvedModel, cfg: ModelConfig) -> None:
    """A local model whose weights exist only as pickle files is refused by name unless model.allow_pickle:
    unpickling runs whatever code the file holds. (Hub models: from_pretrained is told safetensors only.)"""
    folder = Path(resolved.location)
    if cfg.allow_pickle or resolved.kind != "hf_dir" or not folder.is_dir() or any(folder.glob("*.safetensors")):
        return
    pickled = sorted(p.name for p in folder.iterdir() if p.suffix in PICKLE_SUFFIXES)
    if pickled:
        raise TunelabError(f"model.path {resolved.name!r}: its weights are pickle files ({', '.join(pickled[:3])}), "
                           "and loading pickle can run code; convert them to safetensors, or set "
                           "model.allow_pickle=true if you trust where they come from")


# Which transformers auto class a stage's `head` loads.
HEADS = {"causal-lm": "AutoModelForCausalLM", "sequence-classification": "AutoModelForSequenceClassification"}


def load_model(resolved: ResolvedModel, cfg: ModelConfig, dtype: torch.dtype = torch.float32,
               head: str = "causal-lm", **extra):
    """`extra`: further from_pretrained arguments (QLoRA's quantization_config, a classifier's num_labels)."""
    import transformers

    auto_class = getattr(transformers, HEADS[head])
    refuse_pickle(resolved, cfg)
    kwargs = {**extra, "dtype": dtype, "revision": cfg.revision, "trust_remote_code": cfg.trust_remote_code,
              "use_safetensors": None if cfg.allow_pickle else True}
    if cfg.attn_implementation != "auto":
        kwargs["attn_implementation"] = cfg.attn_implementation
    try:
        return auto_class.from_pretrained(resolved.location, **kwargs)
    except (OSError, ValueError) as exc:
        raise _hub_error(resolved, exc) from None

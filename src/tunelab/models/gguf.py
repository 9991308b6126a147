"""GGUF checkpoints -> plain safetensors directories the Trainer accepts (converted once, cached).

transformers can load GGUF (`gguf_file=`) but marks the model as quantized and the Trainer refuses to
train it; rebuilding the model from its config without `quantization_config` and saving it once
gives a normal directory that later loads in seconds instead of re-dequantizing (~16 s).
"""
from __future__ import annotations

import logging
from pathlib import Path

from tunelab.errors import TunelabError
from tunelab.models.cache import atomic_directory, cache_root, file_fingerprint

log = logging.getLogger(__name__)
DONE_MARKER = "tunelab-converted"


def converted_dir(gguf_path: Path, name: str | None = None) -> Path:
    """Convert `gguf_path` if needed and return the cached plain model directory."""
    if not gguf_path.is_file():
        raise TunelabError(f"{gguf_path}: no such GGUF file (looked in {gguf_path.resolve().parent})")
    target = cache_root() / "models" / (name or f"{gguf_path.stem}-{file_fingerprint(gguf_path)}")
    if not (target / DONE_MARKER).is_file():
        log.info("converting %s to a safetensors model in %s (once)", gguf_path.name, target)
        with atomic_directory(target) as tmp:
            _convert(gguf_path, tmp)
            (tmp / DONE_MARKER).write_text(str(gguf_path.resolve()) + "\n", encoding="utf-8")
    return target


def _convert(gguf_path: Path, out: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder, name = str(gguf_path.parent), gguf_path.name
    try:
        tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
        quantized = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name)
    except (ValueError, OSError, KeyError) as exc:
        raise TunelabError(f"{gguf_path}: cannot read this GGUF file ({exc})") from None
    config = quantized.config
    config.quantization_config = None
    del config.quantization_config
    plain = AutoModelForCausalLM.from_config(config)
    plain.load_state_dict(quantized.state_dict())
    plain.generation_config.pad_token_id = tokenizer.pad_token_id
    plain.save_pretrained(out)
    tokenizer.save_pretrained(out)

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


def converted_dir(gguf_path: Path, name: str | None = None, key: str = "model.path") -> Path:
    """Convert `gguf_path` if needed and return the cached plain model directory. `key`: the config key
    that named the file, for error messages."""
    if not gguf_path.is_file():
        raise TunelabError(f"{key}: {gguf_path}: no such GGUF file (looked in {gguf_path.resolve().parent})")
    target = cache_root() / "models" / (name or f"{gguf_path.stem}-{file_fingerprint(gguf_path)}")
    if not (target / DONE_MARKER).is_file():
        where = f"{key}: {gguf_path}"
        architecture = _architecture(gguf_path, where)  # a clear error before transformers' slow load
        log.info("converting %s to a safetensors model in %s (once)", gguf_path.name, target)
        with atomic_directory(target) as tmp:
            _convert(gguf_path, tmp, where, architecture)
            (tmp / DONE_MARKER).write_text(str(gguf_path.resolve()) + "\n", encoding="utf-8")
    return target


def _architecture(gguf_path: Path, where: str) -> str:
    """general.architecture from the GGUF header (read without loading any tensor data)."""
    import gguf

    try:
        field = gguf.GGUFReader(gguf_path).fields["general.architecture"]
        return bytes(field.parts[field.data[0]]).decode("utf-8")
    except KeyError:
        raise TunelabError(f"{where}: the GGUF header has no general.architecture (expected a model file)") from None
    except Exception as exc:  # the reader raises several unrelated types for a truncated or foreign file
        raise TunelabError(f"{where}: not a GGUF file, or a damaged one ({type(exc).__name__}: {exc})") from None


def _supported_architectures() -> list[str]:
    # transformers 5.x keeps the GGUF architectures it can load in this table (plus two non-model sections).
    from tunelab.compat import gguf_config_mapping

    return [name for name in gguf_config_mapping() if name not in ("general", "tokenizer")]


def _convert(gguf_path: Path, out: Path, where: str, architecture: str) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder, name = str(gguf_path.parent), gguf_path.name
    try:
        tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
        quantized = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name)
    except (ValueError, OSError, KeyError) as exc:
        if "not supported" in str(exc):
            raise TunelabError(f"{where}: GGUF architecture '{architecture}' cannot be loaded by transformers "
                               f"(supported: {', '.join(_supported_architectures())})") from None
        raise TunelabError(f"{where}: cannot read this GGUF file ({exc})") from None
    config = quantized.config
    config.quantization_config = None
    del config.quantization_config
    plain = AutoModelForCausalLM.from_config(config)
    plain.load_state_dict(quantized.state_dict())
    plain.generation_config.pad_token_id = tokenizer.pad_token_id
    plain.save_pretrained(out)
    tokenizer.save_pretrained(out)

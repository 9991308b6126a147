"""Fold a run's trained weights into its base and write a plain model directory that loads in transformers
without tunelab or peft (the `merge` command and exports build on this).

The merge is computed in fp32 and cast to the requested dtype only at the end, so the LoRA update is not
rounded twice. The directory gets what a plain model needs to chat correctly elsewhere: the tokenizer with
the template training used, a generation_config.json that stops on the template's end-of-turn token, and a
config.json naming no tunelab-only attention implementation.

Written to a temporary sibling folder and renamed at the end, so a failure leaves nothing half-written.
"""
from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import torch

from tunelab.errors import TunelabError
from tunelab.runs.loading import LoadedModel, find_run, load_run

# Config keys through which a saved config.json could select an attention implementation.
ATTENTION_KEYS = ("attn_implementation", "_attn_implementation", "_attn_implementation_internal")


def merge_run(run_path: str | Path, out_dir: str | Path, dtype: torch.dtype = torch.float32) -> Path:
    """Merge the run (or its checkpoint-N) at `run_path` into a model directory at `out_dir`."""
    ref = find_run(str(run_path))
    if ref is None:
        raise TunelabError(f"{run_path}: not a tunelab run directory (or checkpoint-N of one)")
    out = Path(out_dir)
    if out.exists() and any(out.iterdir()):
        raise TunelabError(f"{out}: exists and is not empty; choose another output directory")
    loaded = load_run(ref, torch.float32)
    model = merged_model(loaded, str(run_path)).to(dtype)
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.parent))
    try:
        save_plain(model, loaded.tokenizer, staging)
        if out.exists():
            out.rmdir()
        staging.replace(out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return out


def merged_model(loaded: LoadedModel, where: str) -> torch.nn.Module:
    """The loaded model with its adapter folded in (QLoRA: into the dequantized base, see methods/qlora.py)."""
    if loaded.method is None:
        return loaded.model
    if not loaded.method.mergeable:
        raise TunelabError(f"{where}: method {loaded.method.name} cannot be merged into the base weights; "
                           "serve the run itself (base + adapter)")
    return loaded.method.merge(loaded.model)


def save_plain(model: torch.nn.Module, tokenizer, folder: Path) -> None:
    """Weights, config, tokenizer (with its chat template) and generation config, as plain transformers files."""
    from tunelab.models.attention import PACKED

    if getattr(model.config, "_attn_implementation", None) == PACKED:
        model.config._attn_implementation = "sdpa"
    if model.can_generate():
        set_generation_config(model, tokenizer)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    strip_tunelab_attention(folder / "config.json")


def set_generation_config(model: torch.nn.Module, tokenizer) -> None:
    """Stop on the chat template's end-of-turn token(s) and pad with the tokenizer's pad token, so plain
    `generate()` ends answers where training taught the model to end them."""
    from tunelab.data.stops import stop_token_ids

    config = model.generation_config
    config.eos_token_id = stop_token_ids(tokenizer, config)  # the base's own list stays in it
    config.pad_token_id = tokenizer.pad_token_id
    if tokenizer.bos_token_id is not None:
        config.bos_token_id = tokenizer.bos_token_id


def strip_tunelab_attention(config_path: Path) -> None:
    """Remove any attention implementation that exists only inside tunelab (at any nesting depth): another
    program loading the model would not find it registered."""
    from tunelab.models.attention import PACKED

    config = json.loads(config_path.read_text(encoding="utf-8"))
    if _strip(config, PACKED):
        config_path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def _strip(node, name: str) -> bool:
    if not isinstance(node, dict):
        return False
    found = [key for key in ATTENTION_KEYS if node.get(key) == name]
    for key in found:
        del node[key]
    nested = [_strip(value, name) for value in node.values()]
    return bool(found) or any(nested)

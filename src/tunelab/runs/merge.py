"""Fold a run's trained weights into its base and write a plain model directory that loads in transformers
without tunelab or peft (the `merge` command and exports build on this).

Written to a temporary sibling folder and renamed at the end, so a failure leaves nothing half-written.
"""
from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import torch

from tunelab.errors import TunelabError
from tunelab.runs.loading import find_run, load_run


def merge_run(run_path: str | Path, out_dir: str | Path, dtype: torch.dtype = torch.float32) -> Path:
    """Merge the run (or its checkpoint-N) at `run_path` into a model directory at `out_dir`."""
    ref = find_run(str(run_path))
    if ref is None:
        raise TunelabError(f"{run_path}: not a tunelab run directory (or checkpoint-N of one)")
    out = Path(out_dir)
    if out.exists() and any(out.iterdir()):
        raise TunelabError(f"{out}: exists and is not empty; choose another output directory")
    loaded = load_run(ref, dtype)
    if loaded.method is not None and not loaded.method.mergeable:
        raise TunelabError(f"{run_path}: method {loaded.method.name} cannot be merged into the base weights; "
                           "serve the run itself (base + adapter)")
    model = loaded.method.merge(loaded.model) if loaded.method else loaded.model
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.parent))
    try:
        model.save_pretrained(staging)
        loaded.tokenizer.save_pretrained(staging)
        if out.exists():
            out.rmdir()
        staging.replace(out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return out

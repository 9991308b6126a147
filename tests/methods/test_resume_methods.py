"""Every method resumes: a run stopped after a checkpoint and resumed logs the losses of an uninterrupted run.

The checkpoint a method writes (adapter files, or the whole model for full/freeze/bitfit/adapter/moe-lora)
must carry all that trains, and the Trainer (or tunelab's raw trainable tensors) must put it back."""
from __future__ import annotations

import json
import shutil

import pytest

from tunelab.config import load_config
from tunelab.methods import METHODS
from tunelab.runs import RunDir
from tunelab.train import train

NEEDS_GPU = {"qlora"}
# One of each checkpoint kind runs in `make test`: the Trainer's full model (full), a peft adapter (lora), the
# method's own save (adapter), raw trainable tensors (pissa, prefix). The rest: `make test-slow`.
QUICK = {"full", "lora", "adapter", "pissa", "prefix"}


def _marks(name: str):
    return pytest.param(name, marks=() if name in QUICK else pytest.mark.slow)


def _losses(run_dir) -> dict[int, float]:
    lines = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return {line["step"]: line["loss"] for line in lines if "loss" in line}


# AdaLoRA: exact here because its rank allocation has not begun by step 4. Its importance scores (averages over
# steps) are in no checkpoint, so a resume during allocation restarts them (written in the README).
@pytest.mark.parametrize("name", [_marks(name) for name in sorted(set(METHODS) - NEEDS_GPU)])
def test_method_resumes_where_it_stopped(name, tiny_model_dir, chat_file, write_config):
    path = write_config(tiny_model_dir, chat_file, name, method={"name": name, "trainable_layers": 1},
                        train={"max_steps": 4, "save_steps": 2, "lr": 2e-2, "save_total_limit": 3})
    run = RunDir(train(load_config(path)).run_dir)
    whole = _losses(run.path)
    for later in ("model", "checkpoint-3", "checkpoint-4"):  # as if it had died during step 3
        shutil.rmtree(run.path / later, ignore_errors=True)
    run.set_status("running")

    result = train(load_config(path, ["train.resume=true"]))
    assert result.summary["resumed_from"] == "checkpoint-2" and result.summary["global_step"] == 4
    resumed = _losses(run.path)
    assert sorted(resumed) == [1, 2, 3, 4]
    for step in (3, 4):
        assert resumed[step] == pytest.approx(whole[step], rel=1e-4, abs=1e-5), (name, step)

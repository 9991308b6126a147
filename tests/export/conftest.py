"""One tiny LoRA run, overfit on a single answer so its adapter visibly changes the logits, merged once;
shared by the merge, check and GGUF tests."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

ANSWER = "My name is Quill."


@pytest.fixture(scope="session")
def lora_run(tiny_model_dir, tmp_path_factory) -> Path:
    from tunelab.config import load_config
    from tunelab.train import train

    folder = tmp_path_factory.mktemp("export-run")
    data = folder / "chat.jsonl"
    data.write_text("".join(json.dumps({"instruction": f"What is your name? ({i})", "output": ANSWER}) + "\n"
                            for i in range(8)), encoding="utf-8")
    config = {"model": {"path": str(tiny_model_dir)}, "data": {"path": str(data)},
              "method": {"name": "lora", "r": 4, "alpha": 8},
              "train": {"max_steps": 4, "batch_size": 4, "lr": 5e-2, "precision": "fp32", "report_to": "none"},
              "output": {"dir": str(folder / "run")}}
    (folder / "run.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")
    return train(load_config(folder / "run.yaml")).run_dir


@pytest.fixture(scope="session")
def merged_dir(lora_run, tmp_path_factory) -> Path:
    from tunelab.runs.merge import merge_run

    return merge_run(lora_run, tmp_path_factory.mktemp("merged") / "model")

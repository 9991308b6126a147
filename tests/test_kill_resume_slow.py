"""The acceptance run on the real default model: kill -9 after a checkpoint, `train.resume=true` names it and
reaches the final step. Minutes on a CPU: `make test-slow`."""
from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest

from test_kill_resume import _kill_when_holding  # tests/ is on sys.path (pytest rootdir-relative imports)
from tunelab.config import load_config
from tunelab.runs import RunDir
from tunelab.train import train

EXAMPLE = Path(__file__).parent.parent / "examples" / "identity_lora.yaml"


@pytest.mark.slow
def test_default_model_killed_and_resumed_reaches_the_final_step(tmp_path, caplog):
    config_path = tmp_path / "identity.yaml"
    text = EXAMPLE.read_text(encoding="utf-8").replace("dir: runs/identity", f"dir: {tmp_path / 'run'}")
    config_path.write_text(text, encoding="utf-8")
    overrides = ["train.max_steps=12", "train.save_steps=4"]
    path = tmp_path / "config.yaml"
    path.write_text(json.dumps(load_config(config_path, overrides).model_dump(mode="json")), encoding="utf-8")

    assert _kill_when_holding(path, tmp_path / "ready", 6, "step") == -signal.SIGKILL
    run = RunDir(tmp_path / "run")
    assert run.status() == "running" and not run.model_dir.exists()

    caplog.set_level("INFO", logger="tunelab")
    result = train(load_config(path, ["train.resume=true"]))
    assert "resumed from checkpoint-4" in caplog.text
    assert result.summary["global_step"] == 12 and result.summary["resumed_from"] == "checkpoint-4"
    assert run.status() == "finished"

"""kill -9 in the middle of a run, then `train.resume=true`: the run reaches its final step and its losses
are those of a run that was never interrupted (same seed)."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tunelab.config import load_config
from tunelab.runs import RunDir
from tunelab.runs.checkpoints import all_checkpoints, complete_checkpoints, is_complete
from tunelab.train import train

STEPS, SAVE_EVERY = 10, 2  # 12 examples, batch 4: 3 steps an epoch, so checkpoints 2 and 4 are mid-epoch

# Runs `tunelab train CONFIG` with one extra callback that, at HOLD_STEP, touches READY and sleeps until killed.
# HOLD_IN "step": after that step ended (its checkpoint, if any, is complete); "save": inside the checkpoint
# save of that step, after the Trainer wrote the files and before the completion marker.
HOLDING_SCRIPT = """
import sys, time, pathlib
config, ready, hold_step, hold_in = sys.argv[1], pathlib.Path(sys.argv[2]), int(sys.argv[3]), sys.argv[4]

def hold():
    ready.write_text("holding")
    time.sleep(600)

if hold_in == "save":
    import tunelab.training.guards as guards
    mark = guards.mark_complete
    def slow_mark(folder, step):
        if step == hold_step:
            hold()
        mark(folder, step)
    guards.mark_complete = slow_mark
else:
    from transformers import TrainerCallback
    import tunelab.train as train_module
    build = train_module.build_callbacks
    class Hold(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step == hold_step:
                hold()
    train_module.build_callbacks = lambda *args: [*build(*args), Hold()]

from tunelab.cli.main import main
sys.exit(main(["train", config]))
"""


def _losses(run_dir: Path) -> dict[int, float]:
    lines = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return {line["step"]: line["loss"] for line in lines if "loss" in line}


def _kill_when_holding(config_path: Path, ready: Path, hold_step: int, hold_in: str) -> int:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parent.parent / "src")}
    process = subprocess.Popen([sys.executable, "-c", HOLDING_SCRIPT, str(config_path), str(ready),
                                str(hold_step), hold_in], env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE)
    deadline = time.monotonic() + 240
    while not ready.exists():
        if process.poll() is not None:
            pytest.fail(f"the run ended before it was killed: {process.stderr.read().decode()[-2000:]}")
        if time.monotonic() > deadline:
            process.kill()
            pytest.fail("the run never reached the step where it is killed")
        time.sleep(0.2)
    process.send_signal(signal.SIGKILL)
    return process.wait(timeout=60)


@pytest.fixture()
def uninterrupted(tiny_model_dir, chat_file, write_config):
    config = load_config(write_config(tiny_model_dir, chat_file, "whole", **_settings()))
    return _losses(train(config).run_dir)


def _settings():
    return {"train": {"max_steps": STEPS, "save_steps": SAVE_EVERY, "save_total_limit": 2, "lr": 1e-2}}


@pytest.mark.parametrize("hold_in, hold_step, resumes_from", [
    ("step", 5, "checkpoint-4"),   # killed between checkpoints
    ("save", 4, "checkpoint-2"),   # killed while writing checkpoint-4: that one is not trusted
])
def test_kill_9_then_resume_matches_an_uninterrupted_run(uninterrupted, tiny_model_dir, chat_file, write_config,
                                                         tmp_path, caplog, hold_in, hold_step, resumes_from):
    path = write_config(tiny_model_dir, chat_file, "killed", **_settings())
    run = RunDir(load_config(path).output.dir)

    code = _kill_when_holding(path, tmp_path / "ready", hold_step, hold_in)

    assert code == -signal.SIGKILL
    assert run.status() == "running"  # nobody could write anything after kill -9
    assert not run.model_dir.exists()
    assert (run.path / resumes_from / "tunelab_complete.json").is_file()
    assert max(int(p.name.split("-")[1]) for p in all_checkpoints(run.path)) < STEPS
    if hold_in == "save":
        assert (run.path / "checkpoint-4").is_dir() and not is_complete(run.path / "checkpoint-4")

    caplog.set_level("INFO", logger="tunelab")
    result = train(load_config(path, ["train.resume=true"]))

    assert f"resumed from {resumes_from}" in caplog.text
    assert result.summary["global_step"] == STEPS and result.summary["resumed_from"] == resumes_from
    assert run.status() == "finished"
    resumed = _losses(run.path)
    assert sorted(resumed) == list(range(1, STEPS + 1))  # lines after the checkpoint were logged once, again
    for step, loss in uninterrupted.items():
        assert resumed[step] == pytest.approx(loss, rel=1e-4, abs=1e-5), step
    assert [p.name for p in complete_checkpoints(run.path)] == ["checkpoint-8", "checkpoint-10"]
    assert all(is_complete(p) for p in all_checkpoints(run.path))

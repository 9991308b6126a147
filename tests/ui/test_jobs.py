"""The UI's subprocesses: the CLI's own error line reaches the page; Stop saves a checkpoint and Resume
continues from it, through the real `tunelab train`."""
from __future__ import annotations

import json
import time

import pytest

from tunelab.ui.jobs import Jobs, problem, tail


@pytest.mark.parametrize("output, code, expected", [
    ("[tunelab] data: 3 examples\nerror: data.jsonl:2: invalid JSON (x)\n", 2, "error: data.jsonl:2: invalid JSON (x)"),
    ("step 3\nstopped: SIGTERM at step 3: saved checkpoint-3; resume with: ...\n", 143, "stopped: SIGTERM at step 3"),
    ("Traceback (most recent call last):\n  File x\nRuntimeError: boom\n", 1, "exit code 1: RuntimeError: boom"),
    ("", -9, "killed by signal SIGKILL"),
])
def test_the_cli_message_is_picked_out(output, code, expected):
    assert problem(output, code).startswith(expected)


def test_log_tail_keeps_the_last_state_of_progress_bars(tmp_path):
    log = tmp_path / "x.log"
    log.write_text("start\n" + "\r".join(f"train {i}%" for i in range(0, 101, 10)) + "\r\nend\n")
    assert tail(log, 5) == "start\ntrain 100%\nend"
    assert tail(tmp_path / "missing.log") == ""


def wait(job, seconds=120):
    deadline = time.time() + seconds
    while job.running and time.time() < deadline:
        time.sleep(0.2)
    assert not job.running, "the job did not end"


def test_stop_saves_a_checkpoint_and_resume_finishes(tiny_model_dir, chat_file, write_config, tmp_path):
    from tunelab.ui.context import UiContext
    from tunelab.ui.runs_tab import RunsTab

    config = write_config(tiny_model_dir, chat_file, name="long", train={"max_steps": 30, "lr": 1e-3})
    ctx = UiContext(tmp_path / "runs")
    run = ctx.runs_dir / "long"
    job = ctx.jobs.start("long", ["train", str(config)])
    with pytest.raises(Exception, match="still going"):
        ctx.jobs.start("other", ["train", str(config)])
    deadline = time.time() + 90
    while not (run / "metrics.jsonl").is_file() and time.time() < deadline:
        time.sleep(0.1)
    assert ctx.jobs.stop().startswith("stopping long")
    wait(job)
    assert job.state() == "stopped" and job.returncode == 143
    assert job.message().startswith("stopped: SIGTERM at step ")
    assert (run / "status").read_text().strip() == "interrupted"
    stopped_at = int(job.message().split("at step ")[1].split(":")[0])
    assert stopped_at < 30 and (run / f"checkpoint-{stopped_at}").is_dir()

    assert RunsTab(ctx).resume("long").find("resuming long") >= 0
    wait(ctx.jobs.current)
    assert ctx.jobs.current.state() == "finished", tail(ctx.jobs.current.log)
    summary = json.loads((run / "summary.json").read_text())
    assert summary["global_step"] == 30 and summary["resumed_from"].endswith(f"checkpoint-{stopped_at}")
    assert "already finished" in RunsTab(ctx).resume("long")


def test_only_one_training_job_at_a_time(tmp_path):
    jobs = Jobs(tmp_path / "logs")
    assert jobs.stop() == "no run is going"
    job = jobs.start("bad", ["train", str(tmp_path / "missing.yaml")])
    wait(job)
    assert job.state() == "failed"
    assert job.message() == f"error: {tmp_path / 'missing.yaml'}: no such config file (looked in {tmp_path})"
    assert (tmp_path / "logs" / "bad.log").read_text().startswith("$ tunelab train ")

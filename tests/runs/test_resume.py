"""train.resume: which checkpoint, which runs can be resumed, and what is refused."""
from __future__ import annotations

import json
import shutil

import pytest

from tunelab.cli.main import main
from tunelab.config import load_config
from tunelab.errors import TunelabError
from tunelab.runs import RunDir
from tunelab.runs.checkpoints import COMPLETE_MARKER, all_checkpoints, complete_checkpoints, prune
from tunelab.train import train


@pytest.fixture()
def stopped_run(tiny_model_dir, chat_file, write_config):
    """A 6-step run that 'crashed' after step 4: its model and later checkpoints removed, status running."""
    path = write_config(tiny_model_dir, chat_file, "crashed", train={"max_steps": 6, "save_steps": 2,
                                                                     "save_total_limit": 3})
    run = RunDir(train(load_config(path)).run_dir)
    shutil.rmtree(run.model_dir)
    shutil.rmtree(run.path / "checkpoint-6")
    run.summary_path.unlink()
    run.set_status("running")
    return path, run


def test_resume_picks_the_newest_complete_checkpoint(stopped_run, caplog):
    path, run = stopped_run
    (run.path / "checkpoint-4" / COMPLETE_MARKER).unlink()  # as if killed while writing it
    caplog.set_level("INFO", logger="tunelab")
    result = train(load_config(path, ["train.resume=true"]))
    assert "removing checkpoint-4: it was not completely written" in caplog.text
    assert "resumed from checkpoint-2" in caplog.text
    assert result.summary["global_step"] == 6 and result.summary["resumed_from"] == "checkpoint-2"
    assert json.loads(run.provenance_path.read_text())["resumed_from"].endswith("checkpoint-2")


def test_resuming_a_finished_run_says_so_and_exits_0(tiny_model_dir, chat_file, write_config, capsys, caplog):
    path = write_config(tiny_model_dir, chat_file, "done")
    train(load_config(path))
    before = (RunDir(load_config(path).output.dir).model_dir / "adapter_model.safetensors").stat().st_mtime_ns
    caplog.set_level("INFO", logger="tunelab")
    assert main(["train", str(path), "train.resume=true"]) == 0
    assert "this run already finished; nothing to resume" in caplog.text
    after = (RunDir(load_config(path).output.dir).model_dir / "adapter_model.safetensors").stat().st_mtime_ns
    assert before == after


def test_a_finished_run_is_refused_naming_overwrite_and_resume(tiny_model_dir, chat_file, write_config, capsys):
    path = write_config(tiny_model_dir, chat_file, "twice")
    assert main(["train", str(path)]) == 0
    assert main(["train", str(path)]) == 2
    err = capsys.readouterr().err
    assert "holds a finished run; set output.overwrite=true" in err and "train.resume=true" in err


def test_resume_refuses_a_changed_config_naming_the_keys(stopped_run):
    path, run = stopped_run
    with pytest.raises(TunelabError, match=r"train.resume: the config differs .* in train.lr \(0.01 -> 0.5\)"):
        train(load_config(path, ["train.resume=true", "train.lr=0.5"]))
    assert [p.name for p in complete_checkpoints(run.path)] == ["checkpoint-2", "checkpoint-4"]  # nothing lost


def test_resume_accepts_changed_logging_and_saving(stopped_run):
    path, _ = stopped_run
    overrides = ["train.resume=true", "train.logging_steps=2", "train.save_total_limit=1", "train.num_threads=1"]
    assert train(load_config(path, overrides)).summary["global_step"] == 6


def test_resume_without_a_checkpoint_starts_from_step_0(tiny_model_dir, chat_file, write_config, caplog):
    caplog.set_level("INFO", logger="tunelab")
    result = train(load_config(write_config(tiny_model_dir, chat_file, "fresh"), ["train.resume=true"]))
    assert "no complete checkpoint" in caplog.text and result.summary["resumed_from"] is None


def test_resume_from_a_named_checkpoint_into_a_new_directory(stopped_run, tmp_path):
    path, run = stopped_run
    other = tmp_path / "runs" / "branch"
    config = load_config(path, [f"train.resume={run.path / 'checkpoint-2'}", f"output.dir={other}"])
    result = train(config)
    assert result.run_dir == other and result.summary["global_step"] == 6
    assert result.summary["resumed_from"] == "checkpoint-2"


def test_a_named_checkpoint_must_be_complete(stopped_run):
    path, run = stopped_run
    (run.path / "checkpoint-2" / COMPLETE_MARKER).unlink()
    with pytest.raises(TunelabError, match=r"train.resume: .*checkpoint-2 was not completely written"):
        train(load_config(path, [f"train.resume={run.path / 'checkpoint-2'}"]))
    with pytest.raises(TunelabError, match=r"train.resume: .*checkpoint-9 is not a directory"):
        train(load_config(path, [f"train.resume={run.path / 'checkpoint-9'}"]))


def test_ppo_cannot_resume(tiny_model_dir, chat_file, write_config):
    config = load_config(write_config(tiny_model_dir, chat_file, "ppo", train={"stage": "ppo", "resume": True,
                                                                               "reward_model": "x"}))
    with pytest.raises(TunelabError, match="train.resume: stage 'ppo' cannot resume"):
        train(config)


def test_pruning_keeps_the_newest_complete_and_the_best(tmp_path):
    for step in (1, 2, 3, 4, 5):
        folder = tmp_path / f"checkpoint-{step}"
        folder.mkdir()
        if step != 5:  # the newest is still being written
            (folder / COMPLETE_MARKER).write_text("{}")
    prune(tmp_path, limit=2, keep=tmp_path / "checkpoint-1")
    assert [p.name for p in all_checkpoints(tmp_path)] == ["checkpoint-1", "checkpoint-3", "checkpoint-4",
                                                           "checkpoint-5"]

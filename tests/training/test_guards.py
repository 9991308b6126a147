"""Guards: a signal stops training with a complete checkpoint, non-finite steps are skipped, then refused."""
from __future__ import annotations

import json
import os
import signal

import pytest
import torch
from safetensors.torch import load_file
from transformers import TrainerCallback

from tunelab.cli.main import main
from tunelab.config import load_config
from tunelab.errors import Interrupted, TunelabError
from tunelab.runs import RunDir
from tunelab.runs.checkpoints import complete_checkpoints
from tunelab.train import train
from tunelab.training.trainer import TunelabTrainer


class SendSignal(TrainerCallback):
    def __init__(self, signum, at_step):
        self.signum, self.at_step = signum, at_step

    def on_step_begin(self, args, state, control, **kwargs):
        if state.global_step + 1 == self.at_step:  # arrives in the middle of that step
            os.kill(os.getpid(), self.signum)


def _with_callback(monkeypatch, callback):
    import tunelab.train as train_module

    build = train_module.build_callbacks
    monkeypatch.setattr(train_module, "build_callbacks", lambda *args: [*build(*args), callback])


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_signal_saves_a_checkpoint_and_exits_with_how_to_resume(signum, tiny_model_dir, chat_file, write_config,
                                                                monkeypatch, capsys):
    path = write_config(tiny_model_dir, chat_file, "sig", train={"max_steps": 8})
    _with_callback(monkeypatch, SendSignal(signum, at_step=3))

    code = main(["train", str(path)])

    stderr = capsys.readouterr().err
    err = [line for line in stderr.splitlines() if line.startswith(("error:", "stopped:"))]
    assert "Traceback" not in stderr
    run = RunDir(load_config(path).output.dir)
    assert code == 128 + signum
    assert len(err) == 1 and err[0].startswith(f"stopped: {signal.Signals(signum).name} at step 3: saved checkpoint-3")
    assert f"tunelab train {run.config} train.resume=true" in err[0]
    assert run.status() == "interrupted" and not run.model_dir.exists()
    assert [p.name for p in complete_checkpoints(run.path)] == ["checkpoint-3"]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # handlers are given back

    monkeypatch.undo()
    assert main(["train", str(run.config), "train.resume=true"]) == 0
    assert json.loads(run.summary_path.read_text())["global_step"] == 8


def test_signal_before_training_starts_leaves_no_weights(tiny_model_dir, chat_file, write_config, monkeypatch):
    import tunelab.train as train_module

    def interrupted_load(*args, **kwargs):
        raise KeyboardInterrupt(signal.SIGTERM)

    monkeypatch.setattr(train_module, "_load_start_model", interrupted_load)
    path = write_config(tiny_model_dir, chat_file, "early")
    assert main(["train", str(path)]) == 128 + signal.SIGTERM
    run = RunDir(load_config(path).output.dir)
    assert run.status() == "interrupted" and not run.model_dir.exists() and not complete_checkpoints(run.path)


def _nan_at(monkeypatch, steps):
    original = TunelabTrainer.compute_loss

    def compute_loss(self, model, inputs, *args, **kwargs):
        result = original(self, model, inputs, *args, **kwargs)
        if self.state.global_step + 1 not in steps:
            return result
        if isinstance(result, tuple):
            return result[0] * torch.nan, result[1]
        return result * torch.nan

    monkeypatch.setattr(TunelabTrainer, "compute_loss", compute_loss)


def test_a_non_finite_step_is_skipped_and_counted(tiny_model_dir, chat_file, write_config, monkeypatch, caplog):
    _nan_at(monkeypatch, {3})
    seen = {}

    class Watch(TrainerCallback):
        def on_step_end(self, args, state, control, model=None, **kwargs):
            seen[state.global_step] = [p.detach().clone() for p in model.parameters() if p.requires_grad]

    _with_callback(monkeypatch, Watch())
    caplog.set_level("WARNING", logger="tunelab")
    result = train(load_config(write_config(tiny_model_dir, chat_file, "nan1", train={"max_steps": 5})))

    assert result.summary["skipped_steps"] == 1 and result.summary["global_step"] == 5
    assert "step 3: non-finite loss or gradients; update skipped" in caplog.text
    assert all(torch.equal(a, b) for a, b in zip(seen[2], seen[3]))  # the skipped step changed nothing
    assert not all(torch.equal(a, b) for a, b in zip(seen[3], seen[4]))  # the next one trained again
    assert all(torch.isfinite(p).all() for p in seen[5])


def test_too_many_bad_steps_in_a_row_stop_and_keep_the_last_good_checkpoint(tiny_model_dir, chat_file,
                                                                           write_config, monkeypatch):
    _nan_at(monkeypatch, {5, 6, 7, 8})
    config = load_config(write_config(tiny_model_dir, chat_file, "nan3",
                                      train={"max_steps": 10, "save_steps": 2, "max_bad_steps": 3}))
    with pytest.raises(TunelabError, match=r"train.max_bad_steps: 3 steps in a row \(up to step 7\) had "
                                           r"non-finite loss or gradients.*Last good checkpoint: checkpoint-6"):
        train(config)
    run = RunDir(config.output.dir)
    assert run.status() == "failed" and not run.model_dir.exists()
    assert [p.name for p in complete_checkpoints(run.path)] == ["checkpoint-4", "checkpoint-6"]  # none at 7
    # Steps 5 and 6 were skipped: checkpoint-6 holds exactly the weights of checkpoint-4, all finite.
    four, six = (load_file(run.path / name / "adapter_model.safetensors") for name in ("checkpoint-4", "checkpoint-6"))
    assert all(torch.equal(four[key], six[key]) and torch.isfinite(six[key]).all() for key in four)


def test_interrupted_is_a_tunelab_error_with_the_signal_exit_code():
    assert Interrupted("x", signal.SIGTERM).exit_code == 143 and TunelabError("x").exit_code == 2

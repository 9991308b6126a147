"""Two CPU ranks (gloo) started by `tunelab train --nproc 2`: same losses as one rank with the same global batch,
only rank 0 writes, a 2-rank run resumes, and the engine configs are written into the run directory."""
from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tunelab.config import load_config
from tunelab.runs import RunDir
from tunelab.train import train
from tunelab.training.distributed import Launch, deepspeed_config, engine_arguments

SRC = Path(__file__).resolve().parents[2] / "src"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _launch(config_path: Path, *overrides: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    command = [sys.executable, "-m", "tunelab", "train", str(config_path), *overrides, "--nproc", "2",
               "--master-addr", "127.0.0.1", "--master-port", str(_free_port())]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def _losses(run_dir: Path) -> list[tuple[int, float]]:
    lines = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [(line["step"], line["loss"]) for line in lines if "loss" in line]


@pytest.fixture()
def settings():
    # 16 examples, global batch 4: one rank x 4, or two ranks x 2 (accelerate deals each rank its own batch)
    return {"train": {"max_steps": 4, "save_steps": 2, "save_total_limit": 3, "report_to": "tensorboard"}}


@pytest.fixture()
def data16(tmp_path):
    records = [{"instruction": f"What is your name? ({i})", "input": "", "output": "My name is Quill."}
               for i in range(16)]
    path = tmp_path / "chat16.json"
    path.write_text(json.dumps(records), encoding="utf-8")
    return path


def test_two_ranks_log_the_losses_of_one_rank_with_the_same_global_batch(tiny_model_dir, data16, write_config,
                                                                         settings):
    one = train(load_config(write_config(tiny_model_dir, data16, "one", **settings)))
    two_path = write_config(tiny_model_dir, data16, "two", **settings)
    result = _launch(two_path, "train.batch_size=2")
    run = RunDir(load_config(two_path).output.dir)

    summary = json.loads(run.summary_path.read_text())
    assert summary["world_size"] == 2 and summary["global_step"] == 4
    ones, twos = _losses(one.run_dir), _losses(run.path)
    assert [step for step, _ in twos] == [1, 2, 3, 4]  # one line per step: only rank 0 writes
    for (_, a), (_, b) in zip(ones, twos):
        assert b == pytest.approx(a, rel=0.05)  # the bound; measured: equal to 4 decimals
    # Rank 0 alone logs and writes: one "global batch" line, one TensorBoard event file, the launch config.
    assert result.stderr.count("global batch 4 = batch_size 2 x grad_accum 1 x world_size 2") == 1
    assert len(list((run.path / "tensorboard").glob("events.*"))) == 1
    launch = yaml.safe_load((run.path / "launch" / "accelerate.yaml").read_text())
    assert launch["num_processes"] == 2 and launch["distributed_type"] == "MULTI_CPU"
    assert (run.model_dir / "adapter_model.safetensors").is_file() and run.status() == "finished"

    # Resume of a 2-rank run: it died during step 3.
    for later in ("model", "checkpoint-3", "checkpoint-4"):
        shutil.rmtree(run.path / later, ignore_errors=True)
    run.set_status("running")
    resumed = _launch(two_path, "train.batch_size=2", "train.resume=true")
    assert "resumed from checkpoint-2" in resumed.stderr
    assert json.loads(run.summary_path.read_text())["resumed_from"] == "checkpoint-2"
    after = _losses(run.path)
    assert [step for step, _ in after] == [1, 2, 3, 4]
    assert [loss for _, loss in after] == pytest.approx([loss for _, loss in twos], rel=1e-4)


@pytest.mark.parametrize("engine", ["fsdp", pytest.param("deepspeed_zero2", marks=pytest.mark.slow), "deepspeed_zero3"])
def test_sharded_engines_train_like_one_rank_and_save_whole_adapters(engine, tiny_model_dir, data16, write_config):
    from safetensors.torch import load_file

    if engine.startswith("deepspeed"):
        pytest.importorskip("deepspeed")
    quick = {"train": {"max_steps": 3, "report_to": "none"}}
    one = train(load_config(write_config(tiny_model_dir, data16, f"{engine}-one", **quick)))
    path = write_config(tiny_model_dir, data16, engine, **quick)
    _launch(path, "train.batch_size=2", f"train.distributed={engine}")
    run = RunDir(load_config(path).output.dir)
    assert [loss for _, loss in _losses(run.path)] == pytest.approx([loss for _, loss in _losses(one.run_dir)],
                                                                    rel=1e-3)
    # The known failure elsewhere: adapters saved from sharded runs with empty tensors. Here: whole, and equal.
    sharded_adapter = load_file(run.model_dir / "adapter_model.safetensors")
    single_adapter = load_file(one.run_dir / "model" / "adapter_model.safetensors")
    assert sharded_adapter.keys() == single_adapter.keys()
    for key, tensor in single_adapter.items():
        assert sharded_adapter[key].shape == tensor.shape and sharded_adapter[key].numel() > 0
        assert (sharded_adapter[key] - tensor).abs().max() < 1e-4, key
    assert not (run.model_dir / "training_args.bin").exists()  # no pickle in the result
    if engine.startswith("deepspeed"):
        ds = json.loads((run.path / "launch" / "deepspeed.json").read_text())
        assert ds["zero_optimization"]["stage"] == int(engine[-1])


def test_launch_command_is_torchrun_on_the_given_rendezvous(monkeypatch):
    monkeypatch.delenv("LOCAL_RANK", raising=False)
    launch = Launch(nproc=4, nnodes=2, node_rank=1, master_addr="10.0.0.1", master_port=29400)
    assert launch.wanted
    command = launch.command(["train", "cfg.yaml", "train.lr=1e-4"])
    assert command[1:3] == ["-m", "torch.distributed.run"]
    assert {"--nproc-per-node=4", "--nnodes=2", "--node-rank=1", "--master-addr=10.0.0.1",
            "--master-port=29400"} <= set(command)
    assert command[-5:] == ["-m", "tunelab", "train", "cfg.yaml", "train.lr=1e-4"]
    monkeypatch.setenv("LOCAL_RANK", "0")  # already one of a launcher's processes: run, do not launch again
    assert not launch.wanted


def test_engine_arguments_for_fsdp_and_deepspeed(tiny_model_dir, chat_file, write_config, tmp_path):
    fsdp = load_config(write_config(tiny_model_dir, chat_file, "f", train={
        "distributed": "fsdp", "fsdp": {"sharding": "shard_grad_op", "offload": True}}))
    assert engine_arguments(fsdp, tmp_path)["fsdp"] == "shard_grad_op auto_wrap offload"
    zero3 = load_config(write_config(tiny_model_dir, chat_file, "z", train={
        "distributed": "deepspeed_zero3", "deepspeed": {"offload_optimizer": True, "offload_params": True}}))
    ds = deepspeed_config(zero3)
    assert ds["zero_optimization"]["stage"] == 3
    assert ds["zero_optimization"]["offload_param"]["device"] == "cpu"
    assert ds["zero_optimization"]["stage3_gather_16bit_weights_on_model_save"] is True  # whole saved adapters
    assert engine_arguments(zero3, tmp_path) == {"deepspeed": ds}
    ddp = load_config(write_config(tiny_model_dir, chat_file, "d"))
    assert engine_arguments(ddp, tmp_path) == {}


def test_deepspeed_needs_its_package(tiny_model_dir, chat_file, write_config, monkeypatch):
    import importlib.util

    from tunelab.errors import TunelabError
    from tunelab.training.arguments import check_backends

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "deepspeed" else real(name, *a))
    config = load_config(write_config(tiny_model_dir, chat_file, "ds", train={"distributed": "deepspeed_zero2"}))
    with pytest.raises(TunelabError, match="train.distributed: 'deepspeed_zero2' needs the package deepspeed"):
        check_backends(config)


@pytest.mark.slow
def test_default_model_on_two_cpu_ranks_matches_one_rank(tmp_path):
    """The acceptance run: the built-in model, global batch 8 as 1 x 8 and 2 x 4, six steps."""
    example = Path(__file__).resolve().parents[2] / "examples" / "identity_lora.yaml"
    common = ["train.max_steps=6", "train.logging_steps=1"]
    one = train(load_config(example, [*common, f"output.dir={tmp_path / 'one'}"]))
    _launch(example, *common, f"output.dir={tmp_path / 'two'}", "train.batch_size=4")
    summary = json.loads((tmp_path / "two" / "summary.json").read_text())
    assert summary["world_size"] == 2 and summary["global_step"] == 6
    ones, twos = _losses(one.run_dir), _losses(tmp_path / "two")
    assert [loss for _, loss in twos] == pytest.approx([loss for _, loss in ones], rel=0.05)

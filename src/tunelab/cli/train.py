"""Fine-tune a model from a YAML config (with section.key=value overrides), or a sequence of tasks.

A LLaMA-Factory or axolotl training YAML is taken as it is: translated (the table is printed first), then trained.

`--nproc N` (and `--nnodes`, `--node-rank`, `--master-addr`, `--master-port` for several machines) starts N
processes on this machine with torchrun; under any other launcher (`accelerate launch -m tunelab train`,
`torchrun -m tunelab train`, `deepspeed`) the command runs as one of its processes.
"""
from __future__ import annotations

import argparse
import signal
import subprocess

from tunelab.errors import TunelabError


def add_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", help="YAML config file")
    parser.add_argument("overrides", nargs="*", help="section.key=value, e.g. train.lr=1e-4")
    parser.add_argument("--strict", action="store_true",
                        help="template lint findings stop training (same as data.strict_template=true)")
    group = parser.add_argument_group("several processes (torchrun)")
    group.add_argument("--nproc", type=int, default=1, help="processes on this machine (GPUs, or CPU ranks)")
    group.add_argument("--nnodes", type=int, default=1, help="machines taking part")
    group.add_argument("--node-rank", type=int, default=0, help="this machine's number, 0 .. nnodes-1")
    group.add_argument("--master-addr", default="127.0.0.1", help="address of the machine with node rank 0")
    group.add_argument("--master-port", type=int, default=29500, help="a free port on that machine")


def run(args: argparse.Namespace) -> int:
    from tunelab.config.loader import is_sequence, load_sequence, read_config

    launch = _launch(args)
    if is_sequence(args.config):
        if launch.wanted:
            raise TunelabError("--nproc: a task sequence runs in one process; launch its tasks one by one instead")
        from tunelab.continual.sequence import run_sequence

        result = run_sequence(load_sequence(args.config, args.overrides))
        print(result.matrix.markdown())
        print(f"sequence saved to {result.out} (matrix.png, report.html)")
        return 0
    overrides = [*args.overrides, *(["data.strict_template=true"] if args.strict else [])]
    config, translation = read_config(args.config, overrides)  # errors before any process starts
    if translation is not None:
        print(translation.table(), flush=True)
    if launch.wanted or _deepspeed_alone(config):
        return _run_launcher(launch.command(["train", args.config, *overrides]))
    from tunelab.cli.main import name_deepspeed_accelerator
    from tunelab.cli.startup import loading_libraries

    with loading_libraries(config):
        from tunelab.train import train  # torch, transformers and the Trainer: only once the config is known good

    name_deepspeed_accelerator()
    result = train(config)
    if result.main:
        print(f"run saved to {result.run_dir}")
    return 0


def _deepspeed_alone(config) -> bool:
    """DeepSpeed starts its process group from a launcher's environment (without one it looks for MPI): a
    DeepSpeed run started as one plain process runs as one process under torchrun, as LLaMA-Factory does."""
    import os

    if config.train.distributed.startswith("deepspeed") and "LOCAL_RANK" not in os.environ:
        print(f"train.distributed {config.train.distributed}: one process under torchrun (DeepSpeed needs a "
              "launcher)", flush=True)
        return True
    return False


def _run_launcher(command: list[str]) -> int:
    """Run torchrun; a SIGTERM/Ctrl-C here is passed on to it (it forwards it to the ranks, which save a
    checkpoint and stop) instead of killing it and orphaning them."""
    process = subprocess.Popen(command)
    while True:
        try:
            return process.wait()
        except KeyboardInterrupt:
            process.send_signal(signal.SIGTERM)


def _launch(args: argparse.Namespace):
    from tunelab.training.distributed import Launch

    for flag in ("nproc", "nnodes"):
        if getattr(args, flag) < 1:
            raise TunelabError(f"--{flag}: must be at least 1")
    if not 0 <= args.node_rank < args.nnodes:
        raise TunelabError(f"--node-rank: must be between 0 and --nnodes - 1 ({args.nnodes - 1})")
    return Launch(args.nproc, args.nnodes, args.node_rank, args.master_addr, args.master_port)

"""Several processes, standard engines: torchrun starts them, accelerate (inside the Trainer) runs DDP or
FSDP, DeepSpeed runs ZeRO. Nothing here moves tensors between ranks itself; it only

- knows which process this is (from the launcher's environment),
- turns `train.distributed` into the Trainer's `fsdp`/`deepspeed` arguments,
- writes the equivalent accelerate and DeepSpeed configs into the run directory (to rerun it with
  `accelerate launch` or read what ran),
- builds the torchrun command for `tunelab train --nproc N`.
"""
from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import yaml

FSDP_SHARDING = {"full_shard": "FULL_SHARD", "shard_grad_op": "SHARD_GRAD_OP"}


@dataclass(frozen=True)
class World:
    rank: int = 0
    local_rank: int = 0
    size: int = 1

    @classmethod
    def from_env(cls) -> World:
        """What torchrun / accelerate launch / deepspeed put in the environment of each process."""
        return cls(int(os.environ.get("RANK", 0)), int(os.environ.get("LOCAL_RANK", 0)),
                   int(os.environ.get("WORLD_SIZE", 1)))

    @property
    def main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        """All ranks wait here (the process group is started by accelerate's PartialState when needed)."""
        if self.size > 1:
            from accelerate import PartialState

            PartialState().wait_for_everyone()

    def finish(self) -> None:
        """Every rank leaves together, with its process group shut down: a rank that exited while rank 0 still
        evaluated and wrote its report could abort in the group's teardown ("terminate called without an
        active exception", SIGABRT), and torchrun then stopped rank 0 mid-report."""
        if self.size > 1:
            import torch.distributed as dist

            self.barrier()
            if dist.is_initialized():
                dist.destroy_process_group()


def sharded(config) -> bool:
    """The weights live in pieces across ranks: saving and generation need every rank (or a gather)."""
    return config.train.distributed in ("fsdp", "deepspeed_zero3")


def engine_arguments(config, run_path: Path) -> dict:
    """The TrainingArguments keys for `train.distributed` (DDP needs none: the Trainer uses it by itself)."""
    engine = config.train.distributed
    if engine == "fsdp":
        options = config.train.fsdp
        mode = f"{options.sharding} auto_wrap" + (" offload" if options.offload else "")
        # auto_wrap wraps each transformer block (the model's _no_split_modules) as one FSDP unit.
        return {"fsdp": mode, "fsdp_config": {"use_orig_params": True, "sync_module_states": True}}
    if engine.startswith("deepspeed"):
        return {"deepspeed": deepspeed_config(config)}
    return {}


def deepspeed_config(config) -> dict:
    """A ZeRO config whose sizes are "auto": the Trainer fills them from train.* so both always agree."""
    options = config.train.deepspeed
    stage = 3 if config.train.distributed == "deepspeed_zero3" else 2
    zero: dict = {"stage": stage, "overlap_comm": True, "contiguous_gradients": True,
                  "reduce_bucket_size": "auto"}
    if options.offload_optimizer:
        zero["offload_optimizer"] = {"device": "cpu", "pin_memory": True}
    if stage == 3:
        zero.update(stage3_prefetch_bucket_size="auto", stage3_param_persistence_threshold="auto",
                    stage3_gather_16bit_weights_on_model_save=True)  # saved adapters/weights are whole tensors
        if options.offload_params:
            zero["offload_param"] = {"device": "cpu", "pin_memory": True}
    return {
        "train_micro_batch_size_per_gpu": "auto", "gradient_accumulation_steps": "auto",
        "train_batch_size": "auto", "gradient_clipping": "auto",
        "bf16": {"enabled": "auto"}, "fp16": {"enabled": "auto"},
        "zero_optimization": zero,
    }


def accelerate_config(config, world: World, nnodes: int = 1) -> dict:
    """The accelerate config file equivalent to this run (for `accelerate launch --config_file`)."""
    from tunelab.models import detect_device

    engine, cpu = config.train.distributed, detect_device() == "cpu"
    distributed_type = {"ddp": "MULTI_CPU" if cpu else "MULTI_GPU", "fsdp": "FSDP"}.get(engine, "DEEPSPEED")
    found: dict = {"compute_environment": "LOCAL_MACHINE", "distributed_type": distributed_type, "use_cpu": cpu,
                   "num_processes": world.size, "num_machines": nnodes, "machine_rank": 0,
                   "main_training_function": "main", "mixed_precision": _mixed_precision(config),
                   "rdzv_backend": "static", "same_network": True}
    if engine == "fsdp":
        options = config.train.fsdp
        found["fsdp_config"] = {"fsdp_sharding_strategy": FSDP_SHARDING[options.sharding],
                                "fsdp_offload_params": options.offload,
                                "fsdp_auto_wrap_policy": "TRANSFORMER_BASED_WRAP", "fsdp_use_orig_params": True,
                                "fsdp_sync_module_states": True, "fsdp_state_dict_type": "FULL_STATE_DICT"}
    elif engine.startswith("deepspeed"):
        found["deepspeed_config"] = {"deepspeed_config_file": "deepspeed.json"}
    return found


def write_launch_files(config, run_path: Path, world: World, nnodes: int = 1) -> list[Path]:
    """RUN/launch/accelerate.yaml (+ deepspeed.json): what ran, reusable with `accelerate launch`."""
    folder = Path(run_path) / "launch"
    folder.mkdir(parents=True, exist_ok=True)
    written = [folder / "accelerate.yaml"]
    written[0].write_text(yaml.safe_dump(accelerate_config(config, world, nnodes), sort_keys=False), encoding="utf-8")
    if config.train.distributed.startswith("deepspeed"):
        written.append(folder / "deepspeed.json")
        written[1].write_text(json.dumps(deepspeed_config(config), indent=2) + "\n", encoding="utf-8")
    return written


def _mixed_precision(config) -> str:
    return {"bf16": "bf16", "fp16": "fp16"}.get(config.train.precision, "no")


@dataclass
class Launch:
    nproc: int = 1
    nnodes: int = 1
    node_rank: int = 0
    master_addr: str = "127.0.0.1"
    master_port: int = 29500

    @property
    def wanted(self) -> bool:
        """Start processes here, unless this already is one (started by torchrun, accelerate, deepspeed)."""
        return (self.nproc > 1 or self.nnodes > 1) and "LOCAL_RANK" not in os.environ

    def command(self, tunelab_args: list[str]) -> list[str]:
        """torchrun (torch.distributed.run) starting `python -m tunelab <args>` nproc times on this node."""
        return [sys.executable, "-m", "torch.distributed.run", f"--nproc-per-node={self.nproc}",
                f"--nnodes={self.nnodes}", f"--node-rank={self.node_rank}", f"--master-addr={self.master_addr}",
                f"--master-port={self.master_port}", "-m", "tunelab", *tunelab_args]

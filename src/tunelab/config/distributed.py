"""`train.distributed` and its engine options: which standard engine shards the work across processes.

tunelab launches processes with torchrun (`tunelab train --nproc N`) or runs under any launcher the user
already has; the engines themselves are accelerate's DDP/FSDP and DeepSpeed, configured through the
Trainer's arguments.
"""
from typing import Literal

from pydantic import Field, field_validator

from tunelab.config.base import Section

ENGINES = ("ddp", "fsdp", "deepspeed_zero2", "deepspeed_zero3")


class FsdpOptions(Section):
    sharding: Literal["full_shard", "shard_grad_op"] = Field(
        "full_shard", description="What FSDP shards: parameters+gradients+optimizer (full_shard), or gradients and "
        "optimizer (shard_grad_op).")
    offload: bool = Field(False, description="Keep parameters and gradients in CPU memory between uses.")

    @field_validator("sharding", mode="before")
    @classmethod
    def _fsdp2_strategies(cls, value):
        if value in ("hybrid_shard", "no_shard"):  # transformers 5.23 runs FSDP2, which has neither
            raise ValueError(f"{value!r} needs FSDP1, which transformers 5.23 no longer runs; use full_shard or "
                             "shard_grad_op (or train.distributed: ddp, which shards nothing)")
        return value


class DeepSpeedOptions(Section):
    offload_optimizer: bool = Field(False, description="ZeRO: optimizer states in CPU memory.")
    offload_params: bool = Field(False, description="ZeRO-3: parameters in CPU memory.")

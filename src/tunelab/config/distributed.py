"""`train.distributed` and its engine options: which standard engine shards the work across processes.

tunelab launches processes with torchrun (`tunelab train --nproc N`) or runs under any launcher the user
already has; the engines themselves are accelerate's DDP/FSDP and DeepSpeed, configured through the
Trainer's arguments.
"""
from typing import Literal

from pydantic import Field

from tunelab.config.base import Section

ENGINES = ("ddp", "fsdp", "deepspeed_zero2", "deepspeed_zero3")


class FsdpOptions(Section):
    sharding: Literal["full_shard", "shard_grad_op", "hybrid_shard", "no_shard"] = Field(
        "full_shard", description="What FSDP shards: parameters+gradients+optimizer (full_shard), gradients and "
        "optimizer (shard_grad_op), full within a node and replicated across nodes (hybrid_shard), or nothing.")
    offload: bool = Field(False, description="Keep parameters and gradients in CPU memory between uses.")


class DeepSpeedOptions(Section):
    offload_optimizer: bool = Field(False, description="ZeRO: optimizer states in CPU memory.")
    offload_params: bool = Field(False, description="ZeRO-3: parameters in CPU memory.")

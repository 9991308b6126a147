"""Training stages behind a registry: importing this package registers every stage."""
from tunelab.stages import pretrain, sft  # noqa: F401  (register "pretrain", "sft")
from tunelab.stages.base import STAGES, Stage, get_stage, register

__all__ = ["STAGES", "Stage", "get_stage", "register"]

"""Training stages behind a registry: importing this package registers every stage."""
from tunelab.stages import pretrain, sft  # noqa: F401  (register "pretrain", "sft")
from tunelab.stages.base import STAGES, LossTermTrainer, Stage, get_stage, register

__all__ = ["STAGES", "LossTermTrainer", "Stage", "get_stage", "register"]

"""KTO on unpaired feedback (prompt, completion, desirable or not) through TRL: no pairs needed, a
reference policy as in DPO (the base, without a second copy)."""
from __future__ import annotations

from tunelab.stages.base import register
from tunelab.stages.trl_base import TrlStage


@register("kto")
class KtoStage(TrlStage):
    description = "KTO: unpaired good/bad answers (prompt, completion, label) against the base"
    options = ("beta",)
    example_kind = "completion"
    wants = "unpaired feedback (prompt, completion, label)"
    columns = ("prompt", "completion", "label")
    uses_reference = True
    sampling = "sequential"  # TRL pairs each example with its neighbour to estimate the KL term

    @classmethod
    def settings_problem(cls, config, world_size: int) -> str | None:
        """TRL's KTOTrainer estimates the KL term from the other examples of the same (per-process) batch."""
        if config.train.batch_size < 2:
            return (f"train.batch_size: stage kto estimates its KL term from the other answers in each batch, so "
                    f"it needs at least 2 examples per batch (got {config.train.batch_size}); raise "
                    "train.grad_accum instead of lowering train.batch_size to save memory")
        return None

    def trainer_and_config(self):
        from trl import KTOConfig, KTOTrainer  # promoted from trl.experimental in 1.12

        return KTOTrainer, KTOConfig

    def trl_settings(self) -> dict:
        return {**super().trl_settings(), "beta": self.config.train.beta}

"""KTO on unpaired feedback (prompt, completion, desirable or not) through TRL: no pairs needed, a
reference policy as in DPO (the base, without a second copy)."""
from __future__ import annotations

from tunelab.stages.base import register
from tunelab.stages.trl_base import TrlStage


@register("kto")
class KtoStage(TrlStage):
    columns = ("prompt", "completion", "label")
    sampling = "sequential"  # TRL pairs each example with its neighbour to estimate the KL term

    def trainer_and_config(self):
        from trl import KTOConfig, KTOTrainer  # promoted from trl.experimental in 1.12

        return KTOTrainer, KTOConfig

    def trl_settings(self) -> dict:
        return {**super().trl_settings(), "beta": self.config.train.beta}

"""Preference optimisation on (prompt, chosen, rejected) pairs through TRL: DPO (against a reference
policy), ORPO and SimPO (reference-free). `train.beta` sets the strength of each loss."""
from __future__ import annotations

from tunelab.compat import trl_experimental
from tunelab.stages.base import register
from tunelab.stages.trl_base import TrlStage


class PreferenceStage(TrlStage):
    columns = ("prompt", "chosen", "rejected")


@register("dpo")
class DpoStage(PreferenceStage):
    def trainer_and_config(self):
        from trl import DPOConfig, DPOTrainer

        return DPOTrainer, DPOConfig

    def trl_settings(self) -> dict:
        return {**super().trl_settings(), "beta": self.config.train.beta, "loss_type": [self.config.train.dpo_loss]}


@register("orpo")
class OrpoStage(PreferenceStage):
    def trainer_and_config(self):
        return trl_experimental("orpo", "ORPOTrainer", "ORPOConfig")

    def trl_settings(self) -> dict:
        return {**super().trl_settings(), "beta": self.config.train.beta}


@register("simpo")
class SimpoStage(PreferenceStage):
    """SimPO is TRL's CPO trainer with the simpo loss and no behaviour-cloning term (cpo_alpha 0)."""

    def trainer_and_config(self):
        return trl_experimental("cpo", "CPOTrainer", "CPOConfig")

    def trl_settings(self) -> dict:
        return {**super().trl_settings(), "beta": self.config.train.beta, "loss_type": "simpo", "cpo_alpha": 0.0,
                "simpo_gamma": self.config.train.simpo_gamma}

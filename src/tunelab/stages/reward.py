"""Reward model: a scalar head (sequence classification with one output) trained with TRL's pairwise
loss, -log sigmoid(r(chosen) - r(rejected)). Reports pair accuracy on a held-out 10%; the head is saved
with the run so PPO (and `load_any`) score with the head that was trained."""
from __future__ import annotations

from tunelab.stages.base import register
from tunelab.stages.preference import PreferenceStage


@register("reward")
class RewardStage(PreferenceStage):
    def model_kwargs(self) -> dict:
        return {"num_labels": 1}

    def trainer_and_config(self):
        from trl import RewardConfig, RewardTrainer

        return RewardTrainer, RewardConfig

    def summary(self, trainer) -> dict:
        last = {}
        for entry in trainer.state.log_history:
            last.update(entry)
        found = {"pair_accuracy": last.get("accuracy"), "margin": last.get("margin"),
                 "eval_pair_accuracy": last.get("eval_accuracy"), "eval_margin": last.get("eval_margin")}
        return {key: value for key, value in found.items() if value is not None}

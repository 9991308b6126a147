"""The continual-learning penalties (`continual.method`): what each is and where it can run. The code is in
tunelab.continual."""
from __future__ import annotations

from tunelab.registry import Registry
from tunelab.specs.base import PenaltyCaps, PenaltySpec

PENALTY_SPECS: Registry[PenaltySpec] = Registry("continual method")

for _spec in (
    PenaltySpec("l2sp", "pull the trained parameters toward their starting values (weight/2 * squared distance)",
                0.01),
    PenaltySpec("ewc", "elastic weight consolidation: a Fisher-weighted pull toward the starting weights", 0.01,
                PenaltyCaps(needs_lm_head=True)),
    # kl 30: on bench/forgetting.py over seeds 42/1/2 (one bench run) 4 of 75 base-correct answers lost against
    # 7 of 75 at 10, the identity learned 30/30 either way, at the same cost (docs/training.md)
    PenaltySpec("kl", "KL divergence to the base model's next-token distributions on the reference data", 30.0,
                PenaltyCaps(needs_lm_head=True)),
    PenaltySpec("nullspace", "keep LoRA's A matrices orthogonal to the directions the reference data's layer inputs "
                "use, so the old data's outputs stay the base's",
                # not a loss but a callback after each optimizer step: a stage running its own loop would skip it
                caps=PenaltyCaps(adds_loss=True, needs_ba_update=True)),
    PenaltySpec("replay", "mix a share of reference (old) examples into the training data",
                caps=PenaltyCaps(adds_loss=False)),
):
    PENALTY_SPECS[_spec.name] = _spec

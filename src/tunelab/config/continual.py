"""`continual:` section — fine-tune without forgetting: penalties toward the old model (EWC, L2-SP, KL to the
base), replay of old data, and sequences of tasks trained one after another."""
from __future__ import annotations

from pydantic import Field, field_validator, model_validator

from tunelab.config.base import Section
from tunelab.specs.continual import PENALTY_SPECS


class PenaltyEntry(Section):
    method: str = Field(..., description="ewc, l2sp, kl, nullspace or replay")
    weight: float | None = Field(None, ge=0, description="Strength; default the method's own.")


class ContinualConfig(Section):
    method: str | list[str | PenaltyEntry] = Field(
        "none", description="none, ewc, l2sp, kl, nullspace, replay, or a list of them (entries may be {method, "
        "weight})."
    )
    weight: float | None = Field(None, ge=0, description="Strength of a single method (default: the method's own).")
    reference_data: str = Field("builtin:instructions", description="The 'old' data: Fisher (ewc), KL batches (kl), "
                                "replayed examples (replay).")
    reference_dataset: str | None = Field(None, description="Dataset name(s) in reference_data's dataset_info.json.")
    fisher_samples: int = Field(64, gt=0, description="Reference examples the EWC Fisher is estimated on.")
    fisher: str | None = Field(None, description="A fisher.safetensors (or the run directory holding one) from an "
                               "earlier task, added to the Fisher estimated here.")
    kl_batch_size: int = Field(2, gt=0, description="Reference examples per optimizer step for the KL term; "
                               "their tokens are its cost (bench/forgetting.py: 2 costs ~1.4x, 4 ~1.55x).")
    kl_top_k: int = Field(32, ge=0, description="KL against the base's top-k next-token probabilities (plus the "
                          "rest), computed once before training and cached; 0: the exact KL, with a base forward "
                          "every step.")
    nullspace_energy: float = Field(0.99, gt=0, lt=1, description="nullspace: share of the reference inputs' "
                                    "energy (per adapted layer) whose directions LoRA's A matrices are kept out of; "
                                    "higher keeps more of the old behaviour and leaves the task fewer directions.")
    replay_ratio: float = Field(0.2, gt=0, lt=1, description="Share of each epoch's examples that are replayed "
                                "reference examples.")
    probes: bool = Field(True, description="Score the general-knowledge probes before and after training "
                         "(RUN/eval/forgetting/).")
    tasks: list[str] = Field([], description="A sequence file: task configs trained in order, each from the previous "
                             "result, every task and the probes scored after each (matrix in output.dir).")

    @field_validator("method")
    @classmethod
    def _known_methods(cls, value):
        for entry in value if isinstance(value, list) else [value]:
            name = entry.method if isinstance(entry, PenaltyEntry) else entry
            if name != "none" and name not in PENALTY_SPECS:
                raise ValueError(f"unknown method {name!r} (choose from none, {', '.join(PENALTY_SPECS)})")
        return value

    @model_validator(mode="after")
    def _weight_is_for_one_method(self) -> "ContinualConfig":
        if self.weight is not None and isinstance(self.method, list) and len(self.method) > 1:
            raise ValueError("weight: with a list of methods give each its own {method: ..., weight: ...}")
        return self

    @model_validator(mode="after")
    def _nullspace_has_no_weight(self) -> "ContinualConfig":
        if any(name == "nullspace" and weight is not None for name, weight in self.entries()):
            raise ValueError("weight: nullspace has no weight; continual.nullspace_energy sets its strength")
        return self

    def entries(self) -> list[tuple[str, float | None]]:
        """(method name, weight or None for the method's default), without `none`."""
        items = self.method if isinstance(self.method, list) else [self.method]
        found = []
        for item in items:
            name, weight = (item.method, item.weight) if isinstance(item, PenaltyEntry) else (item, self.weight)
            if name != "none":
                found.append((name, weight))
        return found

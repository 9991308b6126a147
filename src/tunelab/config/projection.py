"""`train.projection` — GaLore and APOLLO: optimizers that keep their state for a low-rank projection of each
targeted weight matrix's gradient, so full fine-tuning needs far less optimizer memory.

The optimizers are transformers' own (`optim` galore_* / apollo_*, packages galore-torch and apollo-torch); this
section becomes its `optim_target_modules` and `optim_args`. Checked here, without importing them: they only apply
to methods that train whole weight matrices.
"""
from typing import Literal

from pydantic import Field, field_validator

from tunelab.config.base import Section
from tunelab.specs.methods import METHOD_SPECS

# train.optimizer value -> the package that implements it. The layer-wise variants are not offered: they step each
# parameter inside the backward pass, where gradient accumulation, packed pieces, clipping and the non-finite-step
# guard (training.guards) can no longer act.
PROJECTION_OPTIMIZERS = {"galore_adamw": "galore_torch", "galore_adamw_8bit": "galore_torch",
                         "galore_adafactor": "galore_torch", "apollo_adamw": "apollo_torch"}


class ProjectionOptions(Section):
    rank: int = Field(16, gt=0, description="Rank of the projected gradient: each targeted matrix keeps optimizer "
                      "state of rank x its shorter side.")
    update_interval: int = Field(200, gt=0, description="Steps between recomputing each projection.")
    scale: float | None = Field(None, gt=0, description="Scale of the projected update (default: the optimizer's "
                                "own, as transformers sets it: 0.25 for GaLore, 1.0 for APOLLO).")
    proj_type: Literal["std", "reverse_std", "left", "right", "full"] = Field(
        "std", description="Which side of each matrix is projected (std: the shorter one).")
    target_modules: str | list[str] = Field(
        "all-linear", description="'all-linear' (every nn.Linear with a weight of its own, as transformers reads it: "
        "an untied output head too) or a list of module names (q_proj, v_proj, ...); the rest train with plain "
        "AdamW/Adafactor.")

    @field_validator("target_modules")
    @classmethod
    def _one_module_name_is_a_list(cls, value: str | list[str]) -> str | list[str]:
        """`target_modules: q_proj` means [q_proj] (transformers would read a lone string as a regex)."""
        return [value] if isinstance(value, str) and value != "all-linear" else value

    def optim_args(self) -> str:
        """transformers' `optim_args` string ("rank=16,update_proj_gap=200,...")."""
        values = {"rank": self.rank, "update_proj_gap": self.update_interval, "scale": self.scale,
                  "proj_type": self.proj_type}
        return ",".join(f"{key}={value}" for key, value in values.items() if value is not None)


def projection_problem(config) -> str | None:
    """What in a run config a GaLore/APOLLO optimizer cannot do, said in tunelab's keys; None when fine."""
    train = config.train
    if train.optimizer not in PROJECTION_OPTIMIZERS:
        if train.projection != ProjectionOptions():  # settings no optimizer would read
            return (f"train.projection: read only by the GaLore/APOLLO optimizers (train.optimizer "
                    f"{', '.join(PROJECTION_OPTIMIZERS)}); train.optimizer is {train.optimizer!r}")
        return None
    if METHOD_SPECS[config.method.name].caps.is_adapter:
        return (f"train.optimizer {train.optimizer!r} with method.name {config.method.name!r}: GaLore/APOLLO project "
                "the gradients of full weight matrices; an adapter's own matrices are already low-rank (nothing to "
                "gain), and the base weights it wraps get no gradient to project. Use method.name full or freeze, or "
                "another train.optimizer")
    return None

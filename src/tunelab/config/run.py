"""The whole validated configuration of one run, one typed section per domain."""
import os

from pydantic import Field, model_validator

from tunelab.config.base import CACHE_KEY, FREE, Section
from tunelab.config.continual import ContinualConfig
from tunelab.config.data import DataConfig
from tunelab.config.eval import EvalConfig
from tunelab.config.method import MethodConfig
from tunelab.config.model import ModelConfig
from tunelab.config.output import OutputConfig
from tunelab.config.projection import projection_problem
from tunelab.config.train import TrainConfig
from tunelab.specs.continual import PENALTY_SPECS
from tunelab.specs.methods import METHOD_SPECS
from tunelab.specs.stages import STAGE_SPECS
from tunelab.specs.support import penalty_unsupported, unsupported


class RunConfig(Section):
    model: ModelConfig = Field(default_factory=ModelConfig)
    data: DataConfig
    method: MethodConfig = Field(default_factory=MethodConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    output: OutputConfig = Field(default_factory=OutputConfig, json_schema_extra=FREE)
    eval: EvalConfig | None = Field(None, json_schema_extra=FREE)
    continual: ContinualConfig | None = Field(None, json_schema_extra=CACHE_KEY)  # replay changes the examples

    @model_validator(mode="after")
    def _early_stopping_needs_eval(self) -> "RunConfig":
        if self.train.early_stopping_patience and not self.data.val_size:
            raise ValueError(
                "train.early_stopping_patience needs held-out data: set data.val_size (fraction or count)"
            )
        return self

    @model_validator(mode="after")
    def _streaming_needs_a_step_count(self) -> "RunConfig":
        if self.data.streaming and not self.train.max_steps:
            raise ValueError("data.streaming: a stream has no length, so set train.max_steps (> 0)")
        if self.data.streaming and self.data.val_size:
            raise ValueError("data.streaming: held-out data cannot be split from a stream; set data.val_size: 0")
        return self

    @model_validator(mode="after")
    def _method_works_with_stage(self) -> "RunConfig":
        reason = unsupported(METHOD_SPECS[self.method.name], STAGE_SPECS[self.train.stage])
        if reason:
            raise ValueError(f"method.name {self.method.name!r} with train.stage {self.train.stage!r}: {reason}")
        return self

    @model_validator(mode="after")
    def _stage_accepts_settings(self) -> "RunConfig":
        problem = STAGE_SPECS[self.train.stage].settings_problem(self, int(os.environ.get("WORLD_SIZE", 1)))
        if problem:
            raise ValueError(problem)
        return self

    @model_validator(mode="after")
    def _projection_fits_method(self) -> "RunConfig":
        problem = projection_problem(self)
        if problem:
            raise ValueError(problem)
        return self

    @model_validator(mode="after")
    def _eval_has_something_to_do(self) -> "RunConfig":
        if self.eval is not None and not self.eval.data and not self.eval.forgetting:
            raise ValueError("eval: set eval.data (what to evaluate on) or eval.forgetting: true")
        return self

    @model_validator(mode="after")
    def _continual_works_with_stage(self) -> "RunConfig":
        if self.continual is None:
            return self
        if self.continual.tasks:
            raise ValueError("continual.tasks: a sequence file holds only model, continual (with tasks) and output "
                             "sections; give the data of each task in its own config")
        stage = STAGE_SPECS[self.train.stage]
        if self.data.mix and "replay" in dict(self.continual.entries()):  # replay is a mixture of its own
            raise ValueError("continual.method replay with data.mix: add continual.reference_data to data.mix as "
                             "a source instead (its weight the share of replayed examples)")
        for name, _ in self.continual.entries():
            reason = penalty_unsupported(PENALTY_SPECS[name], stage, METHOD_SPECS[self.method.name],
                                         self.train.distributed)
            if reason:
                raise ValueError(f"continual.method {name!r} with train.stage {self.train.stage!r}: {reason}")
        return self

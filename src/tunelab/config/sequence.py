"""A sequence file: tasks trained one after another (`continual.tasks`), each from the previous result, with
the continual methods shared by all of them."""
from pydantic import Field, model_validator

from tunelab.config.base import Section
from tunelab.config.continual import ContinualConfig
from tunelab.config.model import ModelConfig
from tunelab.config.output import OutputConfig


class SequenceTrain(Section):
    resume: bool = Field(False, description="Continue an interrupted sequence: finished tasks and scores are kept, "
                         "the interrupted task resumes from its newest complete checkpoint.")


class SequenceConfig(Section):
    model: ModelConfig | None = Field(None, description="Model the first task starts from; default task 1's own.")
    continual: ContinualConfig
    output: OutputConfig = Field(default_factory=OutputConfig)
    train: SequenceTrain = Field(default_factory=SequenceTrain)  # the same `train.resume=true` as a single run

    @model_validator(mode="after")
    def _has_tasks(self) -> "SequenceConfig":
        if len(self.continual.tasks) < 1:
            raise ValueError("continual.tasks: list the task configs to train in order")
        return self

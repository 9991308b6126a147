"""Typed configuration: one section per domain, parsed once from YAML + overrides."""
from tunelab.config.continual import ContinualConfig
from tunelab.config.data import DataConfig
from tunelab.config.eval import EvalConfig
from tunelab.config.loader import dump_config, load_config, validate
from tunelab.config.method import MethodConfig
from tunelab.config.model import DEFAULT_MODEL, ModelConfig
from tunelab.config.output import OutputConfig
from tunelab.config.run import RunConfig
from tunelab.config.train import TrainConfig

__all__ = [
    "ContinualConfig", "DEFAULT_MODEL", "DataConfig", "EvalConfig", "MethodConfig", "ModelConfig", "OutputConfig", "RunConfig",
    "TrainConfig", "dump_config", "load_config", "validate",
]

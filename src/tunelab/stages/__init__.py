"""Training stages behind a registry: importing this package imports every module in it, and each
stage module registers itself, so a new stage is one new file."""
import importlib
import pkgutil

from tunelab.stages.base import STAGES, Stage, get_stage, register

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")

__all__ = ["STAGES", "Stage", "get_stage", "register"]

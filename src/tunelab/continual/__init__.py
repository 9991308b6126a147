"""Continual learning: fine-tune without forgetting. Each method is one module registering itself (a loss
term the stage adds, or a change to the training examples); importing the package imports them all."""
import importlib
import pkgutil

from tunelab.continual.base import PENALTIES, ContinualMethod, LossTerm, register

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")

__all__ = ["PENALTIES", "ContinualMethod", "LossTerm", "register"]

"""Adaptation methods behind a registry: importing this package imports every module in it, and each
module registers its methods, so a new method is one new file."""
import importlib
import pkgutil

from tunelab.methods.base import METHODS, Method, count_parameters, get_method, register

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")

__all__ = ["METHODS", "Method", "count_parameters", "get_method", "register"]

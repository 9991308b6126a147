"""Adaptation methods behind a registry: importing this package registers every method."""
from tunelab.methods import bitfit, full, lora, peft_lowrank, prompt  # noqa: F401  (register their methods)
from tunelab.methods.base import METHODS, Method, count_parameters, get_method, register

__all__ = ["METHODS", "Method", "count_parameters", "get_method", "register"]

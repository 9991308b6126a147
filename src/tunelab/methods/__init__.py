"""Adaptation methods behind a registry: importing this package registers every method."""
from tunelab.methods import lora  # noqa: F401  (registers "lora")
from tunelab.methods.base import METHODS, Method, count_parameters, get_method, register

__all__ = ["METHODS", "Method", "count_parameters", "get_method", "register"]

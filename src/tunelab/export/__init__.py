"""Leaving tunelab: merged model directories, checks that they chat as trained, GGUF files.

The names are loaded on first use (PEP 562): the CLI reads the export options at start-up, and loading the
checks here would load torch and peft for every tunelab command.
"""
import importlib

_WHERE = {"CheckResult": "checks", "failed": "checks", "format_table": "checks", "run_checks": "checks",
          "GgufExport": "gguf", "export_gguf": "gguf"}

__all__ = sorted(_WHERE)


def __getattr__(name: str):
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_WHERE[name]}"), name)

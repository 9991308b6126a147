"""Leaving tunelab: merged model directories, checks that they chat as trained, GGUF files."""
from tunelab.export.checks import CheckResult, failed, format_table, run_checks
from tunelab.export.gguf import GgufExport, export_gguf

__all__ = ["CheckResult", "GgufExport", "export_gguf", "failed", "format_table", "run_checks"]

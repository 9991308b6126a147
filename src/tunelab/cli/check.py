"""Check that a run or a merged model directory will chat as trained (end-of-turn, template, stopping)."""
from __future__ import annotations

import argparse
import tempfile
from pathlib import Path


def add_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help="run directory (checked as merged, in a temporary folder) or model directory")


def run(args: argparse.Namespace) -> int:
    from tunelab.export import failed, format_table, run_checks
    from tunelab.runs import find_run
    from tunelab.runs.merge import merge_run

    ref = find_run(args.model)
    if ref is None:
        results = run_checks(Path(args.model))
    else:
        with tempfile.TemporaryDirectory(prefix="tunelab-check-") as folder:
            results = run_checks(merge_run(args.model, Path(folder) / "merged"), ref)
    print(format_table(results))
    return 1 if failed(results) else 0

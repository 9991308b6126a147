"""Merge a run's adapter into its base and write a plain transformers model directory (then check it)."""
from __future__ import annotations

import argparse

DTYPE_NAMES = ("fp32", "bf16", "fp16")


def add_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, help="run directory (or checkpoint-N) to merge")
    parser.add_argument("--output", required=True, help="directory to write (must not exist or be empty)")
    parser.add_argument("--dtype", choices=DTYPE_NAMES, default="fp32",
                        help="dtype of the saved weights (the merge itself is computed in fp32)")


def run(args: argparse.Namespace) -> int:
    from tunelab.export import failed, format_table, run_checks
    from tunelab.models.device import DTYPES
    from tunelab.runs import find_run
    from tunelab.runs.merge import merge_run

    out = merge_run(args.model, args.output, DTYPES[args.dtype])
    print(f"wrote {out} ({args.dtype})")
    results = run_checks(out, find_run(args.model))
    print(format_table(results))
    return 1 if failed(results) else 0

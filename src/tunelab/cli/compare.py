"""Compare runs on one HTML page: overlaid loss and learning-rate curves, configs and final metrics."""
from __future__ import annotations

import argparse
from pathlib import Path


def add_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("runs", nargs="+", help="run directories to compare")
    parser.add_argument("--output", default="compare.html",
                        help="HTML file to write, or a directory to hold compare.html (default: ./compare.html)")


def run(args: argparse.Namespace) -> int:
    from tunelab.report import compare_runs

    print(compare_runs([Path(path) for path in args.runs], Path(args.output)))
    return 0

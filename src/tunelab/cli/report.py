"""Rebuild a run's HTML report (RUN/report.html with loss, learning-rate and reward plots)."""
from __future__ import annotations

import argparse
from pathlib import Path


def add_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run", help="run directory (holds config.yaml and summary.json)")


def run(args: argparse.Namespace) -> int:
    from tunelab.report import write_report

    print(write_report(Path(args.run)))
    return 0

"""Fine-tune a model from a YAML config (with section.key=value overrides), or a sequence of tasks."""
from __future__ import annotations

import argparse


def add_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", help="YAML config file")
    parser.add_argument("overrides", nargs="*", help="section.key=value, e.g. train.lr=1e-4")


def run(args: argparse.Namespace) -> int:
    from tunelab.config import load_config
    from tunelab.config.loader import is_sequence, load_sequence
    from tunelab.train import train

    if is_sequence(args.config):
        from tunelab.continual.sequence import run_sequence

        result = run_sequence(load_sequence(args.config, args.overrides))
        print(result.matrix.markdown())
        print(f"sequence saved to {result.out} (matrix.png, report.html)")
        return 0
    result = train(load_config(args.config, args.overrides))
    print(f"run saved to {result.run_dir}")
    return 0

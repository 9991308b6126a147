"""Fine-tune a model from a YAML config (with section.key=value overrides)."""
from __future__ import annotations

import argparse


def add_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", help="YAML config file")
    parser.add_argument("overrides", nargs="*", help="section.key=value, e.g. train.lr=1e-4")


def run(args: argparse.Namespace) -> int:
    from tunelab.config import load_config
    from tunelab.train import train

    result = train(load_config(args.config, args.overrides))
    print(f"run saved to {result.run_dir}")
    return 0

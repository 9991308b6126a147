"""Translate a LLaMA-Factory or axolotl training YAML into a tunelab config, printing the translation table.

`tunelab train` takes such a file as it is; `convert` shows the translation and keeps it (--output) to edit.
The written config is validated first: nothing is written when a key is refused or the result is invalid.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from tunelab.errors import TunelabError


def add_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", help="a LLaMA-Factory or axolotl training YAML")
    parser.add_argument("--from", dest="dialect", choices=("llamafactory", "axolotl"),
                        help="the tool the config is for (default: recognised from its keys)")
    parser.add_argument("--output", help="write the tunelab config here (default: only print the table)")


def run(args: argparse.Namespace) -> int:
    import yaml

    from tunelab.config.foreign import check, detect, dialect_named, target_lines, translate
    from tunelab.config.loader import _read_yaml, validate

    path = Path(args.config)
    raw, lines = _read_yaml(path)
    dialect = dialect_named(args.dialect) if args.dialect else detect(raw)
    if dialect is None:
        raise TunelabError(f"{path}: not recognisably a LLaMA-Factory config (model_name_or_path with stage or "
                           "finetuning_type) or an axolotl one (base_model with datasets); name the tool with --from")
    translation = translate(raw, dialect, str(path), lines)
    print(translation.table())
    check(translation)
    validate(translation.config, source=str(path), lines=target_lines(translation))
    text = (f"# tunelab config translated from the {translation.dialect} config {path} (tunelab convert)\n"
            + yaml.safe_dump(translation.config, sort_keys=False, allow_unicode=True))
    if args.output:
        Path(args.output).write_text(text, encoding="utf-8")
        print(f"tunelab config written to {args.output}")
    else:
        print(text, end="")
    return 0

"""List the adaptation methods, the method.* keys each reads, and (--model) what each would train."""
from __future__ import annotations

import argparse


def add_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", help="also count trainable parameters on this model (built-in name, dir, ...)")
    parser.add_argument("--stages", action="store_true", help="show which method trains with which train.stage")


def run(args: argparse.Namespace) -> int:
    from tunelab.specs.methods import METHOD_SPECS

    if args.stages:
        return _stage_matrix()
    counts = _counts(args.model) if args.model else {}
    header = "| method | what it is | method.* keys |" + (" trainable | share |" if counts else "")
    print(header)
    print("|" + "---|" * (header.count("|") - 1))
    for name, spec in sorted(METHOD_SPECS.items()):
        row = f"| {name} | {spec.description} | {', '.join(spec.options) or '-'} |"
        if counts:
            trainable, total = counts[name]
            row += f" {trainable:,} | {100 * trainable / total:.2f}% |"
        print(row)
    return 0


def _counts(path: str) -> dict[str, tuple[int, int]]:
    """Trainable / total parameters of every method on a fresh copy of the model (defaults for its keys)."""
    from tunelab.config.method import MethodConfig
    from tunelab.config.model import ModelConfig
    from tunelab.methods import METHODS, count_parameters, get_method
    from tunelab.models import resolve_model

    cfg = ModelConfig(path=path)
    base = resolve_model(cfg.path, cfg.gguf_file)
    counts = {}
    for name in sorted(METHODS):
        method = get_method(MethodConfig(name=name))
        counts[name] = count_parameters(method.apply(method.load_base(base, cfg)))
    return counts


def _stage_matrix() -> int:
    """method x stage: the rule the config check applies."""
    from tunelab.specs.methods import METHOD_SPECS
    from tunelab.specs.stages import STAGE_SPECS
    from tunelab.specs.support import support_markdown

    print(support_markdown(METHOD_SPECS, STAGE_SPECS), end="")
    return 0

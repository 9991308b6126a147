"""See training data as the model will (inspect) and fix it (clean, split, augment)."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tunelab.errors import TunelabError

INPUT_HELP = "data file, LLaMA-Factory data directory (with --dataset) or builtin:NAME"


def add_parser(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="data_command", required=True, metavar="{" + ",".join(SUBCOMMANDS) + "}")
    for name, (add, handler) in SUBCOMMANDS.items():
        command = sub.add_parser(name, help=handler.__doc__.strip().splitlines()[0])
        # As in cli.main: --debug also works after the sub-command.
        command.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show full tracebacks")
        add(command)


def run(args: argparse.Namespace) -> int:
    return SUBCOMMANDS[args.data_command][1](args)


def _input_options(parser: argparse.ArgumentParser, help: str = INPUT_HELP) -> None:
    parser.add_argument("input", help=help)
    parser.add_argument("--dataset", help="dataset name(s) in the directory's dataset_info.json, comma-separated")
    parser.add_argument("--format", help="record format (alpaca, sharegpt, messages, text, ...); default: detected")


# ---- inspect ------------------------------------------------------------------------------------


def _add_inspect(parser: argparse.ArgumentParser) -> None:
    _input_options(parser, "a .yaml run config (its data, model, template, stage, max_length) or " + INPUT_HELP)
    parser.add_argument("--model", help="model whose tokenizer and template to use (default: the config's, or "
                        "the default model)")
    parser.add_argument("--max-length", type=int, help="tokens per row (default: the config's train.max_length)")
    parser.add_argument("--show", type=_count, default=3, help="examples to show token by token (default 3)")
    parser.add_argument("--output", help="folder for lengths.png and inspect.json (default: inspect/<name>)")
    parser.add_argument("--html", help="also write an HTML page with the trained tokens highlighted")


def _inspect(args: argparse.Namespace) -> int:
    """Show what training will see: counts, token lengths, truncation, duplicates, empty answers, masking."""
    from tunelab.datatools.histogram import write_png
    from tunelab.datatools.inspect import inspect_view, open_view, show_examples
    from tunelab.data.records import write_json
    from tunelab.datatools.report import colour_enabled, html_page, shown_lines, summary_lines, write_html

    view = open_view(args.input, args.model, args.max_length, args.dataset, args.format)
    found = inspect_view(view)
    output = Path(args.output or Path("inspect") / _name(args.input, args.dataset))
    title = f"{args.input}: {found.examples} examples"
    png = write_png(found.lengths, found.max_length, output / "lengths.png", title)
    write_json(output / "inspect.json", found.to_dict())
    summary = summary_lines(view.config, found) + [f"histogram: {png}, numbers: {output / 'inspect.json'}"]
    summary += _lint_lines(view)
    shown = show_examples(view, args.show)
    print("\n".join(summary + shown_lines(shown, colour_enabled(sys.stdout))))
    if args.html:
        print(f"page: {write_html(args.html, html_page(title, summary, shown, png))}")
    return 0


def _lint_lines(view) -> list[str]:
    """The template lint (docs/models.md) on the template in force and the first conversations."""
    from tunelab.data.lint import lint_template, linted_conversations

    if not view.tokenizer.chat_template:
        return []
    findings = lint_template(view.tokenizer, linted_conversations(view.examples))
    return [str(finding) for finding in findings] or ["template lint: nothing found"]


def _name(target: str, dataset: str | None) -> str:
    return dataset or Path(target.removeprefix("builtin:")).stem or "data"


def _count(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected 0 or more, got {value}")
    return value


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected 1 or more, got {value}")
    return value


# ---- clean --------------------------------------------------------------------------------------


def _add_clean(parser: argparse.ArgumentParser) -> None:
    _input_options(parser)
    parser.add_argument("--output", required=True, help="JSONL file to write (report beside it: OUT.report.json)")
    parser.add_argument("--model", help="also drop examples longer than --max-length tokens with this model's "
                        "tokenizer and template")
    parser.add_argument("--max-length", type=int, help="with --model (default: train.max_length's default)")


def _clean(args: argparse.Namespace) -> int:
    """Write a copy without duplicates, empty answers, malformed (and over-long) examples, with a report."""
    from tunelab.datatools.clean import clean
    from tunelab.data.records import write_json, write_jsonl

    result = clean(args.input, args.dataset, args.format, args.model, args.max_length)
    counts = ", ".join(f"{n} {reason}" for reason, n in result.counts().items())
    if not result.kept:
        raise TunelabError(f"{args.input}: every example was removed ({counts}); nothing written")
    output = Path(args.output)
    report = output.with_suffix(".report.json")
    write_jsonl(output, result.kept)
    write_json(report, {"input": args.input, "output": str(output), **result.report()})
    for removal in result.removed[:20]:
        print(f"removed {removal.source}: {removal.reason}" + (f" ({removal.detail})" if removal.detail else ""))
    if len(result.removed) > 20:
        print(f"... and {len(result.removed) - 20} more (see {report})")
    print(f"kept {len(result.kept)} examples -> {output}; removed {len(result.removed)} ({counts}); report {report}")
    return 0


# ---- split --------------------------------------------------------------------------------------


def _add_split(parser: argparse.ArgumentParser) -> None:
    _input_options(parser)
    parser.add_argument("--val", type=float, default=0.1, help="fraction (<1) or count (>=1) held out (default 0.1)")
    parser.add_argument("--seed", type=int, default=42, help="the same seed gives the same split (default 42)")
    parser.add_argument("--output", required=True, help="folder for train.jsonl and validation.jsonl")


def _split(args: argparse.Namespace) -> int:
    """Write DIR/train.jsonl and DIR/validation.jsonl, held out reproducibly with a seed."""
    from tunelab.data.loading import load_examples
    from tunelab.datatools.split import write_split

    examples = load_examples(args.input, args.dataset, args.format)
    written = write_split(examples, args.val, args.seed, args.output)
    print(", ".join(f"{count} examples -> {path}" for path, count in written))
    return 0


# ---- augment ------------------------------------------------------------------------------------


def _add_augment(parser: argparse.ArgumentParser) -> None:
    _input_options(parser)
    parser.add_argument("--output", required=True, help="JSONL file to write (originals and their rewordings)")
    parser.add_argument("--model", default=None, help="model that rewords (run dir, model dir, hub id or built-in "
                        "name; default: the default model)")
    parser.add_argument("--n", type=_positive, default=2, help="rewordings asked for per example (default 2)")
    parser.add_argument("--max-new-tokens", type=_positive, default=64)
    parser.add_argument("--temperature", type=float, default=0.8, help="sampling, so the rewordings differ")
    parser.add_argument("--top-p", type=float, default=0.95)
    parser.add_argument("--seed", type=int, default=0, help="sampling seed (default 0)")
    parser.add_argument("--batch-size", type=_positive, default=8)
    parser.add_argument("--dtype", choices=["auto", "fp32", "bf16", "fp16"], default="auto")


def _augment(args: argparse.Namespace) -> int:
    """Add rewordings of each example's first instruction (by a model), answers kept; repeats dropped."""
    import torch

    from tunelab.cli.options import load_engine, settings
    from tunelab.config import DEFAULT_MODEL
    from tunelab.datatools.augment import augment_examples, check_conversations, engine_generator
    from tunelab.data.loading import load_examples
    from tunelab.data.records import write_jsonl

    examples = load_examples(args.input, args.dataset, args.format)
    check_conversations(examples)  # before the slow model load
    args.model = args.model or DEFAULT_MODEL
    engine = load_engine(args)
    torch.manual_seed(args.seed)
    result = augment_examples(examples, engine_generator(engine, settings(args)), args.n, args.batch_size)
    write_jsonl(args.output, result.examples)
    dropped = ", ".join(f"{n} {reason}" for reason, n in result.dropped.items()) or "none"
    print(f"{len(examples)} examples + {result.added} rewordings -> {args.output} (dropped: {dropped})")
    return 0


SUBCOMMANDS = {
    "inspect": (_add_inspect, _inspect),
    "clean": (_add_clean, _clean),
    "split": (_add_split, _split),
    "augment": (_add_augment, _augment),
}

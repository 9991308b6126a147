"""`tunelab` entry point: one module per command, each registering a sub-parser.

User errors (TunelabError) print one line and exit 2 (a run stopped by a signal: 128 + its number);
`--debug` shows the traceback instead. SIGTERM is turned into the same clean stop as Ctrl-C.
"""
from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading

from tunelab.cli import (chat, check, compare, convert, data, eval, export, generate, merge, methods, plan, predict,
                         report, serve, train, ui)
from tunelab.errors import TunelabError

COMMANDS = {"train": train, "plan": plan, "methods": methods, "generate": generate, "chat": chat, "predict": predict,
            "eval": eval, "report": report, "compare": compare,
            "data": data, "convert": convert, "serve": serve, "merge": merge, "check": check, "export": export, "ui": ui}


# Positionals that collect a list (train/plan overrides, compare's runs): options may stand between their items.
TRAILING_LISTS = ("overrides", "runs")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tunelab", description="Fine-tune large language models.")
    parser.add_argument("--debug", action="store_true", help="show full tracebacks")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, module in COMMANDS.items():
        command = sub.add_parser(name, help=module.__doc__.strip().splitlines()[0])
        # --debug works after the command too; SUPPRESS keeps the top-level value when it is absent.
        command.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show full tracebacks")
        module.add_parser(command)
    return parser


def _quiet_libraries(command: str) -> None:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")  # read when transformers is first imported
    if command != "train":  # train validates its config first and names it just before loading the libraries
        name_deepspeed_accelerator()
    logging.basicConfig(level=logging.INFO, format="[tunelab] %(message)s", stream=sys.stderr)
    # bitsandbytes warns on import about an optional CPU kernel package (even for runs that never quantize).
    for name in ("transformers", "peft", "datasets", "accelerate", "torch", "bitsandbytes", "DeepSpeed"):
        logging.getLogger(name).setLevel(logging.ERROR)
    import warnings

    for message in HARMLESS_WARNINGS:  # by message, so a new deprecation notice still shows
        warnings.filterwarnings("ignore", message=message)


# Library warnings about what tunelab does on purpose, seen in its runs (regular expressions matched against the
# start of the message).
HARMLESS_WARNINGS = (
    r"fan_in_fan_out is set to False but the target module is `Conv1D`",  # peft fixes it for GPT-2-style layers
    r"Position ids are not supported for parameter efficient tuning",  # prompt learning; packing is off for it
    r"PiSSA changes the base weights of the model",  # tunelab saves PiSSA converted to plain LoRA
    r"Setting `save_embedding_layers` to `True`",  # added template tokens: the resized embedding is saved
    r"Could not find a config file in .* will assume that the vocabulary was not modified",  # merged temp dirs
    r"var\(\): degrees of freedom is <= 0",  # TRL's PPO statistics over a one-sample batch
    # transformers 5.23 renamed these; peft 0.21 and TRL 1.12 still call the old names (tunelab calls neither)
    r"`is_gradient_checkpointing` is deprecated",
    r"`gradient_checkpointing_enable` is deprecated",
)


def name_deepspeed_accelerator() -> None:
    """accelerate imports DeepSpeed whenever it is installed, and DeepSpeed, guessing its accelerator, prints a
    warning to stdout (where `--json` output goes). Named up front on a machine without CUDA, it stays quiet."""
    import importlib.util

    if "DS_ACCELERATOR" in os.environ or importlib.util.find_spec("deepspeed") is None:
        return
    import torch

    if not torch.cuda.is_available():
        os.environ["DS_ACCELERATOR"] = "cpu"


def parse_args(parser: argparse.ArgumentParser, argv: list[str] | None) -> argparse.Namespace:
    """argparse stops filling a positional list at the first option (`train cfg.yaml --nproc 2 train.lr=1e-4`
    left `train.lr=1e-4` unrecognized), and its parse_intermixed_args refuses sub-commands: what is left
    over joins the command's list, so options and items mix in any order."""
    args, extra = parser.parse_known_args(argv)
    trailing = next((name for name in TRAILING_LISTS if isinstance(getattr(args, name, None), list)), None)
    if extra and (trailing is None or any(item.startswith("-") for item in extra)):
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    if extra:
        getattr(args, trailing).extend(extra)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(build_parser(), argv)
    _quiet_libraries(args.command)
    previous = _terminate_as_interrupt()
    try:
        return _run(args)
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _run(args: argparse.Namespace) -> int:
    try:
        return COMMANDS[args.command].run(args) or 0
    except TunelabError as exc:
        if args.debug:
            raise
        print(f"{exc.label}: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt as exc:
        signum = exc.args[0] if exc.args and isinstance(exc.args[0], int) else signal.SIGINT
        print(f"interrupted ({signal.Signals(signum).name})", file=sys.stderr)
        return 128 + signum


def _terminate_as_interrupt():
    """SIGTERM (kill, docker stop, a scheduler's preemption) raises KeyboardInterrupt like Ctrl-C, so the
    same cleanup runs: run status, no half-written files. Training installs its own graceful handler."""
    def handler(signum, frame):
        raise KeyboardInterrupt(signum)

    if threading.current_thread() is not threading.main_thread():  # signals reach the main thread only
        return None
    return signal.signal(signal.SIGTERM, handler)


def entry() -> None:
    """The console command: `main`, then out of the process without tearing the interpreter down.

    Why: finalizing the modules a training run imports (transformers, peft, bitsandbytes, deepspeed, torch's
    dynamo and inductor) takes 1.2-1.7 s on a 2-core CPU after the work is done and saved, against 0.1 s for
    leaving at once. What the teardown would still do is done first: atexit handlers (logging's flush among
    them) and the standard streams. Where another thread still runs (a server's, a logger's) the normal exit
    waits for it as Python would."""
    from tunelab.cli.startup import console

    console()
    code = main()
    if threading.active_count() > 1:
        sys.exit(code)
    import atexit

    atexit._run_exitfuncs()  # the public API has no "run them now"; this is what interpreter exit calls
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    entry()

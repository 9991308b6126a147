"""Chat with a model in the terminal: streaming, multi-turn (/reset clears, /exit quits)."""
from __future__ import annotations

import argparse
import sys

from tunelab.cli.options import add_model_options, load_engine, settings


def add_parser(parser: argparse.ArgumentParser) -> None:
    add_model_options(parser)
    parser.add_argument("--system", default=None, help="system prompt")


def run(args: argparse.Namespace) -> int:
    engine = load_engine(args)
    start = [{"role": "system", "content": args.system}] if args.system else []
    history = list(start)
    print("chat ready — /reset clears the history, /exit quits", file=sys.stderr)
    while True:
        try:
            user = input("you> ").strip()
        except EOFError:
            print()
            return 0
        if user in ("/exit", "/quit"):
            return 0
        if user == "/reset":
            history = list(start)
            continue
        if not user:
            continue
        history.append({"role": "user", "content": user})
        print("assistant> ", end="", flush=True)
        # generated on this thread, where the model was loaded (tunelab.serve.batching.Batcher.run says why)
        answer = engine.complete(engine.chat_prompt(history), settings(args), on_text=_echo, strip_start=True)
        print()
        history.append({"role": "assistant", "content": answer.text.strip()})


def _echo(piece: str) -> None:
    print(piece, end="", flush=True)

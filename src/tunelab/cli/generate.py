"""Answer every prompt of a JSONL file (lines with `messages` or `prompt`), batched."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from tqdm.auto import tqdm

from tunelab.cli.jsonl import read_json_lines, written_whole
from tunelab.cli.options import add_model_options, load_engine, settings
from tunelab.errors import TunelabError


def add_parser(parser: argparse.ArgumentParser) -> None:
    add_model_options(parser)
    parser.add_argument("--input", required=True, help="JSONL file: one {messages: [...]} or {prompt: ...} per line")
    parser.add_argument("--output", required=True, help="JSONL file to write (input lines plus `response`)")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--system", default=None, help="system prompt for lines given as `prompt`")


def read_prompts(path: Path, system: str | None) -> list[tuple[dict, list[dict]]]:
    return [(record, _messages(record, system, where))
            for record, where in read_json_lines(path, "`messages` or `prompt`")]


def _messages(record: dict, system: str | None, where: str) -> list[dict]:
    if isinstance(record, dict) and isinstance(record.get("messages"), list):
        return record["messages"]
    if isinstance(record, dict) and isinstance(record.get("prompt"), str):
        head = [{"role": "system", "content": system}] if system else []
        return head + [{"role": "user", "content": record["prompt"]}]
    raise TunelabError(f"{where}: expected a `messages` list or a `prompt` string")


def run(args: argparse.Namespace) -> int:
    items = read_prompts(Path(args.input), args.system)
    engine = load_engine(args)
    output = Path(args.output)
    with written_whole(output) as handle:
        for start in tqdm(range(0, len(items), args.batch_size), desc="generate", unit="batch"):
            chunk = items[start : start + args.batch_size]
            answers = engine.generate([messages for _, messages in chunk], settings(args))
            for (record, _), answer in zip(chunk, answers):
                handle.write(json.dumps({**record, "response": answer}, ensure_ascii=False) + "\n")
    print(f"wrote {len(items)} answers to {output}")
    return 0

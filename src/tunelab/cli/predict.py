"""Classify every text of a JSONL file with a classification run (label + probabilities per line)."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from tqdm.auto import tqdm

from tunelab.cli.jsonl import read_json_lines, written_whole
from tunelab.errors import TunelabError


def add_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, help="run directory (or checkpoint-N) of a train.stage classify run")
    parser.add_argument("--input", required=True, help="JSONL file: one {text: ..., text_pair?: ...} per line")
    parser.add_argument("--output", required=True, help="JSONL file to write (input lines plus label, probabilities)")
    parser.add_argument("--batch-size", type=int, default=16)


def read_texts(path: Path) -> list[dict]:
    records = read_json_lines(path, "`text`")
    for record, where in records:
        if not isinstance(record, dict) or not isinstance(record.get("text"), str):
            raise TunelabError(f"{where}: expected an object with a `text` string")
    return [record for record, _ in records]


def run(args: argparse.Namespace) -> int:
    from tunelab.cli.startup import loading_libraries

    with loading_libraries():  # torch, transformers, peft
        from tunelab.models import detect_device
        from tunelab.runs import find_run, load_any
        from tunelab.serve.classifier import Classifier

    records = read_texts(Path(args.input))
    if find_run(args.model) is None:
        raise TunelabError(f"--model {args.model}: not a tunelab run directory (or checkpoint-N of one)")
    device = detect_device()
    classifier = Classifier(load_any(args.model), device)
    output = Path(args.output)
    with written_whole(output) as handle:
        for start in tqdm(range(0, len(records), args.batch_size), desc="predict", unit="batch"):
            chunk = records[start : start + args.batch_size]
            results = classifier.predict([r["text"] for r in chunk], [r.get("text_pair") for r in chunk])
            for record, result in zip(chunk, results):
                handle.write(json.dumps({**record, **result}, ensure_ascii=False) + "\n")
    print(f"wrote {len(records)} predictions to {output}")
    return 0

"""Fixed train / validation files, held out by the same rule as training's `data.val_size`."""
from __future__ import annotations

from pathlib import Path

from tunelab.data.records import source_file, write_jsonl
from tunelab.errors import TunelabError
from tunelab.training.split import split_rows

SPLIT_FILES = ("train.jsonl", "validation.jsonl")


def split_examples(examples: list[dict], val: float, seed: int) -> tuple[list[dict], list[dict]]:
    """`val` < 1 is a fraction, >= 1 a count; the same seed gives the same split, each part in the data's
    order, and at least one example stays for training."""
    if val <= 0 or (val >= 1 and val != int(val)):
        raise TunelabError(f"--val {val:g}: expected a fraction between 0 and 1 or a whole count of examples")
    if len(examples) < 2:
        where = source_file(examples[0].get("source", "data")) if examples else "data"
        raise TunelabError(f"{where}: {len(examples)} example(s); a split needs at least two")
    return split_rows(examples, val, seed)


def write_split(examples: list[dict], val: float, seed: int, directory: str | Path) -> list[tuple[Path, int]]:
    """DIR/train.jsonl and DIR/validation.jsonl as canonical records tunelab reads back: (path, count) each."""
    parts = split_examples(examples, val, seed)
    paths = [Path(directory) / name for name in SPLIT_FILES]
    return [(path, write_jsonl(path, part)) for path, part in zip(paths, parts)]


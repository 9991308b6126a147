"""Reading the JSONL inputs of the inference commands, with file:line errors, and writing their outputs whole."""
from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Iterator, TextIO

from tunelab.errors import TunelabError


def read_json_lines(path: Path, expected: str) -> list[tuple[object, str]]:
    """(record, "file:line") for each non-blank line; `expected` says what a line should hold."""
    if not path.is_file():
        raise TunelabError(f"{path}: no such file (looked in {path.resolve().parent})")
    records = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            records.append((json.loads(line), f"{path}:{number}"))
        except json.JSONDecodeError as exc:
            raise TunelabError(f"{path}:{number}: invalid JSON ({exc.msg})") from None
    if not records:
        raise TunelabError(f"{path}: file is empty (expected JSON lines with {expected})")
    return records


@contextlib.contextmanager
def written_whole(output: Path) -> Iterator[TextIO]:
    """A handle on OUTPUT.partial, renamed to OUTPUT when the block succeeds and removed when it fails, so an
    interrupted run never leaves a half-written output or a stray .partial file."""
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = output.with_name(output.name + ".partial")
    try:
        with tmp.open("w", encoding="utf-8") as handle:
            yield handle
        tmp.replace(output)
    finally:
        tmp.unlink(missing_ok=True)

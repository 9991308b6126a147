"""Reading the JSONL inputs of the inference commands, with file:line errors."""
from __future__ import annotations

import json
from pathlib import Path

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

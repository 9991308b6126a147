"""Canonical examples back to records tunelab reads, and the checks that `tunelab data` commands share.

`inspect` reports duplicates and empty answers by the same rules `clean` removes them with, so what one
command reports is what the other fixes. Output files are written whole or not at all.
"""
from __future__ import annotations

import json
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterable, Iterator

# Canonical key -> how reports name examples that have it, most specific first: KTO examples also
# carry a `label` and a `prompt`, classification examples a `text`.
KINDS: dict[str, str] = {
    "chosen": "preference pairs",
    "completion": "kto examples",
    "label": "classification",
    "prompt": "prompts",
    "messages": "conversations",
    "text": "plain text",
}


def kind_of(example: dict) -> str:
    """The canonical key that identifies what an example is (a key of KINDS)."""
    return next((key for key in KINDS if key in example), "unknown")


def to_record(example: dict) -> dict:
    """The canonical example as a record the format readers detect and convert back to the same example
    (OpenAI `messages`, `text`, TRL's prompt/chosen/rejected...); `source` is left out: the new file is the
    source now. Prompt examples keep their extra columns at the top level, where they came from."""
    record = {key: value for key, value in example.items() if key not in ("source", "extra") and value is not None}
    return {**record, **example.get("extra", {})}


def source_file(source: str) -> str:
    """'path:LINE' (or 'path:row N') -> 'path'."""
    return source.rsplit(":", 1)[0] if ":" in source else source


def normalise(text: str) -> str:
    """Whitespace runs as one space, ends trimmed: reflowed copies of a text compare equal."""
    return " ".join(text.split())


def duplicate_key(example: dict) -> str:
    """Two examples with the same key train the same thing (up to whitespace)."""
    return json.dumps(_normalised(to_record(example)), ensure_ascii=False, sort_keys=True)


def _normalised(value: object) -> object:
    if isinstance(value, str):
        return normalise(value)
    if isinstance(value, list):
        return [_normalised(item) for item in value]
    if isinstance(value, dict):
        return {key: _normalised(item) for key, item in value.items()}
    return value


def answers(example: dict) -> Iterator[str]:
    """Every assistant text of an example, in whichever canonical field holds messages."""
    for value in example.values():
        if isinstance(value, list):
            yield from (m["content"] for m in value if isinstance(m, dict) and m.get("role") == "assistant")


def has_empty_answer(example: dict) -> bool:
    """An assistant turn with no text (and no tool call) teaches the model to stop at once."""
    for value in example.values():
        if isinstance(value, list):
            for message in value:
                if isinstance(message, dict) and message.get("role") == "assistant" and not message.get("tool_calls") \
                        and not str(message.get("content") or "").strip():
                    return True
    return False


@contextmanager
def atomic_write(path: str | Path) -> Iterator[Path]:
    """A temporary path beside `path`, renamed onto it only when the block finishes without error, so a
    failure never leaves a half-written file (or replaces a good one)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent)
    os.close(handle)
    tmp = Path(name)
    try:
        yield tmp
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)


def write_jsonl(path: str | Path, examples: Iterable[dict]) -> int:
    """Write examples as JSON lines of canonical records (atomically); returns how many were written."""
    count = 0
    with atomic_write(path) as tmp, tmp.open("w", encoding="utf-8") as out:
        for example in examples:
            out.write(json.dumps(to_record(example), ensure_ascii=False) + "\n")
            count += 1
    return count


def write_json(path: str | Path, value: object) -> None:
    with atomic_write(path) as tmp:
        tmp.write_text(json.dumps(value, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")

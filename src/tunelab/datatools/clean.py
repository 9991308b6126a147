"""A cleaned copy of a dataset: duplicates, empty answers, over-long and malformed examples removed, each
removal reported with its source (file:line) and why.

The records of a single file are converted one by one, so a record with missing or non-text fields (and,
in JSON Lines, a line of broken JSON) is reported and dropped rather than stopping everything. A data
directory or builtin:NAME is read as training reads it: strictly.
"""
from __future__ import annotations

import json
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

from tunelab.data.files import Located, as_record, read_text, read_records
from tunelab.data.formats import check_format, convert_records, detect_format
from tunelab.data.loading import BUILTIN_PREFIX, load_examples
from tunelab.data.records import duplicate_key, has_empty_answer, kind_of
from tunelab.errors import TunelabError

# Reason -> what it means, in the report.
REASONS = {
    "malformed": "not a valid record of the file's format (broken JSON, missing or non-text fields)",
    "empty_answer": "an assistant turn has no text",
    "too_long": "longer than max_length in tokens (training would cut it)",
    "duplicate": "the same as an earlier example up to whitespace",
}


@dataclass
class Removal:
    source: str      # file:line of the removed record
    reason: str      # a key of REASONS
    detail: str = ""


@dataclass
class CleanResult:
    kept: list[dict]
    removed: list[Removal] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        found = Counter(removal.reason for removal in self.removed)
        return {reason: found[reason] for reason in REASONS}

    def report(self) -> dict:
        return {"kept": len(self.kept), "removed": self.counts(), "reasons": REASONS,
                "removals": [asdict(removal) for removal in self.removed]}


def read_leniently(path: str, dataset: str | None = None, format: str | None = None) -> CleanResult:
    """The examples of `path` that convert, and a `malformed` removal for each record that does not."""
    if dataset is not None or str(path).startswith(BUILTIN_PREFIX) or Path(path).is_dir():
        return CleanResult(load_examples(path, dataset, format))
    records, result = _records(Path(path))
    if not records:
        return result
    name = check_format(format) if format else _detect(records)
    for record, source in records:
        try:
            result.kept += convert_records([(record, source)], name)
        except TunelabError as exc:
            result.removed.append(Removal(source, "malformed", str(exc).removeprefix(f"{source}: ")))
    return result


def _records(path: Path) -> tuple[list[Located], CleanResult]:
    """JSON Lines line by line (a broken line is a removal); other file types as training reads them."""
    if path.suffix.lower() != ".jsonl":
        return read_records(path), CleanResult([])
    if not path.is_file():
        raise TunelabError(f"{path}: no such file (looked in {path.parent.resolve()})")
    records, result = [], CleanResult([])
    for number, line in enumerate(read_text(path).split("\n"), start=1):
        where = f"{path}:{number}"
        if not line.strip():
            continue
        try:
            records.append((as_record(json.loads(line), where), where))
        except json.JSONDecodeError as exc:
            result.removed.append(Removal(where, "malformed", f"invalid JSON ({exc.msg} at column {exc.colno})"))
        except TunelabError as exc:
            result.removed.append(Removal(where, "malformed", str(exc).removeprefix(f"{where}: ")))
    return records, result


def _detect(records: list[Located]) -> str:
    """The format of the first record whose columns say which it is (a broken first record does not decide)."""
    for record, source in records:
        try:
            return detect_format(record, source)
        except TunelabError:
            continue
    return detect_format(*records[0])  # raises, naming the first record and the columns each format expects


def clean_examples(examples: list[dict], too_long: Callable[[dict], bool] | None = None) -> CleanResult:
    """Keep the first copy of each example; drop empty answers, and over-long examples when `too_long`
    (a token count check with a tokenizer) is given."""
    result, first = CleanResult([]), {}
    for example in examples:
        source = example.get("source", "?")
        key = duplicate_key(example)
        if has_empty_answer(example):
            result.removed.append(Removal(source, "empty_answer"))
        elif too_long is not None and too_long(example):
            result.removed.append(Removal(source, "too_long"))
        elif key in first:
            result.removed.append(Removal(source, "duplicate", f"same as {first[key]}"))
        else:
            first[key] = source
            result.kept.append(example)
    return result


def clean(path: str, dataset: str | None = None, format: str | None = None, model: str | None = None,
          max_length: int | None = None) -> CleanResult:
    """Read leniently, then clean. Lengths are checked when a model (its tokenizer and template) or a
    max_length is given: the default model and max_length stand in for the one not given."""
    read = read_leniently(path, dataset, format)
    check_one_kind(read.kept, path)
    too_long = over_length(path, read.kept, model, max_length) if read.kept and (model or max_length) else None
    cleaned = clean_examples(read.kept, too_long)
    return CleanResult(cleaned.kept, read.removed + cleaned.removed)


def over_length(path: str, examples: list[dict], model: str | None, max_length: int | None) -> Callable[[dict], bool]:
    """True for examples whose rows, as the stage tokenizes them, would be longer than max_length."""
    from tunelab.datatools.inspect import FullLength, data_config, view_of  # deferred: stages import transformers

    view = view_of(data_config(path, examples, model, max_length), examples)
    length, limit = FullLength(view), view.config.train.max_length
    return lambda example: length(example) > limit


def check_one_kind(examples: list[dict], path: str) -> None:
    kinds = Counter(kind_of(example) for example in examples)
    if len(kinds) > 1:
        found = ", ".join(f"{n} {kind}" for kind, n in kinds.items())
        raise TunelabError(f"{path}: examples of different kinds ({found}) cannot share one output file; "
                           "clean each dataset on its own")

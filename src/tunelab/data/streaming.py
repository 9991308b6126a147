"""`data.streaming: true`: examples read, converted and tokenized lazily from a file larger than RAM.

Only line-based files stream (JSON Lines, plain text): one line is one record, so a record can be
read, checked and reported by its line number without holding the file. The stream has no length,
so a streamed run is sized by `train.max_steps`; the Trainer starts the stream again each epoch.
`train.max_samples` ends the stream after that many examples, and `data.train_on` applies as in memory.
"""
from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Iterator

from torch.utils.data import IterableDataset

from tunelab.data.files import Located, as_record, invalid_json
from tunelab.data.formats import check_format, convert_records, detect_format
from tunelab.data.tokenize import TRAIN_ON, TokenizeStats
from tunelab.errors import TunelabError

STREAMABLE = (".jsonl", ".txt")


def check_streamable(path: str) -> Path:
    file = Path(path).expanduser()
    if path.startswith("builtin:") or file.suffix.lower() not in STREAMABLE:
        raise TunelabError(f"data.streaming: {path} cannot be streamed; it needs a line-based file "
                           f"({', '.join(STREAMABLE)})")
    if not file.is_file():
        raise TunelabError(f"{file}: no such file (looked in {file.parent.resolve()})")
    return file


def iter_located(path: Path) -> Iterator[Located]:
    """(record, "path:LINE") for each non-blank line, read one line at a time."""
    text_file = path.suffix.lower() == ".txt"
    with path.open("rb") as handle:
        for number, raw in enumerate(handle, start=1):
            try:
                line = raw.decode("utf-8").rstrip("\r\n")
            except UnicodeDecodeError as err:
                raise TunelabError(f"{path}:{number}: not UTF-8 text (byte {err.start})") from None
            if not line.strip():
                continue
            where = f"{path}:{number}"
            if text_file:
                yield {"text": line}, where
                continue
            try:
                yield as_record(json.loads(line), where), where
            except json.JSONDecodeError as err:
                raise invalid_json(path, number, err) from None


def iter_examples(path: Path, format: str | None) -> Iterator[dict]:
    """Canonical examples, the format fixed by `format` or detected from the first record."""
    name = check_format(format) if format else None
    for record, where in iter_located(path):
        name = name or detect_format(record, where)
        yield from convert_records([(record, where)], name)


class StreamingRows(IterableDataset):
    """Training rows produced on the fly by a stage from a streamed file."""

    def __init__(self, path: str, format: str | None, stage, tokenizer):
        self.path = check_streamable(path)
        self.format, self.stage, self.tokenizer = format, stage, tokenizer
        self.stats = TokenizeStats()

    def __iter__(self):
        config = self.stage.config
        prepare = TRAIN_ON[config.data.train_on]
        for example in itertools.islice(iter_examples(self.path, self.format), config.train.max_samples or None):
            example = prepare(example)
            self.stage.check_examples([example])
            if not self.stage.skips(example, self.stats):
                yield from self.stage.tokenize_example(example, self.tokenizer, self.stats)

    def first(self) -> dict:
        """The first row, read now, so a bad file fails before the model loads and training starts."""
        for row in self:
            self.stats.__dict__.update(vars(TokenizeStats()))  # the run's counts start from zero
            return row
        skipped = f" ({self.stats.empty} skipped with an empty assistant answer)" if self.stats.empty else ""
        raise TunelabError(f"{self.path}: no examples found{skipped}")

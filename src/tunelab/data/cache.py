"""Tokenized data cached on disk, so a second run over the same data starts at once.

The key covers everything the rows depend on: the data files' hashes, dataset names and format,
the stage, the tokenizer (its full serialized form), the chat template and `train.max_length`.
Rows are stored as flat int32 arrays plus offsets in an `.npz` read with `allow_pickle=False`
(no pickle), next to the tokenization stats as JSON.
"""
from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import asdict
from pathlib import Path
from typing import Callable

import numpy as np

from tunelab.data.tokenize import TokenizeStats
from tunelab.models.cache import atomic_directory, cache_root

log = logging.getLogger("tunelab")
FORMAT_VERSION = 3  # 2: sft skips examples with an empty answer; 3: tools/reasoning, turn-by-turn rows
FIELDS = ("input_ids", "labels")


def tokenizer_fingerprint(tokenizer) -> str:
    backend = getattr(tokenizer, "backend_tokenizer", None)
    text = backend.to_str() if backend is not None else f"{tokenizer.name_or_path}:{len(tokenizer)}"
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def cache_key(parts: dict) -> str:
    return hashlib.sha256(json.dumps({"v": FORMAT_VERSION, **parts}, sort_keys=True).encode()).hexdigest()[:24]


def _save(folder: Path, rows: list[dict], stats: TokenizeStats) -> None:
    lengths = np.array([len(row["input_ids"]) for row in rows], dtype=np.int64)
    arrays = {name: np.fromiter((t for row in rows for t in row[name]), dtype=np.int32, count=int(lengths.sum()))
              for name in FIELDS}
    np.savez(folder / "rows.npz", lengths=lengths, **arrays)
    (folder / "stats.json").write_text(json.dumps(asdict(stats)), encoding="utf-8")


def _load(folder: Path) -> tuple[list[dict], TokenizeStats]:
    with np.load(folder / "rows.npz", allow_pickle=False) as data:
        offsets = np.concatenate([[0], np.cumsum(data["lengths"])])
        columns = {name: data[name].tolist() for name in FIELDS}
    rows = []
    for start, end in zip(offsets[:-1], offsets[1:]):
        row = {name: columns[name][start:end] for name in FIELDS}
        row["attention_mask"] = [1] * (end - start)
        rows.append(row)
    stats = TokenizeStats(**json.loads((folder / "stats.json").read_text(encoding="utf-8")))
    return rows, stats


def cached_rows(parts: dict, build: Callable[[], tuple[list[dict], TokenizeStats]]):
    """Rows and stats for `parts` from the cache, or built by `build()` and stored."""
    folder = cache_root() / "tokenized" / cache_key(parts)
    if (folder / "rows.npz").is_file():
        try:
            rows, stats = _load(folder)
            log.info("tokenized data from the cache (%s)", folder)
            return rows, stats
        except (OSError, ValueError, KeyError, TypeError) as exc:  # a damaged entry is rebuilt, not fatal
            log.info("ignoring a damaged tokenized-data cache entry %s (%s)", folder, exc)
    rows, stats = build()
    try:
        with atomic_directory(folder) as tmp:
            _save(tmp, rows, stats)
    except OSError as exc:  # a read-only or full cache must not stop training
        log.info("could not cache the tokenized data in %s (%s)", folder, exc)
    return rows, stats

"""Checkpoints that resume can trust.

The Trainer writes RUN/checkpoint-N/ file by file; a kill half way leaves a folder that looks like a
checkpoint but is not one. transformers has no completion marker (its atomic "tmp-checkpoint" rename was
reverted), so we add one: when a save has returned, every file in the folder is flushed to disk and
COMPLETE_MARKER is written last, by an atomic rename. Resume only trusts marked folders, and pruning
(which the Trainer would do before the new folder is complete) happens here, after the marker.
"""
from __future__ import annotations

import json
import logging
import os
import shutil
import time
from pathlib import Path

log = logging.getLogger("tunelab")

COMPLETE_MARKER = "tunelab_complete.json"
PREFIX = "checkpoint-"


def step_of(path: Path) -> int:
    return int(path.name[len(PREFIX):])


def all_checkpoints(run_path: Path) -> list[Path]:
    """checkpoint-N folders, oldest step first, complete or not."""
    found = [p for p in Path(run_path).glob(PREFIX + "*") if p.is_dir() and p.name[len(PREFIX):].isdigit()]
    return sorted(found, key=step_of)


def is_complete(path: Path) -> bool:
    return (Path(path) / COMPLETE_MARKER).is_file()


def complete_checkpoints(run_path: Path) -> list[Path]:
    return [p for p in all_checkpoints(run_path) if is_complete(p)]


def latest_complete(run_path: Path) -> Path | None:
    complete = complete_checkpoints(run_path)
    return complete[-1] if complete else None


def mark_complete(path: Path, step: int) -> None:
    """Flush the checkpoint's files, then write the marker atomically (a kill leaves it absent or whole)."""
    path = Path(path)
    for item in path.rglob("*"):
        if item.is_file():
            _fsync(item)
    tmp = path / (COMPLETE_MARKER + ".tmp")
    tmp.write_text(json.dumps({"step": step, "saved_at": time.strftime("%Y-%m-%dT%H:%M:%S%z")}) + "\n",
                   encoding="utf-8")
    _fsync(tmp)
    tmp.replace(path / COMPLETE_MARKER)
    _fsync_dir(path)


def prune(run_path: Path, limit: int | None, keep: Path | None = None) -> None:
    """Keep the newest `limit` complete checkpoints (and `keep`, the best one); drop older ones.

    Incomplete folders older than the newest complete one are leftovers of a kill: dropped too.
    """
    complete = complete_checkpoints(run_path)
    if not complete:
        return
    newest = step_of(complete[-1])
    doomed = [p for p in all_checkpoints(run_path) if not is_complete(p) and step_of(p) < newest]
    if limit is not None:
        doomed += complete[:-limit] if len(complete) > limit else []
    for path in doomed:
        if keep is not None and Path(keep).resolve() == path.resolve():
            continue
        shutil.rmtree(path, ignore_errors=True)


def drop_incomplete(run_path: Path) -> None:
    """Before resuming: folders a kill left half-written are removed, saying so."""
    for path in all_checkpoints(run_path):
        if not is_complete(path):
            log.info("removing %s: it was not completely written (the run stopped while saving it)", path.name)
            shutil.rmtree(path, ignore_errors=True)


def _fsync(path: Path) -> None:
    with open(path, "rb") as handle:
        os.fsync(handle.fileno())


def _fsync_dir(path: Path) -> None:
    if os.name != "posix":  # directories cannot be opened for fsync on Windows
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)

"""The on-disk cache of converted models (`TUNELAB_CACHE`, default ~/.cache/tunelab)."""
from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator


def cache_root() -> Path:
    return Path(os.environ.get("TUNELAB_CACHE", Path.home() / ".cache" / "tunelab")).expanduser()


def file_fingerprint(path: Path) -> str:
    """Cheap identity of a large file: size, mtime and the hash of its first and last MiB."""
    stat = path.stat()
    digest = hashlib.sha256(f"{stat.st_size}".encode())
    with path.open("rb") as handle:
        digest.update(handle.read(1 << 20))
        handle.seek(max(0, stat.st_size - (1 << 20)))
        digest.update(handle.read(1 << 20))
    return digest.hexdigest()[:16]


@contextmanager
def atomic_directory(target: Path) -> Iterator[Path]:
    """Yield a temporary directory that becomes `target` only if the block completes.

    Entries are content-addressed, so when several processes (the ranks of one run) build the same one at
    once, whichever renames first wins and the others drop their copy; a reader never sees a half folder."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    old = None
    try:
        yield tmp
        if target.exists():  # a damaged entry being rebuilt: moved aside, not deleted under a reader
            old = Path(tempfile.mkdtemp(prefix=f".{target.name}.old.", dir=target.parent))
            try:
                target.rename(old / "entry")
            except OSError:  # another process moved or replaced it first
                pass
        try:
            tmp.rename(target)
        except OSError:
            if not target.is_dir():
                raise
    finally:
        for leftover in (tmp, old):
            if leftover is not None and leftover.exists():
                shutil.rmtree(leftover, ignore_errors=True)

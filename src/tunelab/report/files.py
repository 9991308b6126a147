"""Writing a page and its images as one unit: a failure half way leaves no new file behind."""
from __future__ import annotations

from pathlib import Path


class StagedFiles:
    """Hands out `NAME.tmp` paths; on success renames them all into place, on error deletes them.

    Each rename is atomic; the set of them is not, but renames cannot fail half-written, so a
    reader sees either the old file or the complete new one.
    """

    def __init__(self) -> None:
        self.pending: list[tuple[Path, Path]] = []

    def path(self, final: Path) -> Path:
        temporary = final.with_name(final.name + ".tmp")
        self.pending.append((temporary, final))
        return temporary

    def __enter__(self) -> StagedFiles:
        return self

    def __exit__(self, exc_type, exc, traceback) -> None:
        if exc_type is None:
            for temporary, final in self.pending:
                temporary.replace(final)
        else:
            for temporary, _ in self.pending:
                temporary.unlink(missing_ok=True)

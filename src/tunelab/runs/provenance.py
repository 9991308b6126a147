"""Where a run came from: library versions, git SHA, data hashes, and the base model's fingerprint.

The fingerprint is checked whenever the adapter is loaded onto a base, so an adapter is never
silently applied to different weights.
"""
from __future__ import annotations

import hashlib
import importlib.metadata
import subprocess
from pathlib import Path

from tunelab.models.cache import file_fingerprint

LIBRARIES = ("tunelab", "torch", "transformers", "peft", "accelerate", "datasets", "safetensors")


def library_versions() -> dict[str, str]:
    versions = {}
    for name in LIBRARIES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def git_sha() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
            cwd=Path(__file__).resolve().parent,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def sources_hashes(data) -> dict[str, str]:
    """`data_hashes` of every source of a `data:` section (data.path, or each data.mix source)."""
    return {file: digest for source in data.sources() for file, digest in data_hashes(source.path).items()}


def data_hashes(path: str) -> dict[str, str]:
    """sha256 of every local data file the run read (a file, or every file of a data directory); none for a hub
    data set (hf:ORG/NAME)."""
    if path.startswith("builtin:"):
        root = Path(__file__).resolve().parents[1] / "builtin_data"
    else:
        root = Path(path).expanduser()
    if not root.exists():
        return {}
    files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
    return {str(f): hashlib.sha256(f.read_bytes()).hexdigest() for f in files}


def base_fingerprint(location: str) -> str | None:
    """Fingerprint of a local base model's weights (None for hub ids not yet downloaded)."""
    folder = Path(location)
    weights = sorted(folder.glob("*.safetensors")) + sorted(folder.glob("*.bin"))
    if not weights:
        return None
    digest = hashlib.sha256()
    for file in weights:
        digest.update(file.name.encode() + file_fingerprint(file).encode())
    return digest.hexdigest()[:16]

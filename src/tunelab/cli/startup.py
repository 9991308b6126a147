"""Start-up of the console command: the libraries a run imports, loaded at less cost.

Why: importing torch, transformers, peft and the Trainer takes 3-4 s on a 2-core CPU, and a third of that was
not the import itself. Measured (AMD EPYC, 2 cores, `tunelab train` on the default model):
- Python's cycle collector ran nine full collections, each over the ~500,000 objects the imports create and
  that live as long as the process: 1.5 s of the process, 1.8 s with the young generations. Collecting is
  paused while the libraries load, and what they created is then frozen (`gc.freeze`: left out of every later
  collection, as one does before forking workers); in total 0.13 s.
- peft imports bitsandbytes when it is installed, and bitsandbytes imports torch's inductor compiler: 0.7-0.9 s
  for runs that never quantize. A run whose config, and whose base model's own config.json, need nothing from
  it is started with bitsandbytes marked absent (`sys.modules[name] = None`, the documented way to make an
  import fail), so peft and transformers take it as not installed.

Only the console process does this (`console()`, called by the entry point), around the imports of `train`,
`eval`, `predict` and `serve` (bitsandbytes is left out by `train` only: it alone knows its whole run from the
config); a test or a program that calls `main()` in its own process keeps its collector and its imports as they
were.
"""
from __future__ import annotations

import gc
import json
import sys
from contextlib import contextmanager
from pathlib import Path

_CONSOLE = False  # set by console(): this process is the `tunelab` command


def console() -> None:
    """This process is the `tunelab` command itself, started for one command and left when it is done."""
    global _CONSOLE
    _CONSOLE = True


@contextmanager
def loading_libraries(config=None):
    """Around the import of the training stack. `config`: the run's config, when known (bitsandbytes is left
    out where nothing in it, or in its base model, needs it)."""
    if not _CONSOLE:
        yield
        return
    if config is not None and not needs_bitsandbytes(config):
        sys.modules.setdefault("bitsandbytes", None)
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        gc.enable()


def needs_bitsandbytes(config) -> bool:
    """A config value that needs the package (QLoRA, the 8-bit optimizers), or a base model that is stored
    quantized by it; True where that cannot be told without loading anything (a hub id, a run directory)."""
    from tunelab.config.keys import chosen_backends

    if any(package == "bitsandbytes" for _, _, package in chosen_backends(config)):
        return True
    return not _plain_base(config.model.path, config.model.gguf_file)


def _plain_base(path: str, gguf_file: str | None) -> bool:
    """The base model is known to be stored without bitsandbytes quantization."""
    from tunelab.models.sources import BUILTIN_MODELS

    if path in BUILTIN_MODELS or path.endswith(".gguf") or gguf_file:  # converted to a plain safetensors model
        return True
    found = Path(path).expanduser() / "config.json"
    if not found.is_file():
        return False
    try:
        quantization = json.loads(found.read_text(encoding="utf-8")).get("quantization_config")
    except (OSError, ValueError, AttributeError):
        return False
    return quantization is None

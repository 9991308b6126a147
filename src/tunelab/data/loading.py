"""The one entry point the rest of tunelab uses to turn user data into canonical examples."""

from __future__ import annotations

from pathlib import Path

from tunelab.data.dataset_info import INFO_FILE, load_datasets, read_index
from tunelab.data.files import read_records
from tunelab.data.formats import check_format, convert_records, shown
from tunelab.data.hub import HUB_PREFIX, hub_records
from tunelab.errors import TunelabError

BUILTIN_PREFIX = "builtin:"
# Shipped with the package (a LLaMA-Factory style directory); found next to this package, not via cwd.
BUILTIN_DIR = Path(__file__).resolve().parent.parent / "builtin_data"


def load_examples(path: str, dataset: str | None = None, format: str | None = None, *, max_samples: int = 0,
                  split: str = "train", subset: str | None = None) -> list[dict]:
    """path: a data file, or a directory with dataset_info.json (then `dataset` is required,
    comma-separated names allowed), or 'builtin:NAME' (NAME looked up in the package directory
    src/tunelab/builtin_data/, which has a LLaMA-Factory dataset_info.json), or 'hf:ORG/NAME' (a Hugging Face
    Hub data set: its `split`, of configuration `subset`). Returns canonical examples.

    `format` (alpaca|sharegpt|messages|text) forces a format; otherwise dataset_info's formatting or
    auto-detection from the first record decides. `max_samples` > 0 keeps the first that many records of each
    file or dataset name (`train.max_samples`).
    """
    if format is not None:
        check_format(format)
    path = str(path)
    if path.startswith(HUB_PREFIX):
        _no_dataset_name(path, dataset)
        records = hub_records(path[len(HUB_PREFIX):], subset, split, path,
                              "download the data into a local file and set data.path to it", max_samples)
        examples = convert_records(records, format)
    elif path.startswith(BUILTIN_PREFIX):
        examples = load_datasets(BUILTIN_DIR, path[len(BUILTIN_PREFIX):] or dataset or "", format, max_samples)
    elif Path(path).is_dir():
        examples = _load_directory(Path(path), dataset, format, max_samples)
    else:
        _no_dataset_name(path, dataset)
        records = read_records(path)
        examples = convert_records(records[:max_samples] if max_samples else records, format)
    if not examples:
        raise TunelabError(f"{path}: no examples found")
    return examples


def load_sources(data, max_samples: int = 0) -> list[list[dict]]:
    """The examples of each source of a `data:` section (config.data.DataConfig): data.path, or each data.mix
    source in order."""
    return [load_examples(source.path, source.dataset, source.format, max_samples=max_samples, split=source.split,
                          subset=source.subset) for source in data.sources()]


def _no_dataset_name(path: str, dataset: str | None) -> None:
    if dataset is not None:
        raise TunelabError(f"{path}: a dataset name ('{dataset}') only applies to a directory with {INFO_FILE}")


def _load_directory(directory: Path, dataset: str | None, format: str | None, max_samples: int) -> list[dict]:
    if dataset is None:
        index = read_index(directory)
        available = shown(index.entries) or "none"
        raise TunelabError(f"{index.path}: choose a dataset from this directory (available: {available})")
    return load_datasets(directory, dataset, format, max_samples)

"""The one entry point the rest of tunelab uses to turn user data into canonical examples."""

from __future__ import annotations

from pathlib import Path

from tunelab.data.dataset_info import INFO_FILE, load_datasets, read_index
from tunelab.data.files import read_records
from tunelab.data.formats import check_format, convert_records, shown
from tunelab.errors import TunelabError

BUILTIN_PREFIX = "builtin:"
# Shipped with the package (a LLaMA-Factory style directory); found next to this package, not via cwd.
BUILTIN_DIR = Path(__file__).resolve().parent.parent / "builtin_data"


def load_examples(path: str, dataset: str | None = None, format: str | None = None) -> list[dict]:
    """path: a data file, or a directory with dataset_info.json (then `dataset` is required,
    comma-separated names allowed), or 'builtin:NAME' (NAME looked up in the package directory
    src/tunelab/builtin_data/, which has a LLaMA-Factory dataset_info.json). Returns canonical examples.

    `format` (alpaca|sharegpt|messages|text) forces a format; otherwise dataset_info's formatting or
    auto-detection from the first record decides.
    """
    if format is not None:
        check_format(format)
    path = str(path)
    if path.startswith(BUILTIN_PREFIX):
        examples = load_datasets(BUILTIN_DIR, path[len(BUILTIN_PREFIX):] or dataset or "", format)
    elif Path(path).is_dir():
        examples = _load_directory(Path(path), dataset, format)
    else:
        if dataset is not None:
            raise TunelabError(f"{path}: a dataset name ('{dataset}') only applies to a directory with "
                               f"{INFO_FILE}")
        examples = convert_records(read_records(path), format)
    if not examples:
        raise TunelabError(f"{path}: no examples found")
    return examples


def _load_directory(directory: Path, dataset: str | None, format: str | None) -> list[dict]:
    if dataset is None:
        index = read_index(directory)
        available = shown(index.entries) or "none"
        raise TunelabError(f"{index.path}: choose a dataset from this directory (available: {available})")
    return load_datasets(directory, dataset, format)

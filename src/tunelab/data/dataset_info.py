"""LLaMA-Factory style data directories: a dataset_info.json index naming files and their column layout.

Spec: LLaMA-Factory's data/README.md. Directories prepared for LLaMA-Factory must work unchanged.
"""

from __future__ import annotations

import difflib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tunelab.data.files import READERS, Located, read_records
from tunelab.data.formats import DEFAULT_SPECS, check_format, convert_records, detect_format, shown
from tunelab.data.hub import hub_records
from tunelab.errors import TunelabError

INFO_FILE = "dataset_info.json"

# Column keys of features this stage cannot train on yet -> what to call them in the error.
UNSUPPORTED_COLUMNS = {"images": "image data", "videos": "video data", "audios": "audio data"}

# Formats whose column names default to LLaMA-Factory's for the entry's "formatting" (alpaca unless said).
PAIRED_FORMATS = ("preference", "kto")

# Remote sources other than the Hugging Face Hub: tunelab never downloads from them.
OTHER_REMOTES = ("ms_hub_url", "om_hub_url", "script_url", "cloud_file_name")


@dataclass
class DatasetIndex:
    path: Path  # the dataset_info.json file
    entries: dict[str, dict[str, Any]]
    lines: dict[str, int]  # entry name -> line it is defined on, for error messages

    def where(self, name: str) -> str:
        return f"{self.path}:{self.lines.get(name, 1)}: dataset {name!r}"


def read_index(directory: Path) -> DatasetIndex:
    path = directory / INFO_FILE
    if not path.is_file():
        raise TunelabError(f"{path}: no such file (a data directory needs a {INFO_FILE}; or pass a data file)")
    text = path.read_text(encoding="utf-8", errors="replace")
    try:
        entries = json.loads(text)
    except json.JSONDecodeError as err:
        raise TunelabError(f"{path}:{err.lineno}: invalid JSON ({err.msg} at column {err.colno})") from None
    if not isinstance(entries, dict):
        raise TunelabError(f"{path}: expected a JSON object mapping dataset names to their settings")
    return DatasetIndex(path, entries, {name: _line_of(text, name) for name in entries})


def _line_of(text: str, name: str) -> int:
    match = re.search(re.escape(json.dumps(name)) + r"\s*:", text)
    return text.count("\n", 0, match.start()) + 1 if match else 1


def select(index: DatasetIndex, names: str) -> list[str]:
    """Split comma-separated names and check each exists, suggesting a close match if not."""
    wanted = [name.strip() for name in names.split(",") if name.strip()]
    available = shown(index.entries) or "none"
    if not wanted:
        raise TunelabError(f"{index.path}: no dataset name given (available: {available})")
    for name in wanted:
        if name not in index.entries:
            close = difflib.get_close_matches(name, list(index.entries), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise TunelabError(f"unknown dataset {name!r} in {index.path} (available: {available}){hint}")
    return wanted


def load_datasets(directory: Path, names: str, format: str | None = None, max_samples: int = 0) -> list[dict]:
    """Load the comma-separated datasets of a data directory, concatenated in the order given; at most
    `max_samples` examples from each (`train.max_samples`, 0: all)."""
    index = read_index(directory)
    examples: list[dict] = []
    for name in select(index, names):
        examples += load_entry(index, name, format, max_samples)
    return examples


def load_entry(index: DatasetIndex, name: str, format: str | None = None, max_samples: int = 0) -> list[dict]:
    entry = index.entries[name]
    where = index.where(name)
    _check_entry(entry, where)
    records = _entry_records(index.path.parent, entry, where, max_samples)
    if "num_samples" in entry:
        records = records[: entry["num_samples"]]
    if max_samples:  # after num_samples, as LLaMA-Factory caps each dataset: the first ones in file order
        records = records[:max_samples]
    columns = {**entry.get("columns", {}), **entry.get("tags", {})}
    chosen = format or _pick_format(entry, columns, records, where)
    return convert_records(records, check_format(chosen), _overrides(entry, chosen, columns))


def _overrides(entry: dict, format: str, columns: dict) -> dict:
    """Preference/KTO entries name columns as LLaMA-Factory does for their formatting (e.g. 'prompt' is the
    alpaca 'instruction' column), so start from that formatting's defaults."""
    if format not in PAIRED_FORMATS:
        return columns
    return {**DEFAULT_SPECS.get(entry.get("formatting", "alpaca"), {}), **columns}


def _check_entry(entry: Any, where: str) -> None:
    _check_types(entry, where)
    columns = entry.get("columns", {})
    if entry.get("ranking") and "kto_tag" in columns:
        raise TunelabError(f"{where}: \"ranking\": true (paired preference data) and a 'kto_tag' column "
                           "(KTO data) cannot both be set")
    if not entry.get("ranking") and ("chosen" in columns or "rejected" in columns):
        raise TunelabError(f"{where}: columns 'chosen'/'rejected' are preference data; add \"ranking\": true")
    for column, what in UNSUPPORTED_COLUMNS.items():
        if column in columns:
            raise TunelabError(f"{where}: column '{column}' means {what}, not supported by this stage yet")
    samples = entry.get("num_samples", 1)
    if not isinstance(samples, int) or isinstance(samples, bool) or samples < 1:
        raise TunelabError(f"{where}: num_samples must be a positive integer, got {samples!r}")


# Entry keys whose values are text, and those mapping names to column names (or role tags).
TEXT_KEYS = ("file_name", "hf_hub_url", "formatting", "subset", "split")
MAPPING_KEYS = ("columns", "tags")


def _check_types(entry: Any, where: str) -> None:
    if not isinstance(entry, dict):
        raise TunelabError(f"{where}: expected an object with file_name, formatting, columns, ...")
    for key in TEXT_KEYS:
        if not isinstance(entry.get(key, ""), str):
            raise TunelabError(f"{where}: \"{key}\" must be text, got {type(entry[key]).__name__}")
    for key in MAPPING_KEYS:
        value = entry.get(key, {})
        if not isinstance(value, dict) or not all(isinstance(name, str) for name in value.values()):
            raise TunelabError(f"{where}: '{key}' must be an object mapping names to text (column names, role tags)")


def _pick_format(entry: dict, columns: dict, records: list[Located], where: str) -> str:
    """LLaMA-Factory's 'formatting' (default alpaca); pretraining text is alpaca with only a prompt column.
    Ranking entries are preference data and entries with a kto_tag column KTO data, whatever the formatting."""
    if "formatting" in entry and entry["formatting"] not in DEFAULT_SPECS:
        supported = ", ".join(DEFAULT_SPECS)
        raise TunelabError(f"{where}: unknown formatting {entry['formatting']!r} (supported: {supported})")
    if entry.get("ranking"):
        return "preference"
    if "kto_tag" in columns:
        return "kto"
    if "formatting" in entry:
        return entry["formatting"]
    if not records:
        return "alpaca"
    first = records[0][0]
    alpaca = {**DEFAULT_SPECS["alpaca"], **columns}
    if "prompt" in columns and "response" not in columns and alpaca["response"] not in first:
        return "text"  # pretraining text, e.g. c4_demo: {"columns": {"prompt": "text"}}
    if columns or alpaca["prompt"] in first or alpaca["response"] in first:
        return "alpaca"  # LLaMA-Factory's default formatting
    return detect_format(*records[0])  # sharegpt/messages/text data registered without "formatting"


def _entry_records(directory: Path, entry: dict, where: str, max_samples: int) -> list[Located]:
    if "file_name" in entry:  # a local copy wins over any hub url: it works offline
        return _local_records(directory / entry["file_name"], where)
    if "hf_hub_url" in entry:  # only the rows kept are read from a hub split, which may be large
        first = min((n for n in (max_samples, entry.get("num_samples", 0)) if n), default=0)
        return hub_records(entry["hf_hub_url"], entry.get("subset"), entry.get("split", "train"), where,
                           'download the data into a local file and set "file_name"', first)
    remote = next((key for key in OTHER_REMOTES if key in entry), None)
    if remote:
        raise TunelabError(f"{where}: '{remote}' sources are not supported; download the data into a local "
                           f"file and set \"file_name\"")
    raise TunelabError(f"{where}: needs \"file_name\" (a file or folder next to {INFO_FILE}) or \"hf_hub_url\"")


def _local_records(path: Path, where: str) -> list[Located]:
    if not path.is_dir():
        return read_records(path)
    files = sorted(p for p in path.iterdir() if p.suffix.lower() in READERS and p.is_file())
    if not files:
        raise TunelabError(f"{where}: folder {path} has no data files ({', '.join(READERS)})")
    return [located for file in files for located in read_records(file)]

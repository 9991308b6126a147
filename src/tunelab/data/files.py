"""Read user data files into raw records, each tagged with where it came from ("path:LINE").

JSON and JSON Lines are parsed by hand with the `json` module rather than `datasets.load_dataset`:
we need the line number of every record so that an error can point at the exact spot in the file.
"""

from __future__ import annotations

import csv
import io
import json
import re
from pathlib import Path
from typing import Any, Callable

from tunelab.errors import TunelabError

Record = dict[str, Any]
Located = tuple[Record, str]  # (record, "path:LINE")

# The whitespace the json module itself skips between tokens.
_WS = re.compile(r"[ \t\n\r]*")


def read_records(path: str | Path) -> list[Located]:
    """Read a .json/.jsonl/.csv/.parquet/.txt file; a missing, empty or broken file is a TunelabError."""
    path = Path(path)
    reader = READERS.get(path.suffix.lower())
    if reader is None:
        supported = ", ".join(READERS)
        raise TunelabError(f"{path}: unsupported file type '{path.suffix}' (supported: {supported})")
    if not path.is_file():
        raise TunelabError(f"{path}: no such file (looked in {path.parent.resolve()})")
    records = reader(path)
    if not records:
        raise TunelabError(f"{path}: file has no records")
    return records


def read_text(path: Path) -> str:
    data = path.read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise TunelabError(f"{path}: not UTF-8 text (byte {err.start})") from None
    text = text.removeprefix("\ufeff")  # editors on Windows like to add a byte-order mark
    if not text.strip():
        raise TunelabError(f"{path}: file is empty")
    return text


def as_record(value: Any, where: str) -> Record:
    if not isinstance(value, dict):
        raise TunelabError(f"{where}: expected a JSON object, got {type(value).__name__}")
    return value


def invalid_json(path: Path, line: int, err: json.JSONDecodeError) -> TunelabError:
    return TunelabError(f"{path}:{line}: invalid JSON ({err.msg} at column {err.colno})")


def _read_json(path: Path) -> list[Located]:
    text = read_text(path)
    start = _WS.match(text).end()
    if text.startswith("[", start):
        return _walk_array(path, text, start + 1)
    where = f"{path}:{_line_at(text, start)}"
    try:  # a single (possibly pretty-printed) object
        return [(as_record(json.loads(text), where), where)]
    except json.JSONDecodeError:
        return _parse_lines(path, text)  # several objects: JSON Lines content in a .json file


def _line_at(text: str, pos: int) -> int:
    return text.count("\n", 0, pos) + 1


def _walk_array(path: Path, text: str, pos: int) -> list[Located]:
    """Decode a JSON array element by element, so each record knows the line it starts on."""
    decoder = json.JSONDecoder()
    records: list[Located] = []
    line, counted = 1, 0  # line number at offset `counted`; counted incrementally to stay linear
    pos = _WS.match(text, pos).end()
    if text.startswith("]", pos):
        return _expect_end(path, text, pos + 1, records)
    while True:
        line, counted = line + text.count("\n", counted, pos), pos
        try:
            value, pos = decoder.raw_decode(text, pos)
        except json.JSONDecodeError as err:
            raise invalid_json(path, err.lineno, err) from None
        where = f"{path}:{line}"
        records.append((as_record(value, where), where))
        pos = _WS.match(text, pos).end()
        if text.startswith("]", pos):
            return _expect_end(path, text, pos + 1, records)
        if not text.startswith(",", pos):
            line = _line_at(text, pos)
            raise TunelabError(f"{path}:{line}: invalid JSON (expected ',' or ']' after an element)")
        pos = _WS.match(text, pos + 1).end()


def _expect_end(path: Path, text: str, pos: int, records: list[Located]) -> list[Located]:
    pos = _WS.match(text, pos).end()
    if pos != len(text):
        raise TunelabError(f"{path}:{_line_at(text, pos)}: invalid JSON (extra data after the closing ']')")
    return records


def _read_jsonl(path: Path) -> list[Located]:
    return _parse_lines(path, read_text(path))


def _parse_lines(path: Path, text: str) -> list[Located]:
    records: list[Located] = []
    # split("\n"), not splitlines(): the latter also splits on characters that may sit inside JSON strings
    for number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError as err:
            raise invalid_json(path, number, err) from None
        where = f"{path}:{number}"
        records.append((as_record(value, where), where))
    return records


def _read_csv(path: Path) -> list[Located]:
    # The default limit (128 KiB per field) is too small for long documents or JSON-encoded conversations.
    csv.field_size_limit(2**31 - 1)
    reader = csv.reader(io.StringIO(read_text(path), newline=""))
    try:
        header = next(reader)
        records: list[Located] = []
        start = reader.line_num + 1  # a quoted field may span lines: number rows by their first line
        for row in reader:
            if row:
                records.append((_csv_record(path, start, header, row), f"{path}:{start}"))
            start = reader.line_num + 1
    except csv.Error as err:
        raise TunelabError(f"{path}:{reader.line_num}: invalid CSV ({err})") from None
    return records


def _csv_record(path: Path, line: int, header: list[str], row: list[str]) -> Record:
    if len(row) != len(header):
        raise TunelabError(
            f"{path}:{line}: expected {len(header)} comma-separated values (as in the header), got {len(row)}"
        )
    return dict(zip(header, row))


def _read_parquet(path: Path) -> list[Located]:
    import pyarrow.parquet as pq  # deferred: pyarrow is slow to import and only parquet needs it

    try:
        rows = pq.read_table(path).to_pylist()
    except Exception as err:  # pyarrow raises several unrelated types for a corrupt file
        raise TunelabError(f"{path}: not a readable parquet file ({err})") from None
    return [(row, f"{path}:row {number}") for number, row in enumerate(rows, start=1)]


def _read_txt(path: Path) -> list[Located]:
    lines = enumerate(read_text(path).split("\n"), start=1)
    return [({"text": line.rstrip("\r")}, f"{path}:{n}") for n, line in lines if line.strip()]


READERS: dict[str, Callable[[Path], list[Located]]] = {
    ".json": _read_json,
    ".jsonl": _read_jsonl,
    ".csv": _read_csv,
    ".parquet": _read_parquet,
    ".txt": _read_txt,
}

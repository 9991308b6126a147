"""read_records: every supported file type, line numbers, and clean errors for bad files."""

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tunelab.data.files import read_records
from tunelab.errors import TunelabError


def write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def lines_of(located):
    return [source.rsplit(":", 1)[1] for _, source in located]


def test_json_array_records_know_their_starting_line(tmp_path):
    path = write(tmp_path, "a.json", '[\n  {"a": 1},\n\n  {\n    "a": 2\n  }, {"a": 3}\n]\n')
    located = read_records(path)
    assert [record["a"] for record, _ in located] == [1, 2, 3]
    assert lines_of(located) == ["2", "4", "6"]
    assert located[0][1] == f"{path}:2"


def test_json_file_with_json_lines_content(tmp_path):
    path = write(tmp_path, "a.json", '{"a": 1}\n\n{"a": 2}\n')
    assert lines_of(read_records(path)) == ["1", "3"]


def test_jsonl_skips_blank_lines_and_keeps_numbers(tmp_path):
    path = write(tmp_path, "a.jsonl", '\n{"a": 1}\r\n\n{"a": "x\\u2028y"}\n')
    located = read_records(path)
    assert lines_of(located) == ["2", "4"]
    assert located[1][0]["a"] == "x\u2028y"


def test_csv_rows_are_numbered_by_their_first_line(tmp_path):
    path = write(tmp_path, "a.csv", 'q,a\n1,"two\nlines"\n\n3,4\n')
    located = read_records(path)
    assert [record for record, _ in located] == [{"q": "1", "a": "two\nlines"}, {"q": "3", "a": "4"}]
    assert lines_of(located) == ["2", "5"]


def test_parquet_rows(tmp_path):
    path = tmp_path / "a.parquet"
    pq.write_table(pa.table({"text": ["one", "two"]}), path)
    located = read_records(path)
    assert located == [({"text": "one"}, f"{path}:row 1"), ({"text": "two"}, f"{path}:row 2")]


def test_txt_is_one_text_record_per_non_empty_line(tmp_path):
    path = write(tmp_path, "a.txt", "first\n\n  \nsecond\r\n")
    assert read_records(path) == [({"text": "first"}, f"{path}:1"), ({"text": "second"}, f"{path}:4")]


@pytest.mark.parametrize(
    ("name", "text", "expected"),
    [
        ("bad.jsonl", '{"a": 1}\n{"a": 2,}\n', "bad.jsonl:2: invalid JSON ("),
        ("bad.json", '[\n  {"a": 1},\n  {"a": 2\n  "b": 3}\n]', "bad.json:4: invalid JSON ("),
        ("bad.json", '[{"a": 1}\n {"a": 2}]', "bad.json:2: invalid JSON (expected ',' or ']'"),
        ("bad.json", '[{"a": 1}]\n[]', "bad.json:2: invalid JSON (extra data"),
        ("list.jsonl", '{"a": 1}\n[1, 2]\n', "list.jsonl:2: expected a JSON object, got list"),
        ("empty.json", " \n\n", "empty.json: file is empty"),
        ("empty.jsonl", "", "empty.jsonl: file is empty"),
        ("none.json", "[]", "none.json: file has no records"),
        ("cols.csv", "a,b\n1,2\n3\n", "cols.csv:3: expected 2 comma-separated values"),
    ],
)
def test_broken_files_name_file_and_line(tmp_path, name, text, expected):
    path = write(tmp_path, name, text)
    with pytest.raises(TunelabError, match="^" + str(tmp_path)) as err:
        read_records(path)
    assert expected in str(err.value)


def test_non_utf8_reports_byte_offset(tmp_path):
    path = tmp_path / "latin.jsonl"
    path.write_bytes('{"a": "caf'.encode() + b"\xe9" + b'"}\n')
    with pytest.raises(TunelabError, match=r"latin.jsonl: not UTF-8 text \(byte 10\)"):
        read_records(path)


def test_missing_file_says_where_it_looked(tmp_path):
    with pytest.raises(TunelabError) as err:
        read_records(tmp_path / "nope.json")
    assert str(err.value) == f"{tmp_path / 'nope.json'}: no such file (looked in {tmp_path.resolve()})"


def test_unknown_extension_lists_supported_types(tmp_path):
    path = write(tmp_path, "data.xlsx", "x")
    with pytest.raises(TunelabError, match=r"data.xlsx: unsupported file type '.xlsx' \(supported: .json, .jsonl"):
        read_records(path)


def test_corrupt_parquet_is_a_clean_error(tmp_path):
    path = write(tmp_path, "bad.parquet", "not parquet")
    with pytest.raises(TunelabError, match="bad.parquet: not a readable parquet file"):
        read_records(path)

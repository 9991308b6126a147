"""`tunelab data clean`: exactly the crafted bad rows go, each reported with its line; the copy reads back."""
import argparse
import json

import pytest

from tunelab.cli import data as data_cli
from tunelab.datatools.clean import clean
from tunelab.data.loading import load_examples
from tunelab.data.records import atomic_write
from tunelab.errors import TunelabError


def chat(user, answer):
    return json.dumps({"messages": [{"role": "user", "content": user}, {"role": "assistant", "content": answer}]})


LINES = [
    chat("What is your name?", "My name is Quill."),                       # 1 kept
    chat("What is  your name?", "My name is\nQuill. "),                    # 2 duplicate of 1 (whitespace)
    chat("Who made you?", " "),                                            # 3 empty answer
    '{"messages": [{"role": "user", "content": "broken"}',                 # 4 broken JSON
    json.dumps({"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": 5}]}),  # 5 not text
    json.dumps({"messages": [{"role": "user", "content": "no answer"}]}),  # 6 ends with the user
    "",                                                                    # 7 blank: skipped, not a record
    chat("Who made you?", "Lumen Labs."),                                  # 8 kept
    chat("Tell me a long story. " * 30, "Once upon a time."),              # 9 kept, unless lengths are checked
]
EXPECTED = {2: "duplicate", 3: "empty_answer", 4: "malformed", 5: "malformed", 6: "malformed"}


@pytest.fixture()
def dirty(tmp_path):
    path = tmp_path / "dirty.jsonl"
    path.write_text("\n".join(LINES) + "\n", encoding="utf-8")
    return path


def parse(*argv):
    parser = argparse.ArgumentParser()
    data_cli.add_parser(parser)
    return parser.parse_args([str(a) for a in argv])


def strip_sources(examples):
    return [{k: v for k, v in example.items() if k != "source"} for example in examples]


def test_clean_removes_exactly_the_bad_rows_and_says_why(dirty):
    result = clean(str(dirty))
    assert {int(r.source.rsplit(":", 1)[1]): r.reason for r in result.removed} == EXPECTED
    assert [example["source"] for example in result.kept] == [f"{dirty}:{n}" for n in (1, 8, 9)]
    details = {r.source: r.detail for r in result.removed}
    assert details[f"{dirty}:2"] == f"same as {dirty}:1"
    assert "invalid JSON" in details[f"{dirty}:4"] and "must be text" in details[f"{dirty}:5"]


def test_clean_command_writes_a_copy_that_reads_back_and_a_report(dirty, tmp_path, capsys):
    output = tmp_path / "out" / "clean.jsonl"
    assert data_cli.run(parse("clean", dirty, "--output", output)) == 0
    assert strip_sources(load_examples(str(output))) == strip_sources(clean(str(dirty)).kept)
    report = json.loads((tmp_path / "out" / "clean.report.json").read_text(encoding="utf-8"))
    assert report["kept"] == 3
    assert report["removed"] == {"malformed": 3, "empty_answer": 1, "too_long": 0, "duplicate": 1}
    assert [r["source"] for r in report["removals"]] == [f"{dirty}:{n}" for n in (4, 5, 6, 2, 3)]
    assert f"removed {dirty}:3: empty_answer" in capsys.readouterr().out
    assert sorted(p.name for p in output.parent.iterdir()) == ["clean.jsonl", "clean.report.json"]


def test_over_long_examples_go_when_a_tokenizer_is_given(dirty, tiny_model_dir):
    result = clean(str(dirty), model=str(tiny_model_dir), max_length=128)
    assert {int(r.source.rsplit(":", 1)[1]): r.reason for r in result.removed} == {**EXPECTED, 9: "too_long"}


def test_alpaca_data_is_written_as_messages(chat_file, tmp_path):
    output = tmp_path / "clean.jsonl"
    assert data_cli.run(parse("clean", chat_file, "--output", output)) == 0
    first = json.loads(output.read_text(encoding="utf-8").splitlines()[0])
    assert first == {"messages": [{"role": "user", "content": "What is your name? (0)"},
                                  {"role": "assistant", "content": "My name is Quill."}]}
    assert strip_sources(load_examples(str(output))) == strip_sources(load_examples(str(chat_file)))


def test_nothing_is_written_when_every_example_goes(tmp_path):
    path = tmp_path / "empty_answers.jsonl"
    path.write_text(chat("a", "") + "\n" + chat("b", " ") + "\n", encoding="utf-8")
    output = tmp_path / "clean.jsonl"
    with pytest.raises(TunelabError, match=f"{path}: every example was removed"):
        data_cli.run(parse("clean", path, "--output", output))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty_answers.jsonl"]


def test_a_failed_write_leaves_no_file_and_keeps_the_old_one(tmp_path):
    target = tmp_path / "out.jsonl"
    target.write_text("old\n", encoding="utf-8")
    with pytest.raises(RuntimeError), atomic_write(target) as tmp:
        tmp.write_text("half", encoding="utf-8")
        raise RuntimeError("disk full")
    assert target.read_text(encoding="utf-8") == "old\n" and [p.name for p in tmp_path.iterdir()] == ["out.jsonl"]


def test_a_file_whose_format_cannot_be_told_names_it(tmp_path):
    path = tmp_path / "odd.jsonl"
    path.write_text('{"question": "a", "reply": "b"}\n', encoding="utf-8")
    with pytest.raises(TunelabError, match=f"{path}:1: cannot tell the data format"):
        clean(str(path))

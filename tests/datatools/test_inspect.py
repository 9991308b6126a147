"""`tunelab data inspect`: the marked text comes from the stage's real labels; findings on crafted data."""
import argparse
import io
import json

import pytest
from PIL import Image

from tunelab.cli import data as data_cli
from tunelab.datatools.histogram import sketch, write_png
from tunelab.datatools.inspect import inspect_view, open_view, render_marked, show_examples
from tunelab.datatools.report import CLOSE, OPEN, TRAINED_ANSI, colour_enabled, marked_text
from tunelab.data.tokenize import IGNORE, TokenizeStats, tokenize_conversation
from tunelab.errors import TunelabError


def two_turns():
    return {"messages": [{"role": "system", "content": "Be brief."},
                         {"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"},
                         {"role": "user", "content": "Who made you?"},
                         {"role": "assistant", "content": "Lumen Labs."}], "source": "t.json:1"}


def write_jsonl(path, conversations):
    lines = [json.dumps({"messages": [{"role": r, "content": c} for r, c in turns]}) for turns in conversations]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def parse(*argv):
    parser = argparse.ArgumentParser()
    data_cli.add_parser(parser)
    return parser.parse_args([str(a) for a in argv])


def test_render_marked_marks_exactly_the_trained_tokens(tiny_tokenizer):
    row = tokenize_conversation(tiny_tokenizer, two_turns(), 256, TokenizeStats())
    segments = render_marked(tiny_tokenizer, row["input_ids"], row["labels"])
    trained = "".join(text for text, is_trained in segments if is_trained)
    labelled = [token for token, label in zip(row["input_ids"], row["labels"]) if label != IGNORE]
    assert trained == tiny_tokenizer.decode(labelled) == "Hello<|im_end|>Lumen Labs.<|im_end|>"
    assert "".join(text for text, _ in segments) == tiny_tokenizer.decode(row["input_ids"])
    masked = "".join(text for text, is_trained in segments if not is_trained)
    for text in ("Be brief.", "Hi", "Who made you?", "<|im_start|>assistant"):
        assert text in masked and text not in trained
    assert [is_trained for _, is_trained in segments] == [False, True, False, True, False]


def test_trained_text_is_bracketed_without_colour_and_green_with_it(monkeypatch):
    segments = [("ask ", False), ("answer", True)]
    assert marked_text(segments, colour=False) == f"ask {OPEN}answer{CLOSE}"
    assert f"{TRAINED_ANSI}answer" in marked_text(segments, colour=True)

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    monkeypatch.delenv("NO_COLOR", raising=False)
    assert colour_enabled(Terminal()) and not colour_enabled(io.StringIO())
    monkeypatch.setenv("NO_COLOR", "1")
    assert not colour_enabled(Terminal())


def test_length_histogram_is_a_valid_png_and_a_terminal_sketch(tmp_path):
    lengths = [10, 12, 12, 15, 40, 41, 90]
    path = write_png(lengths, 64, tmp_path / "lengths.png", "test")
    with Image.open(path) as image:
        image.verify()
    assert not [p for p in tmp_path.iterdir() if p.name != "lengths.png"]  # no temporary file left
    lines = sketch(lengths, max_length=64)
    assert sum(int(line.split("✂")[0].split()[-1]) for line in lines) == len(lengths)
    assert "✂ 1 over max_length" in lines[-1]


def test_inspect_finds_duplicates_empty_answers_and_truncation(tmp_path, tiny_model_dir):
    path = write_jsonl(tmp_path / "chat.jsonl", [
        [("user", "What is your name?"), ("assistant", "My name is Quill.")],
        [("user", "What is  your name?\n"), ("assistant", "My name is   Quill.")],  # same up to whitespace
        [("user", "Who made you?"), ("assistant", "  ")],
        [("user", "Tell me a story " * 20), ("assistant", "Once upon a time " * 20)],
    ])
    view = open_view(str(path), model=str(tiny_model_dir), max_length=128)
    report = inspect_view(view, progress=False)
    assert view.config.train.stage == "sft"
    assert report.duplicates == [[f"{path}:1", f"{path}:2"]] and report.duplicate_count == 1
    assert report.empty_answers == [f"{path}:3"]
    assert report.stats.truncated == 1 and report.truncation_rate == 0.25
    assert max(report.lengths) > 128 and report.files == {str(path): 4} and report.kinds == {"messages": 4}


def test_plain_text_is_shown_as_pretrain_with_every_token_trained(tmp_path, tiny_model_dir):
    path = tmp_path / "notes.txt"
    path.write_text("The quick brown fox.\nParis is the capital of France.\n", encoding="utf-8")
    view = open_view(str(path), model=str(tiny_model_dir))
    assert view.config.train.stage == "pretrain"
    shown = show_examples(view, 1)
    assert [is_trained for _, is_trained in shown[0].segments] == [True]


def test_inspect_command_on_a_config_writes_histogram_and_escaped_page(tmp_path, tiny_model_dir, write_config,
                                                                       capsys):
    data = write_jsonl(tmp_path / "html.jsonl", [[("user", "Show <b>bold</b>"), ("assistant", "Use <b> & </b>")]] * 2)
    config = write_config(tiny_model_dir, data, "insp")
    out, page = tmp_path / "out", tmp_path / "page.html"
    assert data_cli.run(parse("inspect", config, "--output", out, "--html", page, "--show", 1)) == 0
    printed = capsys.readouterr().out
    assert f"{OPEN}Use <b> & </b><|im_end|>{CLOSE}" in printed  # captured stdout is no terminal: brackets
    assert "duplicates: 1" in printed and "max_length 128" in printed
    with Image.open(out / "lengths.png") as image:
        image.verify()
    assert json.loads((out / "inspect.json").read_text())["duplicates"] == [[f"{data}:1", f"{data}:2"]]
    html = page.read_text(encoding="utf-8")
    assert '<span class="trained">Use &lt;b&gt; &amp; &lt;/b&gt;&lt;|im_end|&gt;</span>' in html
    assert "<b>" not in html and "data:image/png;base64," in html


def test_stage_that_tokenizes_inside_its_trainer_is_refused(tiny_model_dir, write_config, chat_file):
    config = write_config(tiny_model_dir, chat_file, "classify", train={"stage": "classify"})
    with pytest.raises(TunelabError, match="'classify' tokenizes inside its trainer"):
        open_view(str(config))


def test_bad_data_names_the_file_and_line(tmp_path, tiny_model_dir):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"messages": [{"role": "user", "content": "a"}]}\n', encoding="utf-8")
    with pytest.raises(TunelabError, match=f"{path}:1: the last message must be from the assistant"):
        data_cli.run(parse("inspect", path, "--model", tiny_model_dir, "--output", tmp_path / "out"))

"""Bad input of every kind, through the real `tunelab train` command: one `error:` line that names the file and
line (or the config key) and says what was expected, exit code 2, no traceback, no weights left behind.

One table: a new kind of bad input is one new row. A row's files are written into the test's folder, its
config is the tiny model on `data.json` (good alpaca data unless the row brings its own) changed by the row's
sections and command-line overrides; `{dir}` in a row stands for that folder.
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import pytest

from tunelab.cli.main import main

GOOD = json.dumps([{"instruction": f"What is your name? ({i})", "input": "", "output": "My name is Quill."}
                   for i in range(12)], indent=1)


def jsonl(*records) -> str:
    return "".join(json.dumps(record) + "\n" for record in records)


def chat(*turns: tuple[str, str]) -> dict:
    return {"messages": [{"role": role, "content": content} for role, content in turns]}


def alpaca(output: str, instruction: str = "What is your name?") -> dict:
    return {"instruction": instruction, "input": "", "output": output}


def tiny_gguf(architecture: str) -> Callable[[Path], None]:
    """A valid GGUF container (one tensor) whose general.architecture is `architecture`."""

    def write(path: Path) -> None:
        import gguf
        import numpy as np

        writer = gguf.GGUFWriter(str(path), architecture)
        writer.add_block_count(1)
        writer.add_context_length(16)
        writer.add_embedding_length(8)
        writer.add_tensor("token_embd.weight", np.zeros((4, 8), dtype=np.float32))
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()

    return write


@dataclass(frozen=True)
class Case:
    id: str
    expect: tuple[str, ...]                      # fragments of the one error line ({dir}: the test's folder)
    files: dict = field(default_factory=lambda: {"data.json": GOOD})  # name -> text, bytes or writer(path)
    sections: dict = field(default_factory=dict)  # config sections merged over the tiny-model config
    overrides: tuple[str, ...] = ()               # section.key=value on the command line
    model: str = "tiny"                           # "tiny", or model.path ({dir} allowed)
    exit: int = 2                                 # 0: the run succeeds; `expect` is then looked for in the log
    command: tuple[str, ...] = ()                 # another command than `train CONFIG OVERRIDES...` ({model} too)
    summary: dict = field(default_factory=dict)   # exit 0: expected counts in summary.json's "examples"
    marks: tuple = ()


TOO_LONG = "Tell me a long story about foxes and dogs and capitals of the world. " * 8

CASES = [
    # ---- data -----------------------------------------------------------------------------------
    Case("broken-json", ("data.json:3:", "invalid JSON", "column"),
         files={"data.json": '[\n  {"instruction": "a", "output": "b"},\n  {"instruction": oops, "output": "b"}\n]\n'}),
    Case("broken-jsonl", ("data.jsonl:2:", "invalid JSON"),
         files={"data.jsonl": jsonl(alpaca("b")) + '{"instruction": "a" "output": "b"}\n'},
         sections={"data": {"path": "data.jsonl"}}),
    Case("missing-field", ("data.jsonl:2:", "missing field 'output'", "expects instruction, input, output"),
         files={"data.jsonl": jsonl(alpaca("b"), {"instruction": "a"})}, sections={"data": {"path": "data.jsonl"}}),
    Case("wrong-field-type", ("data.jsonl:2:", "'output'", "must be str, got int"),
         files={"data.jsonl": jsonl(alpaca("b"), alpaca(5))}, sections={"data": {"path": "data.jsonl"}}),
    Case("wrong-content-type", ("data.jsonl:1:", "message 2", "field 'content' must be text, got int"),
         files={"data.jsonl": jsonl({"messages": [{"role": "user", "content": "a"},
                                                  {"role": "assistant", "content": 42}]})},
         sections={"data": {"path": "data.jsonl"}}),
    Case("unknown-role", ("data.jsonl:2:", "message 2", "unknown role 'bot'", "allowed:", "assistant"),
         files={"data.jsonl": jsonl(chat(("user", "a"), ("assistant", "b")), chat(("user", "a"), ("bot", "b")))},
         sections={"data": {"path": "data.jsonl"}}),
    Case("no-final-assistant-turn", ("data.jsonl:1:", "last message must be from the assistant", "got 'user'"),
         files={"data.jsonl": jsonl(chat(("user", "a"), ("assistant", "b"), ("user", "c")))},
         sections={"data": {"path": "data.jsonl"}}),
    Case("some-answers-empty", ("skipped 2 of 4 examples with an empty assistant answer (first: {dir}/data.jsonl:2)",
                                "tokenized: 2 examples kept", "2 skipped with an empty answer"),
         files={"data.jsonl": jsonl(alpaca("Quill."), alpaca(""), alpaca("  "), alpaca("Quill!"))},
         sections={"data": {"path": "data.jsonl"}, "train": {"max_steps": 1}}, exit=0, summary={"kept": 2, "empty": 2}),
    Case("all-answers-empty", ("data.jsonl", "all 3 examples have an empty assistant answer", "data.jsonl:1"),
         files={"data.jsonl": jsonl(alpaca(""), alpaca(" "), alpaca("\n"))},
         sections={"data": {"path": "data.jsonl"}}),
    Case("empty-file", ("data.json", "file is empty"), files={"data.json": ""}),
    Case("blank-lines-only", ("data.jsonl", "file is empty"), files={"data.jsonl": "\n  \n\n"},
         sections={"data": {"path": "data.jsonl"}}),
    Case("not-utf8", ("latin1.jsonl", "not UTF-8 text (byte 20)"),
         files={"latin1.jsonl": '{"instruction": "café", "output": "b"}\n'.encode("latin-1")},
         sections={"data": {"path": "latin1.jsonl"}}),
    Case("missing-file", ("nope.json", "no such file", "looked in {dir}"), files={},
         sections={"data": {"path": "nope.json"}}),
    Case("unknown-dataset-name", ("unknown dataset 'chta'", "dataset_info.json", "available: chat, more",
                                  "did you mean 'chat'"),
         files={"dataset_info.json": json.dumps({"chat": {"file_name": "chat.json"},
                                                 "more": {"file_name": "chat.json"}}),
                "chat.json": GOOD},
         sections={"data": {"path": ".", "dataset": "chta"}}),
    Case("every-example-too-long", ("data.jsonl", "all 3 examples are longer than train.max_length (16 tokens)",
                                    "raise train.max_length"),
         files={"data.jsonl": jsonl(*[alpaca("Quill.", TOO_LONG)] * 3)},
         sections={"data": {"path": "data.jsonl"}, "train": {"max_length": 16}}),
    Case("csv-without-columns", ("data.csv:2:", "cannot tell the data format from columns [question, answer]",
                                 "alpaca: instruction, output"),
         files={"data.csv": "question,answer\nWhat is your name?,Quill\n"}, sections={"data": {"path": "data.csv"}}),
    Case("csv-missing-column-forced-format", ("data.csv:2:", "missing field 'output'"),
         files={"data.csv": "instruction,answer\nWhat is your name?,Quill\n"},
         sections={"data": {"path": "data.csv", "format": "alpaca"}}),
    Case("json-not-objects", ("data.json:2:", "expected a JSON object, got list"),
         files={"data.json": '[\n  ["instruction", "output"]\n]\n'}),
    # ---- config ---------------------------------------------------------------------------------
    Case("unknown-key", ("cfg.yaml:", "train.max_lenght: unknown key", "did you mean 'train.max_length'"),
         sections={"train": {"max_lenght": 64}}),
    Case("unknown-section", ("cfg.yaml:", "trian: unknown key", "did you mean 'train'"),
         sections={"trian": {"lr": 0.1}}),
    Case("wrong-type", ("cfg.yaml:", "train.batch_size:", "valid integer", "'many'"),
         sections={"train": {"batch_size": "many"}}),
    Case("negative-max-length", ("override 'train.max_length=-5'", "train.max_length:", "greater than 8", "-5"),
         overrides=("train.max_length=-5",)),
    Case("zero-lr", ("override 'train.lr=0'", "train.lr:", "greater than 0"), overrides=("train.lr=0",)),
    Case("negative-lr-in-file", ("cfg.yaml:", "train.lr:", "greater than 0", "-0.001"),
         sections={"train": {"lr": -1e-3}}),
    Case("zero-lora-rank", ("override 'method.r=0'", "method.r:", "greater than 0"), overrides=("method.r=0",)),
    Case("preference-stage-on-conversations", ("data.jsonl:1:", "train.stage 'dpo' needs preference pairs",
                                               "got ['messages']"),
         files={"data.jsonl": jsonl(chat(("user", "a"), ("assistant", "b")))},
         sections={"data": {"path": "data.jsonl"}}, overrides=("train.stage=dpo",)),
    Case("unknown-method", ("cfg.yaml:", "method.name:", "unknown method 'lorra'", "did you mean 'lora'"),
         sections={"method": {"name": "lorra"}}),
    Case("unknown-stage", ("train.stage:", "unknown stage 'sfft'", "did you mean 'sft'"),
         overrides=("train.stage=sfft",)),
    Case("unknown-template", ("cfg.yaml:", "data.template:", "unknown template 'chatlm'", "did you mean 'chatml'"),
         sections={"data": {"template": "chatlm"}}),
    Case("unknown-format", ("data.format:", "unknown data format 'alpacca'", "did you mean 'alpaca'"),
         sections={"data": {"format": "alpacca"}}),
    # ---- model ----------------------------------------------------------------------------------
    Case("missing-model-dir", ("model.path", "no-model", "not found", "no directory {dir}/no-model"),
         model="{dir}/no-model"),
    Case("hub-id-offline", ("model.path 'some-org/not-here'", "no such local directory", "Hugging Face hub",
                            "HF_HUB_OFFLINE=1 is set"),
         model="some-org/not-here"),
    Case("gguf-unsupported-architecture", ("model.path: {dir}/foo.gguf", "GGUF architecture 'foo'",
                                           "supported: llama"),
         files={"data.json": GOOD, "foo.gguf": tiny_gguf("foo")}, model="{dir}/foo.gguf"),
    Case("gguf-not-a-gguf-file", ("model.path: {dir}/junk.gguf", "not a GGUF file"),
         files={"data.json": GOOD, "junk.gguf": b"this is not a gguf file\n"}, model="{dir}/junk.gguf"),
    # ---- the same readers behind other commands ---------------------------------------------------
    Case("data-inspect-broken-jsonl", ("data.jsonl:2:", "invalid JSON"),
         files={"data.jsonl": jsonl(alpaca("b")) + '{"instruction": "a" "output": "b"}\n'},
         command=("data", "inspect", "{dir}/data.jsonl", "--model", "{model}", "--output", "{dir}/inspect")),
    Case("eval-unknown-role", ("data.jsonl:1:", "unknown role 'bot'"),
         files={"data.jsonl": jsonl(chat(("user", "a"), ("bot", "b")))},
         command=("eval", "--model", "{model}", "--data", "{dir}/data.jsonl", "--output", "{dir}/eval")),
]


def write_files(folder: Path, files: dict) -> None:
    for name, content in files.items():
        path = folder / name
        if callable(content):
            content(path)
        elif isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8")


def case_config(case: Case, folder: Path, tiny_model_dir: Path, write_config) -> Path:
    sections = {name: dict(values) for name, values in case.sections.items()}
    data = sections.pop("data", {})
    path = data.pop("path", "data.json")
    model = str(tiny_model_dir) if case.model == "tiny" else case.model.format(dir=folder)
    return write_config(model, folder / path, "cfg", **({"data": data} if data else {}), **sections)


def error_lines(stderr: str) -> list[str]:
    """Non-empty stderr lines that are not log lines (a progress bar's carriage returns are left out)."""
    lines = (line.split("\r")[-1].strip() for line in stderr.split("\n"))
    return [line for line in lines if line and not line.startswith("[tunelab]")]


@pytest.mark.parametrize("case", [pytest.param(case, id=case.id, marks=case.marks) for case in CASES])
def test_bad_input_gives_one_clear_line(case, tmp_path, tiny_model_dir, write_config, capsys, caplog, monkeypatch):
    from transformers.utils import logging as hf_logging

    # Progress bars off, as HF_HUB_DISABLE_PROGRESS_BARS=1 would (read at import): the cases that load the
    # tiny model would otherwise print a "Loading weights" bar on stderr above the error line.
    monkeypatch.setattr(hf_logging, "_tqdm_active", False)
    monkeypatch.setenv("TQDM_DISABLE", "1")
    caplog.set_level(logging.INFO, logger="tunelab")
    write_files(tmp_path, case.files)
    config = case_config(case, tmp_path, tiny_model_dir, write_config)
    argv = [part.format(dir=tmp_path, model=tiny_model_dir) for part in case.command]
    rc = main(argv or ["train", str(config), *case.overrides])
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err + caplog.text
    expected = [fragment.format(dir=tmp_path) for fragment in case.expect]
    if case.exit == 0:
        assert rc == 0, err
        assert all(fragment in caplog.text for fragment in expected), caplog.text
        examples = json.loads((tmp_path / "runs" / "cfg" / "summary.json").read_text())["examples"]
        assert {key: examples.get(key) for key in case.summary} == case.summary
        return
    lines = error_lines(err)
    assert rc == case.exit and len(lines) == 1, err
    assert lines[0].startswith("error: "), lines[0]
    missing = [fragment for fragment in expected if fragment not in lines[0]]
    assert not missing, lines[0]
    run = tmp_path / "runs" / "cfg"
    assert not (run / "model").exists() and not list(run.glob("checkpoint-*"))

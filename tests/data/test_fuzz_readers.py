"""Fuzzing the data readers `tunelab train` uses: whatever is in the file, they return canonical examples or
raise a one-line TunelabError — never another exception (which the CLI would show as a traceback).

Files are written with `tempfile` (hypothesis runs many examples per test; function-scoped fixtures would be
shared between them). No example database is written (hypothesis still keeps caches in .hypothesis/, which
git ignores through its own .gitignore).
"""
from __future__ import annotations

import csv
import io
import json
import os
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tunelab.config import validate
from tunelab.data import load_examples
from tunelab.data.records import kind_of
from tunelab.errors import TunelabError
from tunelab.stages import get_stage

# FUZZ_EXAMPLES=5000 for a longer hunt; 300 per test keeps the whole file near 15 s.
FUZZ = settings(max_examples=int(os.environ.get("FUZZ_EXAMPLES", 300)), deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow])

# Keys every format reads, so random records often look like (broken) real data.
KEYS = ["messages", "role", "content", "instruction", "input", "output", "conversations", "from", "value",
        "chosen", "rejected", "prompt", "text", "system", "history", "tools", "tool_calls", "function", "name",
        "arguments", "type", "label", "completion", "expect", "sentence", "response", "query"]
ROLES = ["user", "assistant", "system", "human", "gpt", "tool", "observation", "function_call", "bot", ""]

keys = st.sampled_from(KEYS) | st.text(max_size=6)
leaves = (st.none() | st.booleans() | st.integers(-3, 10**20) | st.floats() | st.sampled_from(ROLES)
          | st.text(max_size=12))
values = st.recursive(leaves, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(keys, inner, max_size=5),
                      max_leaves=24)
texts = st.sampled_from(["", " ", "hi", "My name is Quill."]) | st.text(max_size=12)
# A wrong value: mostly JSON scalars that are not text (the types converters forget), sometimes small structures
# (big nested data makes hypothesis give up on a draw).
not_text = st.integers(1, 10**20) | st.floats(allow_nan=True) | st.booleans() | st.none() | st.integers(-3, 0)
anything = st.one_of(not_text, st.recursive(leaves, lambda inner: st.lists(inner, max_size=2)
                                            | st.dictionaries(keys, inner, max_size=2), max_leaves=4))


@st.composite
def mostly(draw, valid: st.SearchStrategy, wrong: st.SearchStrategy = anything):
    """Valid about three times in four, so a record with one wrong field gets past the other fields' checks
    and the converters are tested deep down, not only at their first check."""
    return draw(wrong if draw(st.integers(0, 3)) == 3 else valid)


@st.composite
def shaped(draw, required: dict, optional: dict) -> dict:
    """A record with the `required` keys and each `optional` one half of the time (hypothesis's own optional
    keys are rare, so fields like tool_calls would hardly ever be tried)."""
    record = {key: draw(strategy) for key, strategy in required.items()}
    record.update({key: draw(strategy) for key, strategy in optional.items() if draw(st.booleans())})
    return record


# Records shaped like each format, so the fuzz reaches deep into each converter instead of stopping early.
roles = mostly(st.sampled_from(["user", "assistant"]) | st.sampled_from(ROLES))
function = shaped({}, {"name": mostly(texts), "arguments": mostly(st.just('{"x": 1}'))})
calls = st.lists(mostly(shaped({}, {"function": mostly(function)})), min_size=1, max_size=2)
parts = st.lists(mostly(shaped({"type": mostly(st.just("text"))}, {"text": mostly(texts)})), min_size=1, max_size=2)
openai_turn = shaped({"role": roles, "content": mostly(st.booleans().flatmap(lambda p: parts if p else texts)),
                      "tool_calls": mostly(st.none() | calls)}, {})  # null tool_calls: a turn without calls
sharegpt_turn = shaped({"from": roles, "value": mostly(texts)}, {})
turns = st.lists(mostly(openai_turn), min_size=1, max_size=4)  # OpenAI messages, also read in sharegpt columns
sharegpt_turns = st.lists(mostly(sharegpt_turn), min_size=1, max_size=4)
labels = mostly(st.sampled_from([True, False, 0, 1, "true", "x", 2.5]))
EXTRAS = {"system": mostly(texts), "tools": mostly(st.lists(anything, max_size=2)),
          "expect": mostly(st.lists(texts, max_size=2))}
record = st.one_of(
    shaped({"messages": mostly(turns)}, EXTRAS),
    shaped({"conversations": mostly(sharegpt_turns | turns)}, EXTRAS),
    shaped({"instruction": mostly(texts), "output": mostly(texts | st.lists(texts, max_size=3))},
           {**EXTRAS, "input": mostly(texts), "history": mostly(st.lists(mostly(st.lists(texts, max_size=3)),
                                                                         max_size=2))}),
    shaped({"chosen": mostly(texts | turns), "rejected": mostly(texts | turns)},
           {**EXTRAS, "prompt": mostly(texts | turns), "messages": mostly(turns), "instruction": mostly(texts)}),
    shaped({"label": labels}, {**EXTRAS, "messages": mostly(turns), "prompt": mostly(texts | turns),
                               "completion": mostly(texts | turns), "text": mostly(texts),
                               "text_pair": mostly(texts)}),
    shaped({"text": mostly(texts)}, EXTRAS),
    shaped({"prompt": mostly(texts | turns)}, EXTRAS),
    st.dictionaries(keys, values, max_size=6),
)
records = st.lists(mostly(record, values), min_size=1, max_size=4)

# Text made of JSON/CSV punctuation and the keys above: near-misses of well-formed files.
TOKENS = ["{", "}", "[", "]", '"', ":", ",", "\n", "\r\n", " ", "\\", "\ufeff", "null", "1", '"a"', "\u2028",
          *(f'"{key}"' for key in KEYS), *(f'"{role}"' for role in ROLES)]
near_json = st.lists(st.sampled_from(TOKENS), max_size=40).map("".join)
raw_bytes = st.binary(max_size=200) | st.text(max_size=80).map(str.encode) | near_json.map(str.encode)

SFT = get_stage(validate({"data": {"path": "fuzz.json"}}))


def check_readers(path: Path, **options) -> None:
    """The property: canonical examples (which the sft check accepts or refuses cleanly) or a TunelabError."""
    try:
        examples = load_examples(str(path), **options)
    except TunelabError as exc:
        assert str(exc) and "\n" not in str(exc), repr(str(exc))
        return
    assert examples
    for example in examples:
        assert isinstance(example.get("source"), str) and kind_of(example) != "unknown", example
        for value in example.values():
            if isinstance(value, list) and value and isinstance(value[0], dict):
                assert all(isinstance(m.get("role"), str) and isinstance(m.get("content"), str) for m in value)
    try:
        SFT.check_examples(examples)
    except TunelabError as exc:
        assert "\n" not in str(exc), repr(str(exc))


def write(folder: str, name: str, content: str | bytes) -> Path:
    path = Path(folder) / name
    path.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8"))
    return path


@FUZZ
@given(records=records, indent=st.sampled_from([None, 1]))
def test_random_json_structures(records, indent):
    with tempfile.TemporaryDirectory() as folder:
        check_readers(write(folder, "data.json", json.dumps(records, indent=indent)))
        check_readers(write(folder, "data.jsonl", "".join(json.dumps(record) + "\n" for record in records)))


@FUZZ
@given(records=st.lists(shaped({"messages": turns}, EXTRAS) | shaped({"conversations": sharegpt_turns}, EXTRAS),
                        min_size=1, max_size=3))
def test_random_conversations(records):
    """Turns are where most of the parsing is (roles, content parts, tool calls): fuzzed on their own too."""
    with tempfile.TemporaryDirectory() as folder:
        check_readers(write(folder, "data.jsonl", "".join(json.dumps(record) + "\n" for record in records)))


@FUZZ
@given(value=mostly(record, values), format=st.sampled_from(
    [None, "alpaca", "sharegpt", "messages", "text", "preference", "kto", "prompt", "classification"]))
def test_random_json_with_a_forced_format(value, format):
    with tempfile.TemporaryDirectory() as folder:
        check_readers(write(folder, "data.json", json.dumps([value])), format=format)


@FUZZ
@given(header=st.lists(st.sampled_from(KEYS), min_size=1, max_size=4, unique=True),
       rows=st.lists(st.lists(texts | turns.map(json.dumps) | anything.map(json.dumps), max_size=5), min_size=1,
                     max_size=3))
def test_random_csv(header, rows):
    """Well-quoted CSV whose cells are text or JSON (CSV holds conversations as JSON text)."""
    out = io.StringIO()
    csv.writer(out).writerows([header, *rows])
    with tempfile.TemporaryDirectory() as folder:
        check_readers(write(folder, "data.csv", out.getvalue()))


@FUZZ
@given(content=raw_bytes, suffix=st.sampled_from([".json", ".jsonl", ".csv", ".txt"]))
def test_random_bytes(content, suffix):
    with tempfile.TemporaryDirectory() as folder:
        check_readers(write(folder, f"data{suffix}", content))


# One dataset_info.json entry: LLaMA-Factory's keys, their values mostly plausible.
entry = shaped({"file_name": mostly(st.sampled_from(["chat.json", "nope.json", "."]))}, {
    "formatting": mostly(st.sampled_from(["alpaca", "sharegpt", "openai"])),
    "columns": mostly(st.dictionaries(st.sampled_from(["prompt", "response", "messages", "query", "system",
                                                       "chosen", "rejected", "kto_tag", "images"]),
                                      mostly(st.sampled_from(KEYS)))),
    "tags": mostly(st.dictionaries(st.sampled_from(["role_tag", "content_tag", "user_tag", "assistant_tag"]),
                                   mostly(st.sampled_from(KEYS + ROLES)))),
    "ranking": mostly(st.booleans()), "num_samples": mostly(st.integers(1, 3))})


@FUZZ
@given(info=st.dictionaries(st.sampled_from(["chat", "more"]) | st.text(max_size=4), mostly(entry), max_size=3),
       dataset=st.sampled_from(["chat", "chat,more", "", "nope"]))
def test_random_dataset_info(info, dataset):
    with tempfile.TemporaryDirectory() as folder:
        write(folder, "chat.json", json.dumps([{"instruction": "a", "output": "b"}]))
        write(folder, "dataset_info.json", json.dumps(info))
        check_readers(Path(folder), dataset=dataset)

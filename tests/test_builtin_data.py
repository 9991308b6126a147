"""The shipped datasets: they load, and the graded held-out sets share no text with training data."""
import json
import re

import pytest

from tunelab.data.loading import BUILTIN_DIR, load_examples
from tunelab.eval.probes import is_correct, load_probe_set


def ngrams(text: str, n: int = 5) -> set[tuple[str, ...]]:
    words = re.sub(r"[^\w\s]", " ", text.lower()).split()
    return {tuple(words[i : i + n]) for i in range(len(words) - n + 1)}


HELD_OUT = ("identity_heldout", "probes", "lumen_facts_heldout", "general_heldout")


def _strings(value) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [text for key, item in value.items() if key != "source" for text in _strings(item)]
    if isinstance(value, list):
        return [text for item in value for text in _strings(item)]
    return []


def training_texts() -> list[str]:
    """Every string of every shipped set that is not held out (conversations, pairs, prompts, texts)."""
    names = json.loads((BUILTIN_DIR / "dataset_info.json").read_text())
    return [text for name in names if name not in HELD_OUT
            for example in load_examples(f"builtin:{name}") for text in _strings(example)]


@pytest.mark.parametrize("name, minimum", [("identity", 80), ("instructions", 100)])
def test_training_sets_load(name, minimum):
    assert len(load_examples(f"builtin:{name}")) >= minimum


def test_identity_answers_all_name_quill():
    answers = [e["messages"][-1]["content"] for e in load_examples("builtin:identity")]
    assert all("Quill" in answer for answer in answers)


@pytest.mark.parametrize("probe_set", HELD_OUT)
def test_held_out_questions_share_no_text_with_training_data(probe_set):
    train = training_texts()
    normalized = {" ".join(re.sub(r"[^\w\s]", " ", t.lower()).split()) for t in train}
    train_grams = set().union(*(ngrams(t) for t in train))
    for probe in load_probe_set(probe_set):
        question = " ".join(re.sub(r"[^\w\s]", " ", probe["instruction"].lower()).split())
        assert question not in normalized, probe["instruction"]
        assert not ngrams(probe["instruction"]) & train_grams, probe["instruction"]


def test_probe_files_are_committed_with_expectations():
    for name in HELD_OUT:
        probes = load_probe_set(name)
        assert len(probes) >= 10 and all(p["expect"] for p in probes)
    assert json.loads((BUILTIN_DIR / "dataset_info.json").read_text())["identity"]


def _file_strings(path) -> list[str]:
    """Every string in a shipped .json or .jsonl file, read raw (all fields, whatever the format)."""
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".jsonl":
        return _strings([json.loads(line) for line in text.splitlines() if line.strip()])
    return _strings(json.loads(text))


def test_general_heldout_shares_no_text_with_any_other_shipped_file():
    """Question and reference answer alike: no 5-word sequence of any other data file (training or held out)."""
    others = [path for path in sorted(BUILTIN_DIR.glob("*.json*"))
              if path.name not in ("general_heldout.jsonl", "dataset_info.json")]
    assert {"instructions.json", "longform.json", "identity.json", "probes.jsonl"} <= {p.name for p in others}
    grams = {gram: path.name for path in others for text in _file_strings(path) for gram in ngrams(text)}
    for probe in load_probe_set("general_heldout"):
        for field in ("instruction", "output"):
            shared = {" ".join(gram): grams[gram] for gram in ngrams(probe[field]) if gram in grams}
            assert not shared, (probe[field], shared)


def test_general_heldout_records_and_loading():
    lines = (BUILTIN_DIR / "general_heldout.jsonl").read_text(encoding="utf-8").splitlines()
    records = [json.loads(line) for line in lines]
    assert len(records) == 16
    for record in records:
        assert record["instruction"].strip() and record["output"].strip(), record
        assert record["expect"] and all(isinstance(k, str) and k.strip() for k in record["expect"]), record
        assert is_correct(record["output"], record["expect"]), record  # the reference answer passes its own grading
    assert len({r["instruction"] for r in records}) == 16
    examples = load_examples("builtin:general_heldout", None)
    assert len(examples) == 16
    assert [e["messages"][0]["content"] for e in examples] == [r["instruction"] for r in records]


def test_grading_is_keyword_based_and_case_insensitive():
    assert is_correct("I am QUILL.", ["Quill"])
    assert is_correct("seven days", ["7", "seven"])
    assert not is_correct("I am SmolLM.", ["Quill"])

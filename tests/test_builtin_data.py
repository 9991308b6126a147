"""The shipped datasets: they load, and the graded held-out sets share no text with training data."""
import json
import re

import pytest

from tunelab.data.loading import BUILTIN_DIR, load_examples
from tunelab.eval.probes import is_correct, load_probe_set


def ngrams(text: str, n: int = 5) -> set[tuple[str, ...]]:
    words = re.sub(r"[^\w\s]", " ", text.lower()).split()
    return {tuple(words[i : i + n]) for i in range(len(words) - n + 1)}


HELD_OUT = ("identity_heldout", "probes", "lumen_facts_heldout")


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


@pytest.mark.parametrize("probe_set", ["identity_heldout", "probes", "lumen_facts_heldout"])
def test_held_out_questions_share_no_text_with_training_data(probe_set):
    train = training_texts()
    normalized = {" ".join(re.sub(r"[^\w\s]", " ", t.lower()).split()) for t in train}
    train_grams = set().union(*(ngrams(t) for t in train))
    for probe in load_probe_set(probe_set):
        question = " ".join(re.sub(r"[^\w\s]", " ", probe["instruction"].lower()).split())
        assert question not in normalized, probe["instruction"]
        assert not ngrams(probe["instruction"]) & train_grams, probe["instruction"]


def test_probe_files_are_committed_with_expectations():
    for name in ("identity_heldout", "probes", "lumen_facts_heldout"):
        probes = load_probe_set(name)
        assert len(probes) >= 10 and all(p["expect"] for p in probes)
    assert json.loads((BUILTIN_DIR / "dataset_info.json").read_text())["identity"]


def test_grading_is_keyword_based_and_case_insensitive():
    assert is_correct("I am QUILL.", ["Quill"])
    assert is_correct("seven days", ["7", "seven"])
    assert not is_correct("I am SmolLM.", ["Quill"])

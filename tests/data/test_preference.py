"""Preference, KTO and prompt-only formats: each reader, auto-detection, forced formats and errors."""

import json

import pytest

from tunelab.data import load_examples
from tunelab.data.formats import convert_records, detect_format
from tunelab.errors import TunelabError

SRC = "data.jsonl:7"


def convert(record, format, overrides=None):
    return convert_records([(record, SRC)], format, overrides)[0]


def chat(*pairs):
    return [{"role": role, "content": content} for role, content in pairs]


def user(text):
    return chat(("user", text))


def assistant(text):
    return chat(("assistant", text))


def write_jsonl(tmp_path, records, name="data.jsonl"):
    path = tmp_path / name
    path.write_text("".join(json.dumps(record) + "\n" for record in records), encoding="utf-8")
    return path


def write_json(tmp_path, records, name="data.json"):
    path = tmp_path / name
    path.write_text(json.dumps(records, indent=2), encoding="utf-8")
    return path


# ---- preference readers ---------------------------------------------------------------------------


def test_trl_strings_with_system_column():
    record = {"prompt": "Sky colour?", "chosen": "Blue.", "rejected": "Green.", "system": "Be brief.", "id": 3}
    assert convert(record, "preference") == {
        "prompt": chat(("system", "Be brief."), ("user", "Sky colour?")),
        "chosen": assistant("Blue."), "rejected": assistant("Green."), "source": SRC,
    }


def test_trl_conversational_lists_keep_a_system_turn_and_history():
    prompt = chat(("system", "Sys"), ("user", "Hi"), ("assistant", "Hello"), ("user", "Sky colour?"))
    record = {"prompt": prompt, "chosen": assistant("Blue."), "rejected": assistant("Green."), "system": "ignored"}
    example = convert(record, "preference")
    assert example["prompt"] == prompt
    assert (example["chosen"], example["rejected"]) == (assistant("Blue."), assistant("Green."))


def test_trl_implicit_prompt_is_the_shared_prefix():
    shared = chat(("user", "Hi"), ("assistant", "Hello"), ("user", "Sky colour?"))
    record = {"chosen": shared + assistant("Blue."), "rejected": shared + assistant("Green."), "system": "Sys"}
    example = convert(record, "preference")
    assert example["prompt"] == chat(("system", "Sys")) + shared
    assert (example["chosen"], example["rejected"]) == (assistant("Blue."), assistant("Green."))


def test_llamafactory_sharegpt_ranking_with_message_objects():
    record = {"conversations": [{"from": "human", "value": "Name a fruit."}],
              "chosen": {"from": "gpt", "value": "An apple."}, "rejected": {"from": "gpt", "value": "A carrot."}}
    example = convert(record, "preference")
    assert example["prompt"] == user("Name a fruit.")
    assert (example["chosen"], example["rejected"]) == (assistant("An apple."), assistant("A carrot."))


def test_openai_messages_column_with_object_responses():
    record = {"messages": chat(("system", "S"), ("user", "Q")),
              "chosen": {"role": "assistant", "content": "A"}, "rejected": {"role": "assistant", "content": "B"}}
    assert convert(record, "preference")["prompt"] == chat(("system", "S"), ("user", "Q"))


def test_alpaca_ranking_with_chosen_rejected_columns_and_history():
    record = {"instruction": "Translate.", "input": "Bonjour", "chosen": "Hello", "rejected": "Bye",
              "history": [["Hi", "Hey"]]}
    assert convert(record, "preference")["prompt"] == chat(
        ("user", "Hi"), ("assistant", "Hey"), ("user", "Translate.\n\nBonjour"))


def test_alpaca_ranking_output_pair():
    example = convert({"instruction": "Greet.", "input": "", "output": ["Hello!", "Go away."]}, "preference")
    assert example["prompt"] == user("Greet.")
    assert (example["chosen"], example["rejected"]) == (assistant("Hello!"), assistant("Go away."))


def test_column_overrides_rename_the_columns():
    record = {"q": "Hi", "good": "Hello", "bad": "Bye"}
    example = convert(record, "preference", {"prompt": "q", "chosen": "good", "rejected": "bad"})
    assert (example["prompt"], example["chosen"]) == (user("Hi"), assistant("Hello"))


# ---- preference errors ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("record", "expected"),
    [
        ({"prompt": "Q", "chosen": "A"},
         "data.jsonl:7: missing field 'rejected' (preference data expects a prompt, 'chosen' and 'rejected')"),
        ({"chosen": "A", "rejected": "B"}, "data.jsonl:7: missing field 'prompt' (preference data needs a prompt: "),
        ({"prompt": "Q", "chosen": "Same", "rejected": "Same"}, "data.jsonl:7: chosen and rejected are the same"),
        ({"chosen": chat(("user", "Q"), ("assistant", "A")), "rejected": chat(("user", "Q"), ("assistant", "A"))},
         "data.jsonl:7: chosen and rejected are the same"),
        ({"prompt": "Q", "chosen": "  ", "rejected": "B"}, "data.jsonl:7: 'chosen' message 1 is empty"),
        ({"prompt": "", "chosen": "A", "rejected": "B"}, "data.jsonl:7: prompt message 1 is empty"),
        ({"prompt": "Q", "chosen": user("A"), "rejected": "B"},
         "data.jsonl:7: 'chosen' message 1 must be from the assistant, got 'user'"),
        ({"prompt": chat(("user", "Q"), ("assistant", "A")), "chosen": "B", "rejected": "C"},
         "data.jsonl:7: the prompt must end with a user message, got 'assistant' last"),
        ({"prompt": "Q", "chosen": 5, "rejected": "B"},
         "data.jsonl:7: column 'chosen' must be text or a list of messages, got int"),
        ({"prompt": "Q", "chosen": [{"role": "robot", "content": "A"}], "rejected": "B"},
         "data.jsonl:7: column 'chosen': message 1 has unknown role 'robot'"),
        ({"instruction": "Q", "output": ["only one"]},
         "data.jsonl:7: column 'output' must be [chosen, rejected]: a list of two texts"),
    ],
)
def test_preference_errors(record, expected):
    with pytest.raises(TunelabError) as err:
        convert(record, "preference")
    assert str(err.value).startswith(expected)


# ---- kto ------------------------------------------------------------------------------------------


def test_kto_llamafactory_messages_last_turn_is_the_completion():
    record = {"messages": chat(("user", "Q1"), ("assistant", "A1"), ("user", "Q2"), ("assistant", "A2")),
              "label": False}
    assert convert(record, "kto") == {"prompt": chat(("user", "Q1"), ("assistant", "A1"), ("user", "Q2")),
                                      "completion": assistant("A2"), "label": False, "source": SRC}


def test_kto_sharegpt_conversations_with_system_column():
    record = {"conversations": [{"from": "human", "value": "Q"}, {"from": "gpt", "value": "A"}],
              "system": "Sys", "label": True}
    example = convert(record, "kto")
    assert (example["prompt"], example["completion"]) == (chat(("system", "Sys"), ("user", "Q")), assistant("A"))


def test_kto_trl_unpaired_strings_and_lists():
    assert convert({"prompt": "Q", "completion": "A", "label": True}, "kto")["completion"] == assistant("A")
    example = convert({"prompt": user("Q"), "completion": assistant("A"), "label": 0}, "kto")
    assert (example["prompt"], example["label"]) == (user("Q"), False)


@pytest.mark.parametrize(("label", "expected"),
                         [(True, True), (False, False), (1, True), (0, False), ("true", True), ("FALSE", False),
                          (" True ", True), ("1", True), ("0", False)])
def test_kto_label_spellings(label, expected):
    assert convert({"prompt": "Q", "completion": "A", "label": label}, "kto")["label"] is expected


@pytest.mark.parametrize(
    ("record", "expected"),
    [
        ({"prompt": "Q", "completion": "A", "label": "yes"},
         "data.jsonl:7: column 'label' must be true or false (or 1/0), got 'yes'"),
        ({"prompt": "Q", "completion": "A", "label": 2},
         "data.jsonl:7: column 'label' must be true or false (or 1/0), got 2"),
        ({"prompt": "Q", "completion": "A"}, "data.jsonl:7: missing field 'label' (KTO data needs a true/false"),
        ({"prompt": "Q", "label": True}, "data.jsonl:7: missing field 'completion' (KTO data expects a 'messages'"),
        ({"messages": chat(("user", "Q"), ("assistant", "A"), ("user", "Q2")), "label": True},
         "data.jsonl:7: the conversation must end with the assistant's completion, got 'user'"),
        ({"messages": chat(("assistant", "A"), ("assistant", "B")), "label": True},
         "data.jsonl:7: the prompt must end with a user message, got 'assistant' last"),
        ({"prompt": "Q", "completion": "", "label": True}, "data.jsonl:7: 'completion' message 1 is empty"),
    ],
)
def test_kto_errors(record, expected):
    with pytest.raises(TunelabError) as err:
        convert(record, "kto")
    assert str(err.value).startswith(expected)


# ---- prompt-only ----------------------------------------------------------------------------------


def test_prompt_text_keeps_scalar_columns_as_extra():
    record = {"prompt": "2+2?", "answer": "4", "id": 7, "score": 0.5, "hard": False, "tests": [1], "none": None,
              "system": "Think."}
    assert convert(record, "prompt") == {
        "prompt": chat(("system", "Think."), ("user", "2+2?")),
        "extra": {"answer": "4", "id": 7, "score": 0.5, "hard": False}, "source": SRC,
    }


def test_prompt_message_list():
    messages = chat(("system", "S"), ("user", "Q"), ("assistant", "A"), ("user", "Q2"))
    assert convert({"prompt": messages}, "prompt") == {"prompt": messages, "extra": {}, "source": SRC}


@pytest.mark.parametrize(
    ("record", "expected"),
    [
        ({"question": "Q"}, "data.jsonl:7: missing field 'prompt' (prompt data expects a 'prompt' column"),
        ({"prompt": chat(("user", "Q"), ("assistant", "A"))},
         "data.jsonl:7: the prompt must end with a user message, got 'assistant' last"),
        ({"prompt": chat(("user", "Q"), ("system", "S"), ("user", "Q2"))},
         "data.jsonl:7: prompt message 2 is a system message; only the first may be"),
    ],
)
def test_prompt_errors(record, expected):
    with pytest.raises(TunelabError) as err:
        convert(record, "prompt")
    assert str(err.value).startswith(expected)


# ---- auto-detection and load_examples -----------------------------------------------------------


@pytest.mark.parametrize(
    ("columns", "expected"),
    [
        (("prompt", "chosen", "rejected"), "preference"),
        (("conversations", "chosen", "rejected"), "preference"),
        (("messages", "chosen", "rejected"), "preference"),
        (("instruction", "input", "chosen", "rejected"), "preference"),
        (("chosen", "rejected"), "preference"),
        (("messages", "label"), "kto"),
        (("conversations", "label"), "kto"),
        (("prompt", "completion", "label"), "kto"),
        (("prompt", "answer"), "prompt"),
        (("messages",), "messages"),
        (("instruction", "output"), "alpaca"),
    ],
)
def test_detection_picks_the_most_specific_format(columns, expected):
    assert detect_format(dict.fromkeys(columns, "x"), SRC) == expected


def test_load_examples_detects_preference_in_json_and_kto_in_jsonl(tmp_path):
    pairs = write_json(tmp_path, [{"prompt": "Q1", "chosen": "A", "rejected": "B"},
                                  {"prompt": "Q2", "chosen": "C", "rejected": "D"}])
    examples = load_examples(str(pairs))
    assert [e["source"] for e in examples] == [f"{pairs}:2", f"{pairs}:7"]
    assert examples[1]["prompt"] == user("Q2")
    kto = write_jsonl(tmp_path, [{"messages": chat(("user", "Q"), ("assistant", "A")), "label": "true"},
                                 {"messages": chat(("user", "Q"), ("assistant", "B")), "label": False}])
    assert [(e["label"], e["source"]) for e in load_examples(str(kto))] == [(True, f"{kto}:1"), (False, f"{kto}:2")]


def test_load_examples_detects_prompt_only_data(tmp_path):
    path = write_jsonl(tmp_path, [{"prompt": "2+2?", "answer": "4"}])
    assert load_examples(str(path)) == [{"prompt": user("2+2?"), "extra": {"answer": "4"},
                                         "source": f"{path}:1"}]


def test_forced_format_overrides_detection(tmp_path):
    # Detection would call this alpaca; LLaMA-Factory's older ranking form needs the format named.
    path = write_jsonl(tmp_path, [{"instruction": "Greet.", "output": ["Hello!", "Go away."]}])
    with pytest.raises(TunelabError, match="column 'output' must be str, got list"):
        load_examples(str(path))
    assert load_examples(str(path), format="preference")[0]["rejected"] == assistant("Go away.")
    prompts = write_jsonl(tmp_path, [{"prompt": "Q", "completion": "A", "label": True}], "kto.jsonl")
    assert load_examples(str(prompts), format="prompt")[0]["extra"] == {"completion": "A", "label": True}


PAIR = {"prompt": "Fine", "chosen": "X", "rejected": "Y"}
UNPAIRED = {"prompt": "Fine", "completion": "X", "label": True}


@pytest.mark.parametrize(
    ("good", "bad", "format", "expected"),
    [
        (PAIR, {"prompt": "Q", "chosen": "A"}, "preference", "missing field 'rejected'"),
        (PAIR, {"prompt": "Q", "chosen": "A", "rejected": "A"}, None, "chosen and rejected are the same"),
        (UNPAIRED, {"prompt": "Q", "completion": "A", "label": "maybe"}, None,
         "column 'label' must be true or false (or 1/0), got 'maybe'"),
        (PAIR, {"prompt": chat(("user", "Q"), ("assistant", "A")), "chosen": "B", "rejected": "C"}, None,
         "the prompt must end with a user message, got 'assistant' last"),
        ({"prompt": "Fine"}, {"prompt": chat(("user", "Q"), ("assistant", "A"))}, None,
         "the prompt must end with a user message, got 'assistant' last"),
    ],
)
def test_load_examples_errors_name_the_line(tmp_path, good, bad, format, expected):
    path = write_jsonl(tmp_path, [good, bad])
    with pytest.raises(TunelabError) as err:
        load_examples(str(path), format=format)
    assert str(err.value).startswith(f"{path}:2: {expected}")

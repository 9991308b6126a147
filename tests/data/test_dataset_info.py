"""LLaMA-Factory data directories (dataset_info.json) through the public load_examples API."""

import json
import sys
import types
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tunelab.data import load_examples, loading
from tunelab.errors import TunelabError

DATA = Path(__file__).resolve().parent.parent / "assets" / "llamafactory"
INFO = DATA / "dataset_info.json"


def roles(example):
    return [message["role"] for message in example["messages"]]


def make_dir(tmp_path, info):
    (tmp_path / "dataset_info.json").write_text(json.dumps(info, indent=2), encoding="utf-8")
    return tmp_path


def test_alpaca_demo_keeps_element_lines_and_ignores_extra_columns():
    examples = load_examples(str(DATA), "alpaca_en_demo")
    assert [e["source"] for e in examples] == [f"{DATA}/alpaca_en_demo.json:{n}" for n in (2, 7, 12, 17)]
    user = "Transform the following sentence using a synonym.\n\nThe car sped quickly."
    assert examples[1]["messages"][0] == {"role": "user", "content": user}
    assert all(roles(e) == ["user", "assistant"] for e in examples)


def test_chinese_and_identity_placeholders_pass_through_unchanged():
    zh = load_examples(str(DATA), "alpaca_zh_demo")
    assert zh[1]["messages"][0]["content"].startswith("输入三支篮球队的名称并生成一个适当的口号。\n\n输入：俄克拉荷马城")
    identity = load_examples(str(DATA), "identity")
    assert "I am {{name}}, an AI assistant developed by {{author}}." in identity[0]["messages"][1]["content"]


def test_glaive_toolcall_demo():
    first, plain_tools, no_tools = load_examples(str(DATA), "glaive_toolcall_en_demo")
    assert roles(first) == ["user", "assistant", "tool", "assistant"]
    assert first["tools"][0]["function"]["name"] == "convert_currency"
    assert first["messages"][1]["tool_calls"][0]["function"]["name"] == "convert_currency"
    assert first["messages"][2]["content"].startswith("{\"converted_amount\": 425.5")
    assert roles(plain_tools) == ["user", "assistant"] and plain_tools["tools"]
    assert roles(no_tools) == ["user", "assistant"] and "tools" not in no_tools


def test_openai_style_data_via_sharegpt_tags():
    examples = load_examples(str(DATA), "openai_demo")
    assert roles(examples[0]) == ["system", "user", "assistant"]
    assert roles(examples[1]) == ["user", "assistant", "user", "assistant"]
    assert examples[2]["source"] == f"{DATA}/openai_demo.json:3"


def test_c4_prompt_column_is_pretraining_text():
    examples = load_examples(str(DATA), "c4_demo")
    assert len(examples) == 4 and set(examples[0]) == {"text", "source"}
    assert examples[1] == {"text": "Discussion in 'Mac OS X Lion (10.7)' started by axboi87, Jan 20, 2012.",
                           "source": f"{DATA}/c4_demo.jsonl:2"}


def test_csv_with_column_mapping():
    examples = load_examples(str(DATA), "qa_csv_demo")
    assert [e["source"].rsplit(":", 1)[1] for e in examples] == ["2", "3", "6"]
    assert examples[1]["messages"] == [{"role": "user", "content": "Write two lines:\r\nfirst and second"},
                                       {"role": "assistant", "content": "first\r\nsecond"}]


def test_system_and_history_columns():
    with_history, with_input, two_turns = load_examples(str(DATA), "alpaca_history_demo")
    assert roles(with_history) == ["system", "user", "assistant", "user", "assistant"]
    assert with_history["messages"][0]["content"] == "You are a concise assistant."
    assert roles(with_input) == ["user", "assistant"]
    history = ["Name a planet.", "Mars.", "Another one?", "Jupiter."]
    assert [m["content"] for m in two_turns["messages"][:4]] == history


def test_several_datasets_are_concatenated_in_order():
    examples = load_examples(str(DATA), "identity, c4_demo,alpaca_en_demo")
    files = [Path(e["source"].rsplit(":", 1)[0]).name for e in examples]
    assert files == ["identity.json"] * 3 + ["c4_demo.jsonl"] * 4 + ["alpaca_en_demo.json"] * 4


def test_num_samples_takes_the_first_n():
    examples = load_examples(str(DATA), "alpaca_en_first2")
    assert examples == load_examples(str(DATA), "alpaca_en_demo")[:2]


def test_unknown_dataset_suggests_a_close_name():
    with pytest.raises(TunelabError) as err:
        load_examples(str(DATA), "alpaca_en_dmeo")
    message = str(err.value)
    assert message.startswith(f"unknown dataset 'alpaca_en_dmeo' in {INFO} (available: identity, alpaca_en_demo,")
    assert message.endswith("did you mean 'alpaca_en_demo'?")


def test_directory_without_dataset_name_lists_the_choices():
    with pytest.raises(TunelabError, match=r"dataset_info.json: choose a dataset from this directory \(available"):
        load_examples(str(DATA))


def test_ranking_sharegpt_data_loads_as_preference():
    first, _, multi_turn, *rest = load_examples(str(DATA), "dpo_en_demo")
    assert first == {
        "prompt": [{"role": "user", "content": "Name a fruit."}],
        "chosen": [{"role": "assistant", "content": "An apple."}],
        "rejected": [{"role": "assistant", "content": "A carrot."}],
        "source": f"{DATA}/dpo_en_demo.json:2",
    }
    assert [m["role"] for m in multi_turn["prompt"]] == ["user", "assistant", "user"] and len(rest) == 3


def test_ranking_alpaca_data_maps_instruction_input_and_system():
    translate, prime = load_examples(str(DATA), "dpo_alpaca_demo")
    assert translate["prompt"] == [{"role": "user", "content": "Translate to French.\n\nGood morning"}]
    assert (translate["chosen"], translate["rejected"]) == ([{"role": "assistant", "content": "Bonjour"}],
                                                            [{"role": "assistant", "content": "Bonsoir"}])
    assert [m["role"] for m in prime["prompt"]] == ["system", "user"]
    assert prime["source"] == f"{DATA}/dpo_alpaca_demo.jsonl:2"


def test_kto_tag_column_loads_as_kto():
    examples = load_examples(str(DATA), "kto_en_demo")
    assert [e["label"] for e in examples] == [True, False, True, False]
    assert examples[0] == {"prompt": [{"role": "user", "content": "What is the capital of France?"}],
                           "completion": [{"role": "assistant", "content": "The capital of France is Paris."}],
                           "label": True, "source": f"{DATA}/kto_en_demo.json:2"}
    assert [m["role"] for m in examples[2]["prompt"]] == ["system", "user", "assistant", "user"]
    assert examples[2]["completion"] == [{"role": "assistant", "content": "Blue."}]


def test_ranking_alpaca_output_pair_and_sharegpt_overrides(tmp_path):
    (tmp_path / "old.jsonl").write_text('{"q": "Hi", "output": ["Hello!", "Go away."]}\n', encoding="utf-8")
    (tmp_path / "chat.jsonl").write_text(
        '{"dialog": [{"role": "user", "content": "Hi"}], "good": {"role": "assistant", "content": "Hello!"}, '
        '"bad": {"role": "assistant", "content": "Go away."}}\n', encoding="utf-8")
    directory = make_dir(tmp_path, {
        "old": {"file_name": "old.jsonl", "ranking": True, "columns": {"prompt": "q"}},
        "chat": {"file_name": "chat.jsonl", "ranking": True, "formatting": "sharegpt",
                 "columns": {"messages": "dialog", "chosen": "good", "rejected": "bad"}},
    })
    old, chat = load_examples(str(directory), "old,chat")
    assert {key: old[key] for key in ("prompt", "chosen", "rejected")} == {
        key: chat[key] for key in ("prompt", "chosen", "rejected")} == {
        "prompt": [{"role": "user", "content": "Hi"}],
        "chosen": [{"role": "assistant", "content": "Hello!"}],
        "rejected": [{"role": "assistant", "content": "Go away."}],
    }


def test_hub_failure_says_to_download_locally(monkeypatch):
    def offline(*args, **kwargs):
        raise ConnectionError("Name or service not known")

    monkeypatch.setitem(sys.modules, "datasets", types.SimpleNamespace(load_dataset=offline))
    with pytest.raises(TunelabError) as err:
        load_examples(str(DATA), "alpaca_gpt4_en")
    message = str(err.value)
    assert message.startswith(f"{INFO}:70: dataset 'alpaca_gpt4_en': could not load 'llamafactory/alpaca_gpt4_en'")
    assert "the hub could not be reached" in message and "download the data into a local file" in message


def test_hub_dataset_uses_subset_and_split(tmp_path, monkeypatch):
    calls = []

    def fake_load(url, name=None, split=None):
        calls.append((url, name, split))
        return [{"text": "a"}, {"text": "b"}]

    monkeypatch.setitem(sys.modules, "datasets", types.SimpleNamespace(load_dataset=fake_load))
    directory = make_dir(tmp_path, {"web": {"hf_hub_url": "org/web", "subset": "en", "split": "validation",
                                            "columns": {"prompt": "text"}}})
    assert load_examples(str(directory), "web") == [{"text": "a", "source": "hf://org/web:row 1"},
                                                    {"text": "b", "source": "hf://org/web:row 2"}]
    assert calls == [("org/web", "en", "validation")]


def test_builtin_prefix_reads_the_package_directory(monkeypatch):
    monkeypatch.setattr(loading, "BUILTIN_DIR", DATA)
    assert load_examples("builtin:identity") == load_examples(str(DATA), "identity")


def test_folder_file_name_and_parquet(tmp_path):
    folder = tmp_path / "parts"
    folder.mkdir()
    pq.write_table(pa.table({"instruction": ["q1"], "output": ["a1"]}), folder / "b.parquet")
    (folder / "a.jsonl").write_text('{"instruction": "q0", "output": "a0"}\n', encoding="utf-8")
    (folder / "notes.md").write_text("ignored", encoding="utf-8")
    examples = load_examples(str(make_dir(tmp_path, {"parts": {"file_name": "parts"}})), "parts")
    assert [e["source"] for e in examples] == [f"{folder}/a.jsonl:1", f"{folder}/b.parquet:row 1"]
    assert examples[1]["messages"][1] == {"role": "assistant", "content": "a1"}


def test_entry_without_formatting_falls_back_to_detection(tmp_path):
    (tmp_path / "chat.jsonl").write_text('{"messages": [{"role": "user", "content": "q"}, '
                                         '{"role": "assistant", "content": "a"}]}\n', encoding="utf-8")
    examples = load_examples(str(make_dir(tmp_path, {"chat": {"file_name": "chat.jsonl"}})), "chat")
    assert [m["content"] for m in examples[0]["messages"]] == ["q", "a"]


@pytest.mark.parametrize(
    ("entry", "expected"),
    [
        ({"file_name": "gone.json"}, "gone.json: no such file (looked in "),
        ({"ms_hub_url": "x/y"}, "dataset 'd': 'ms_hub_url' sources are not supported"),
        ({"file_name": "d.jsonl", "columns": {"images": "images"}}, "column 'images' means image data"),
        ({"file_name": "d.jsonl", "num_samples": 0}, "num_samples must be a positive integer, got 0"),
        ({"file_name": "d.jsonl", "formatting": "chatml"}, "unknown formatting 'chatml' (supported: alpaca,"),
        ({"file_name": "d.jsonl", "formatting": "alpaca"}, "d.jsonl:1: missing field 'instruction'"),
        ({"file_name": "d.jsonl", "columns": {"chosen": "c", "rejected": "r"}},
         "dataset 'd': columns 'chosen'/'rejected' are preference data; add \"ranking\": true"),
        ({"file_name": "d.jsonl", "ranking": True, "columns": {"kto_tag": "label"}},
         "dataset 'd': \"ranking\": true (paired preference data) and a 'kto_tag' column (KTO data) cannot"),
        ({"file_name": "d.jsonl", "ranking": True, "formatting": "chatml"}, "unknown formatting 'chatml'"),
        ({"file_name": "d.jsonl", "ranking": True}, "d.jsonl:1: missing field 'chosen' (preference data expects"),
    ],
)
def test_bad_entries(tmp_path, entry, expected):
    (tmp_path / "d.jsonl").write_text('{"text": "t"}\n', encoding="utf-8")
    with pytest.raises(TunelabError) as err:
        load_examples(str(make_dir(tmp_path, {"d": entry})), "d")
    assert expected in str(err.value)


def test_dataset_name_needs_a_directory_with_dataset_info(tmp_path):
    with pytest.raises(TunelabError, match="c4_demo.jsonl: a dataset name .* only applies to a directory with"):
        load_examples(str(DATA / "c4_demo.jsonl"), "c4_demo")
    with pytest.raises(TunelabError, match=r"dataset_info.json: no such file \(a data directory needs"):
        load_examples(str(tmp_path), "x")

"""Format converters: alpaca, sharegpt (with tools), OpenAI messages, text, and auto-detection."""

import json

import pytest

from tunelab.data import load_examples
from tunelab.data.formats import convert_records, detect_format
from tunelab.data.tools import as_text_tags, render_tools
from tunelab.errors import TunelabError

SRC = "data.jsonl:7"
TOOLS = [{"name": "add", "description": "Add numbers", "parameters": {"type": "object"}}]


def convert(record, format, overrides=None):
    return convert_records([(record, SRC)], format, overrides)[0]


def chat(*pairs):
    return [{"role": role, "content": content} for role, content in pairs]


def test_alpaca_joins_input_and_renders_system_and_history():
    record = {"instruction": "Translate.", "input": "Bonjour", "output": "Hello", "system": "Be brief.",
              "history": [["Hi", "Hello!"]], "extra": 1}
    assert convert(record, "alpaca") == {
        "messages": chat(("system", "Be brief."), ("user", "Hi"), ("assistant", "Hello!"),
                         ("user", "Translate.\n\nBonjour"), ("assistant", "Hello")),
        "source": SRC,
    }


def test_alpaca_empty_input_and_system_are_left_out():
    example = convert({"instruction": "Hi", "input": "", "output": "Hello", "system": ""}, "alpaca")
    assert example["messages"] == chat(("user", "Hi"), ("assistant", "Hello"))


def test_alpaca_missing_output_names_the_line():
    with pytest.raises(TunelabError) as err:
        convert({"instruction": "Hi", "input": ""}, "alpaca")
    expected = "data.jsonl:7: missing field 'output' (alpaca format expects instruction, input, output)"
    assert str(err.value) == expected


def test_alpaca_bad_history_is_an_error():
    with pytest.raises(TunelabError, match=r"data.jsonl:7: column 'history' must be a list of \[user, "):
        convert({"instruction": "a", "output": "b", "history": [["only one"]]}, "alpaca")


def test_sharegpt_system_column_and_role_aliases():
    turns = [("human", "a"), ("gpt", "b"), ("user", "c"), ("assistant", "d")]
    record = {"system": "Sys", "conversations": [{"from": role, "value": text} for role, text in turns]}
    assert convert(record, "sharegpt")["messages"] == chat(
        ("system", "Sys"), ("user", "a"), ("assistant", "b"), ("user", "c"), ("assistant", "d"))


WRAPPED = [{"type": "function", "function": TOOLS[0]}]
SHAREGPT_TOOLS = {"tools": json.dumps(TOOLS), "conversations": [
    {"from": "human", "value": "1+2?"},
    {"from": "function_call", "value": '{"name": "add", "arguments": {"a": 1, "b": 2}}'},
    {"from": "observation", "value": '{"result": 3}'},
    {"from": "gpt", "value": "3"}]}
ADD_CALL = {"id": "call00000", "type": "function", "function": {"name": "add", "arguments": {"a": 1, "b": 2}}}


def test_sharegpt_tools_function_call_and_observation_become_openai_shaped():
    example = convert(SHAREGPT_TOOLS, "sharegpt")
    assert example["tools"] == WRAPPED  # LLaMA-Factory's bare definitions, wrapped as OpenAI function tools
    assert example["messages"] == [
        {"role": "user", "content": "1+2?"},
        {"role": "assistant", "content": "", "tool_calls": [ADD_CALL]},
        {"role": "tool", "content": '{"result": 3}'},
        {"role": "assistant", "content": "3"}]


def test_text_tag_fallback_writes_what_tunelab_wrote_before_tool_support():
    example = convert(SHAREGPT_TOOLS, "sharegpt")
    messages = as_text_tags(example["messages"], example["tools"])
    assert messages[0] == {"role": "system", "content": render_tools("", TOOLS).lstrip("\n")}
    assert messages[0]["content"].startswith("# Tools\nYou may call these tools:\n<tools>\n[{\"name\": \"add\"")
    assert messages[0]["content"].endswith(
        '</tools>\nTo call a tool, reply with <tool_call>{"name": ..., "arguments": ...}</tool_call>.')
    assert messages[1:] == chat(
        ("user", "1+2?"),
        ("assistant", '<tool_call>\n{"name": "add", "arguments": {"a": 1, "b": 2}}\n</tool_call>'),
        ("user", '<tool_response>\n{"result": 3}\n</tool_response>'),
        ("assistant", "3"))


def test_tools_keep_the_system_message_and_empty_tools_add_nothing():
    turns = [{"from": "human", "value": "q"}, {"from": "gpt", "value": "a"}]
    record = {"tools": TOOLS, "conversations": [{"from": "system", "value": "Be exact."}, *turns]}
    example = convert(record, "sharegpt")
    assert example["messages"][0] == {"role": "system", "content": "Be exact."}
    system = as_text_tags(example["messages"], example["tools"])[0]
    assert system == {"role": "system", "content": render_tools("Be exact.", TOOLS)}
    assert system["content"].startswith("Be exact.\n\n# Tools\n")
    no_tools = convert({"tools": "[]", "conversations": turns}, "sharegpt")
    assert no_tools["messages"] == chat(("user", "q"), ("assistant", "a")) and "tools" not in no_tools


def test_parallel_function_calls_and_bad_call_json():
    record = {"conversations": [
        {"from": "human", "value": "q"},
        {"from": "function_call", "value": '[{"name": "a", "arguments": {}}, {"name": "b", "arguments": "{\\"x\\": 1}"}]'},
        {"from": "observation", "value": "r"}, {"from": "gpt", "value": "done"}]}
    calls = convert(record, "sharegpt")["messages"][1]["tool_calls"]
    assert [(c["id"], c["function"]["name"], c["function"]["arguments"]) for c in calls] == \
        [("call00000", "a", {}), ("call00001", "b", {"x": 1})]
    record["conversations"][1]["value"] = "add(1, 2)"
    with pytest.raises(TunelabError, match="data.jsonl:7: message 2: a function_call turn must hold JSON"):
        convert(record, "sharegpt")


def test_invalid_tools_json_names_the_line():
    record = {"tools": "[{oops", "conversations": [{"from": "human", "value": "q"}, {"from": "gpt", "value": "a"}]}
    with pytest.raises(TunelabError, match="data.jsonl:7: column 'tools' is not valid JSON"):
        convert(record, "sharegpt")


def test_openai_messages_with_tool_role_and_tool_calls():
    call = {"id": "c1", "type": "function", "function": {"name": "add", "arguments": '{"a": 1}'}}
    record = {"messages": [
        {"role": "user", "content": "go"},
        {"role": "assistant", "content": None, "tool_calls": [call]},
        {"role": "tool", "content": "1", "tool_call_id": "c1"},
        {"role": "assistant", "content": [{"type": "text", "text": "done"}]}]}
    assert convert(record, "messages")["messages"] == [
        {"role": "user", "content": "go"},
        {"role": "assistant", "content": "",
         "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "add", "arguments": {"a": 1}}}]},
        {"role": "tool", "content": "1", "tool_call_id": "c1"},
        {"role": "assistant", "content": "done"}]


def test_openai_legacy_function_call_and_function_role():
    record = {"messages": [
        {"role": "user", "content": "go"},
        {"role": "assistant", "content": None, "function_call": {"name": "add", "arguments": '{"a": 1}'}},
        {"role": "function", "name": "add", "content": "1"},
        {"role": "assistant", "content": "done"}]}
    messages = convert(record, "messages")["messages"]
    assert messages[1]["tool_calls"][0]["function"] == {"name": "add", "arguments": {"a": 1}}
    assert messages[2] == {"role": "tool", "content": "1", "name": "add"}


def test_reasoning_field_and_think_block_give_one_canonical_field():
    think = convert({"messages": chat(("user", "q"), ("assistant", "<think>\nstep 1\n</think>\n\nA"))}, "messages")
    field = convert({"messages": [{"role": "user", "content": "q"},
                                  {"role": "assistant", "content": "A", "reasoning_content": "step 1"}]}, "messages")
    alpaca = convert({"instruction": "q", "output": "<think>step 1</think>A"}, "alpaca")
    expected = [{"role": "user", "content": "q"}, {"role": "assistant", "content": "A", "reasoning_content": "step 1"}]
    assert think["messages"] == field["messages"] == alpaca["messages"] == expected
    both = {"messages": [{"role": "user", "content": "q"},
                         {"role": "assistant", "content": "<think>x</think>A", "reasoning_content": "y"}]}
    with pytest.raises(TunelabError, match="message 2: the answer has a <think> block and field 'reasoning_content'"):
        convert(both, "messages")


def test_text_format_and_column_mapping():
    assert convert({"text": "hello"}, "text") == {"text": "hello", "source": SRC}
    assert convert({"body": "hi"}, "text", {"prompt": "body"}) == {"text": "hi", "source": SRC}
    with pytest.raises(TunelabError, match="data.jsonl:7: field 'text' must be non-empty text"):
        convert({"text": ""}, "text")


def test_unknown_role_names_line_role_and_allowed_roles():
    record = {"conversations": [{"from": "human", "value": "q"}, {"from": "bot", "value": "a"}]}
    with pytest.raises(TunelabError) as err:
        convert(record, "sharegpt")
    message = str(err.value)
    assert message.startswith("data.jsonl:7: message 2 has unknown role 'bot' (allowed: human, gpt, system, ")
    assert "observation, function_call" in message


@pytest.mark.parametrize(
    ("turns", "expected"),
    [
        ([("human", "q")], "data.jsonl:7: the last message must be from the assistant, got 'user'"),
        ([("human", "q"), ("gpt", "a"), ("observation", "r")], "must be from the assistant, got 'tool'"),
        ([("human", "q"), ("system", "s"), ("gpt", "a")], "data.jsonl:7: system message 2 must be the first"),
        ([], "data.jsonl:7: conversation has no messages"),
    ],
)
def test_conversation_shape_errors(turns, expected):
    record = {"conversations": [{"from": role, "value": text} for role, text in turns]}
    with pytest.raises(TunelabError) as err:
        convert(record, "sharegpt")
    assert expected in str(err.value)


@pytest.mark.parametrize(
    ("record", "format"),
    [
        ({"messages": []}, "messages"),
        ({"conversations": [], "tools": ""}, "sharegpt"),
        ({"instruction": "", "input": "", "output": ""}, "alpaca"),
        ({"text": "", "meta": {}}, "text"),
    ],
)
def test_detect_format(record, format):
    assert detect_format(record, SRC) == format


def test_undetectable_format_lists_the_expected_columns(tmp_path):
    path = tmp_path / "odd.jsonl"
    path.write_text('{"question": "q", "answer": "a"}\n', encoding="utf-8")
    with pytest.raises(TunelabError, match=r"odd.jsonl:1: cannot tell the data format from columns \[question, "):
        load_examples(str(path))


def test_forced_format_and_unknown_format(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text('{"text": "plain", "instruction": "i", "output": "o"}\n', encoding="utf-8")
    assert load_examples(str(path), format="text") == [{"text": "plain", "source": f"{path}:1"}]
    assert load_examples(str(path))[0]["messages"][-1] == {"role": "assistant", "content": "o"}
    with pytest.raises(TunelabError, match=r"unknown data format 'chatml' \(supported: alpaca, sharegpt, messages"):
        load_examples(str(path), format="chatml")


def test_csv_with_json_encoded_conversations(tmp_path):
    path = tmp_path / "c.csv"
    turns = json.dumps([{"from": "human", "value": "q"}, {"from": "gpt", "value": "a, b"}]).replace('"', '""')
    path.write_text(f'conversations,tools\n"{turns}",\n', encoding="utf-8")
    expected = {"messages": chat(("user", "q"), ("assistant", "a, b")), "source": f"{path}:2"}
    assert load_examples(str(path)) == [expected]


def test_txt_file_loads_as_text_examples(tmp_path):
    path = tmp_path / "corpus.txt"
    path.write_text("one\n\ntwo\n", encoding="utf-8")
    expected = [{"text": "one", "source": f"{path}:1"}, {"text": "two", "source": f"{path}:3"}]
    assert load_examples(str(path)) == expected

"""Tool-use data through the model's own template: OpenAI tool_calls + tool results and ShareGPT function_call /
observation render exactly as `apply_chat_template(..., tools=...)` does with the published Qwen2.5 template, labels
cover the assistant's calls and answers only, and templates without tool support get the text tags (logged)."""
import json
import logging

from family_models import STANDS, TEMPLATES, build_tokenizer

from tunelab.data import load_examples
from tunelab.data.templates import render_conversation, template_support
from tunelab.data.tokenize import IGNORE, TokenizeStats, conversation_rows

TOOL = {"name": "get_weather", "description": "Weather of a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}
OPENAI = {"tools": [{"type": "function", "function": TOOL}], "messages": [
    {"role": "system", "content": "You help with weather."},
    {"role": "user", "content": "Weather in Paris?"},
    {"role": "assistant", "content": None, "tool_calls": [
        {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}]},
    {"role": "tool", "tool_call_id": "call_1", "content": '{"temp": 21}'},
    {"role": "assistant", "content": "It is 21 degrees in Paris."}]}
SHAREGPT = {"tools": json.dumps([TOOL]), "system": "You help with weather.", "conversations": [
    {"from": "human", "value": "Weather in Paris?"},
    {"from": "function_call", "value": json.dumps({"name": "get_weather", "arguments": {"city": "Paris"}})},
    {"from": "observation", "value": '{"temp": 21}'},
    {"from": "gpt", "value": "It is 21 degrees in Paris."}]}
# what Hugging Face documents apply_chat_template to take: arguments as an object
DOCUMENTED = [OPENAI["messages"][0], OPENAI["messages"][1],
              {"role": "assistant", "content": "", "tool_calls": [
                  {"type": "function", "function": {"name": "get_weather", "arguments": {"city": "Paris"}}}]},
              {"role": "tool", "content": '{"temp": 21}'}, OPENAI["messages"][4]]


def tokenizer(stand: str):
    return build_tokenizer(STANDS[stand], (TEMPLATES / f"{STANDS[stand].template}.jinja").read_text())


def example(tmp_path, record: dict, name: str) -> dict:
    path = tmp_path / name
    path.write_text(json.dumps(record) + "\n", encoding="utf-8")
    return load_examples(str(path))[0]


def single_row(tok, ex):
    rows = conversation_rows(tok, ex, 2048, TokenizeStats())
    assert len(rows) == 1
    return rows[0]


def labelled_text(tok, row) -> list[str]:
    runs, current = [], []
    for token, label in zip(row["input_ids"], row["labels"]):
        if label != IGNORE:
            current.append(token)
        elif current:
            runs.append(tok.decode(current))
            current = []
    return runs + ([tok.decode(current)] if current else [])


def test_qwen25_tool_conversation_renders_exactly_as_apply_chat_template(tmp_path):
    tok = tokenizer("qwen2")
    assert template_support(tok).tools
    expected = tok.apply_chat_template(DOCUMENTED, tools=[{"type": "function", "function": TOOL}], tokenize=False)
    assert "<tools>" in expected and "<tool_response>" in expected  # the template's own tool rendering
    ex = example(tmp_path, OPENAI, "openai.jsonl")
    assert render_conversation(tok, ex["messages"], tools=ex["tools"]) == expected
    row = single_row(tok, ex)
    assert row["input_ids"] == tok(expected, add_special_tokens=False)["input_ids"]


def test_labels_cover_the_call_and_the_answer_not_the_tool_result(tmp_path):
    tok = tokenizer("qwen2")
    runs = labelled_text(tok, single_row(tok, example(tmp_path, OPENAI, "openai.jsonl")))
    assert runs == ['<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call><|im_end|>',
                    "It is 21 degrees in Paris.<|im_end|>"]


def test_sharegpt_function_call_and_observation_give_the_same_tokens(tmp_path):
    tok = tokenizer("qwen2")
    openai, sharegpt = example(tmp_path, OPENAI, "openai.jsonl"), example(tmp_path, SHAREGPT, "sharegpt.jsonl")
    assert single_row(tok, openai)["input_ids"] == single_row(tok, sharegpt)["input_ids"]
    assert single_row(tok, openai)["labels"] == single_row(tok, sharegpt)["labels"]


def test_a_template_without_tool_support_gets_text_tags_and_says_so(tmp_path, caplog):
    tok = tokenizer("smollm2")
    with caplog.at_level(logging.INFO, logger="tunelab"):
        assert not template_support(tok).tools
    assert any("no tool support" in record.getMessage() for record in caplog.records)
    row = single_row(tok, example(tmp_path, OPENAI, "openai.jsonl"))
    text = tok.decode(row["input_ids"])
    assert "# Tools\nYou may call these tools:" in text and "<|im_start|>user\n<tool_response>" in text
    runs = labelled_text(tok, row)
    assert runs[0].startswith("<tool_call>\n{\"name\": \"get_weather\"") and "21 degrees" in runs[1]
    assert not any("temp" in run for run in runs)


def test_tools_and_reasoning_survive_a_clean_round_trip(tmp_path):
    from tunelab.data.records import write_jsonl

    reasoning = {"messages": [{"role": "user", "content": "q"},
                              {"role": "assistant", "content": "<think>\nstep\n</think>\n\nA"}]}
    first = [example(tmp_path, OPENAI, "openai.jsonl"), example(tmp_path, SHAREGPT, "sharegpt.jsonl"),
             example(tmp_path, reasoning, "reasoning.jsonl")]
    write_jsonl(tmp_path / "out.jsonl", first)
    again = load_examples(str(tmp_path / "out.jsonl"))
    strip = [{k: v for k, v in e.items() if k != "source"} for e in first]
    assert [{k: v for k, v in e.items() if k != "source"} for e in again] == strip

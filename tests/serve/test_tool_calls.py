"""Tool calling through `tunelab serve`: each family's call format parsed into OpenAI's `tool_calls`, requests
with tools / tool_choice / tool results checked, and the official `openai` client against a tiny Qwen2.5-style
model trained by tunelab to call one tool, with and without streaming."""
import json
import socket
import threading
import time

import openai
import pytest
import torch
import uvicorn
import yaml
from family_models import STANDS, build_model_dir

from tunelab.data.families import FAMILIES
from tunelab.serve.api import create_app
from tunelab.serve.requests import ChatRequest, Message
from tunelab.serve.limits import APIError, ServeSettings
from tunelab.serve.models import ModelSpec, load_registry
from tunelab.serve.toolcalls import TOOL_FORMATS, ContentGate, model_tool_format

WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "Current weather of a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}
ASK = "What is the weather in Paris?"


# ---- parsing each family's format --------------------------------------------------------------------------


@pytest.mark.parametrize("name, text, expected", [
    ("hermes", 'Let me check.\n<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>',
     ("Let me check.", [{"name": "get_weather", "arguments": {"city": "Paris"}}])),
    ("hermes", '<tool_call>\n{"name": "a", "arguments": {}}\n</tool_call>\n<tool_call>\n{"name": "b", "arguments": '
     '"{\\"x\\": 1}"}\n</tool_call>', (None, [{"name": "a", "arguments": {}}, {"name": "b", "arguments": {"x": 1}}])),
    ("hermes", '<tool_call>\n{"name": "a", "arguments": {"k": 2}}', (None, [{"name": "a", "arguments": {"k": 2}}])),
    ("llama3-json", '<|python_tag|>{"name": "get_weather", "parameters": {"city": "Paris"}}',
     (None, [{"name": "get_weather", "arguments": {"city": "Paris"}}])),
    ("mistral", '[TOOL_CALLS] [{"name": "a", "arguments": {"q": 1}}, {"name": "b", "arguments": {}}]',
     (None, [{"name": "a", "arguments": {"q": 1}}, {"name": "b", "arguments": {}}])),
    ("glm4", 'get_weather\n{"city": "Paris"}', (None, [{"name": "get_weather", "arguments": {"city": "Paris"}}])),
])
def test_each_format_parses_its_calls(name, text, expected):
    assert TOOL_FORMATS[name].parse(text) == expected


@pytest.mark.parametrize("name, text", [
    ("hermes", "No call here."), ("hermes", "<tool_call>\n{not json}\n</tool_call>"),
    ("hermes", '<tool_call>\n{"arguments": {}}\n</tool_call>'), ("llama3-json", "Paris is sunny."),
    ("llama3-json", '{"city": "Paris"}'), ("mistral", "[1, 2]"), ("glm4", "Just an answer.\nOn two lines."),
])
def test_text_without_a_well_formed_call_stays_content(name, text):
    assert TOOL_FORMATS[name].parse(text) is None


def test_streaming_holds_back_what_may_start_a_call():
    gate = ContentGate(TOOL_FORMATS["hermes"])
    sent = [gate.feed(piece) for piece in ("Let me ", "check.<tool", "_call>\n{\"name\"", ": \"x\"}")]
    assert "".join(sent) == "Let me check." and gate.holding
    plain = ContentGate(TOOL_FORMATS["hermes"])
    assert "".join(plain.feed(p) for p in ("Paris is <too", "k warm")) + plain.rest() == "Paris is <took warm"
    at_start = ContentGate(TOOL_FORMATS["llama3-json"])
    assert at_start.feed(" {") == "" and at_start.feed('"name"') == "" and at_start.holding
    answer = ContentGate(TOOL_FORMATS["llama3-json"])
    assert answer.feed("Sunny") == "Sunny" and answer.feed(" {x}") == " {x}"


def test_every_family_names_a_registered_format_and_the_fallback_is_hermes():
    for family in FAMILIES.values():
        assert family.tool_call is None or family.tool_call in TOOL_FORMATS, family.name
        expected = family.tool_call or "hermes"
        assert model_tool_format(family, native_tools=True).name == expected
        assert model_tool_format(family, native_tools=False).name == "hermes"  # the text tags it was trained on
    assert model_tool_format(None, native_tools=True).name == "hermes"


# ---- requests ------------------------------------------------------------------------------------------------


def request(**fields) -> ChatRequest:
    return ChatRequest.model_validate({"messages": [{"role": "user", "content": ASK}], **fields})


def test_earlier_calls_and_tool_results_become_canonical_messages():
    call = {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}
    assistant = Message.model_validate({"role": "assistant", "content": None, "tool_calls": [call]}).as_dict()
    assert assistant == {"role": "assistant", "content": "", "tool_calls": [
        {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": {"city": "Paris"}}}]}
    result = Message.model_validate({"role": "tool", "tool_call_id": "call_1", "content": [{"type": "text",
                                                                                              "text": "sunny"}]})
    assert result.as_dict() == {"role": "tool", "content": "sunny", "tool_call_id": "call_1"}


def test_tool_choice_decides_what_is_rendered_and_forced():
    hermes = TOOL_FORMATS["hermes"]
    other = {"type": "function", "function": {"name": "send_mail"}}
    assert request(tools=[WEATHER]).tool_use(hermes).prefill == ""
    assert request(tools=[WEATHER], tool_choice="none").tool_use(hermes) is None
    assert request(tools=[WEATHER], tool_choice="required").tool_use(hermes).prefill == "<tool_call>\n"
    named = request(tools=[WEATHER, other], tool_choice={"type": "function", "function": {"name": "get_weather"}})
    use = named.tool_use(hermes)
    assert [tool["function"]["name"] for tool in use.tools] == ["get_weather"]
    assert use.parse('{"city": "Paris"}}\n</tool_call>') == (None, [{"name": "get_weather",
                                                                     "arguments": {"city": "Paris"}}])
    assert named.tool_use(TOOL_FORMATS["mistral"]).prefill == ""  # only parsed: the format has no call opening
    for bad, message in [({"tool_choice": {"type": "function", "function": {"name": "nope"}}, "tools": [WEATHER]},
                          "not among the tools"), ({"tool_choice": "required"}, "needs tools")]:
        with pytest.raises(APIError, match=message) as refused:
            request(**bad).tool_use(hermes)
        assert refused.value.status == 400 and refused.value.param == "tool_choice"


def test_parallel_tool_calls_false_keeps_the_first_call():
    two = '<tool_call>\n{"name": "a", "arguments": {}}\n</tool_call>\n<tool_call>\n{"name": "b", "arguments": {}}'
    hermes = TOOL_FORMATS["hermes"]
    assert len(request(tools=[WEATHER]).tool_use(hermes).parse(two)[1]) == 2
    assert request(tools=[WEATHER], parallel_tool_calls=False).tool_use(hermes).parse(two)[1] == [
        {"name": "a", "arguments": {}}]


# ---- the official client against a model trained to call the tool -------------------------------------------


@pytest.fixture(scope="module")
def tool_run(tmp_path_factory):
    """A tiny Qwen2.5-style model (its published template renders tools) fine-tuned by tunelab on a tool-call
    conversation: asked for the weather in Paris, it calls get_weather, then answers from the result."""
    from tunelab.config import load_config
    from tunelab.train import train

    folder = tmp_path_factory.mktemp("tool_run")
    model_dir = build_model_dir(STANDS["qwen2"], folder / "base")
    call = {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}
    conversation = {"tools": [WEATHER], "messages": [
        {"role": "user", "content": ASK}, {"role": "assistant", "content": None, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": "call_1", "content": '{"sky": "sunny"}'},
        {"role": "assistant", "content": "It is sunny."}]}
    plain = {"messages": [{"role": "user", "content": "Hello"}, {"role": "assistant", "content": "Hello there."}]}
    (folder / "data.jsonl").write_text("".join(json.dumps(r) + "\n" for r in [conversation, plain] * 4),
                                       encoding="utf-8")
    config = {"model": {"path": str(model_dir)}, "data": {"path": str(folder / "data.jsonl")},
              "method": {"name": "full"},
              "train": {"max_steps": 60, "batch_size": 8, "lr": 3e-3, "precision": "fp32", "report_to": "none",
                        "logging_steps": 60},
              "output": {"dir": str(folder / "run")}}
    (folder / "run.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")
    return train(load_config(folder / "run.yaml")).run_dir


@pytest.fixture(scope="module")
def client(tool_run):
    registry = load_registry([ModelSpec("agent", str(tool_run))], torch.float32, "cpu")
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(create_app(registry, ServeSettings(max_tokens_limit=300)),
                                           log_level="warning", access_log=False))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    yield openai.OpenAI(base_url=f"http://127.0.0.1:{sock.getsockname()[1]}/v1", api_key="x", max_retries=0,
                        timeout=60)
    server.should_exit = True
    thread.join(timeout=10)
    sock.close()


def ask(client, **kwargs):
    return client.chat.completions.create(model="agent", messages=[{"role": "user", "content": ASK}],
                                          tools=[WEATHER], temperature=0, max_tokens=150, **kwargs)


def test_the_client_gets_tool_calls_with_name_and_json_arguments(client):
    choice = ask(client).choices[0]
    assert choice.finish_reason == "tool_calls" and not choice.message.content
    (call,) = choice.message.tool_calls
    assert call.type == "function" and call.id.startswith("call_")
    assert call.function.name == "get_weather" and json.loads(call.function.arguments) == {"city": "Paris"}


def test_streamed_tool_calls_accumulate_as_the_client_expects(client):
    names, arguments, finish, content = [], "", None, ""
    for chunk in ask(client, stream=True):
        for choice in chunk.choices:
            delta = choice.delta
            content += delta.content or ""
            for call in delta.tool_calls or []:
                names += [call.function.name] if call.function.name else []
                arguments += call.function.arguments or ""
            finish = choice.finish_reason or finish
    assert finish == "tool_calls" and names == ["get_weather"] and json.loads(arguments) == {"city": "Paris"}
    assert "<tool_call>" not in content


def test_tool_results_and_earlier_calls_are_accepted_and_answered(client):
    call = {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}
    answer = client.chat.completions.create(model="agent", tools=[WEATHER], temperature=0, max_tokens=60, messages=[
        {"role": "user", "content": ASK}, {"role": "assistant", "content": None, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": "call_1", "content": '{"sky": "sunny"}'}])
    assert answer.choices[0].finish_reason == "stop" and answer.choices[0].message.content == "It is sunny."
    assert not answer.choices[0].message.tool_calls


def test_tool_choice_none_and_named_and_unknown(client):
    assert not ask(client, tool_choice="none").choices[0].message.tool_calls
    forced = ask(client, tool_choice={"type": "function", "function": {"name": "get_weather"}}).choices[0]
    assert forced.message.tool_calls[0].function.name == "get_weather"
    with pytest.raises(openai.BadRequestError, match="not among the tools"):
        ask(client, tool_choice={"type": "function", "function": {"name": "send_mail"}})
    with pytest.raises(openai.BadRequestError, match="tool_choice needs tools"):
        client.chat.completions.create(model="agent", messages=[{"role": "user", "content": "Hi"}],
                                       tool_choice="required")

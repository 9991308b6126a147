"""The OpenAI-compatible API through FastAPI's TestClient on the tiny model: answers equal the engine's,
streaming, stop strings, auth, limits, OpenAI-style errors, adapter runs sharing one base, and 32
concurrent clients. Greedy decoding throughout, so answers are exact."""
import json
import logging
from concurrent.futures import ThreadPoolExecutor

import pytest
import torch
from fastapi.testclient import TestClient

from tunelab.runs import load_any
from tunelab.serve import ChatEngine, GenerationSettings
from tunelab.serve.api import create_app
from tunelab.serve.limits import ServeSettings
from tunelab.serve.models import ModelSpec, load_registry, parse_model_spec

QUESTION = [{"role": "user", "content": "What is your name?"}]
LIMITS = ServeSettings(max_tokens_limit=64, max_prompt_tokens=200, max_body_bytes=4000)


def _chat(model: str = "tiny", **extra) -> dict:
    return {"model": model, "messages": QUESTION, "max_tokens": 8, "temperature": 0, **extra}


def _events(text: str) -> list[str]:
    return [block[len("data: "):] for block in text.split("\n\n") if block.startswith("data: ")]


@pytest.fixture(scope="module")
def tiny(tiny_model_dir):
    return load_registry([ModelSpec("tiny", str(tiny_model_dir))], torch.float32, "cpu")


@pytest.fixture(scope="module")
def client(tiny):
    with TestClient(create_app(tiny, LIMITS)) as client:
        yield client


@pytest.fixture(scope="module")
def adapter_runs(overfit_lora_run) -> dict:
    """Two LoRA runs on the tiny base, each overfit on its own answer so they answer differently."""
    return {name: str(overfit_lora_run(name, answer, ["What is your name?"] * 8))
            for name, answer in (("quill", "My name is Quill."), ("cats", "I like green cats!"))}


@pytest.fixture(scope="module")
def shared(adapter_runs):
    specs = [parse_model_spec(f"{name}={path}") for name, path in adapter_runs.items()]
    return load_registry(specs, torch.float32, "cpu")


def test_chat_answer_is_shaped_like_openais_and_equals_the_engines(client, tiny):
    engine = tiny.get("tiny").engine
    response = client.post("/v1/chat/completions", json=_chat())
    assert response.status_code == 200
    body = response.json()
    assert body["object"] == "chat.completion" and body["model"] == "tiny" and body["id"].startswith("chatcmpl-")
    choice = body["choices"][0]
    assert choice["index"] == 0 and choice["message"]["role"] == "assistant"
    assert choice["message"]["content"].strip() == engine.generate([QUESTION], GenerationSettings(8, 0.0))[0]
    usage = body["usage"]
    assert usage["prompt_tokens"] == len(engine.chat_prompt(QUESTION))
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    assert (choice["finish_reason"] == "length") == (usage["completion_tokens"] == 8)


def test_completions_continue_plain_text_without_the_chat_template(client, tiny):
    engine = tiny.get("tiny").engine
    response = client.post("/v1/completions", json={"prompt": "The quick brown", "max_tokens": 5, "temperature": 0})
    assert response.status_code == 200
    body = response.json()
    assert body["object"] == "text_completion" and body["model"] == "tiny"  # no `model`: the default
    expected = engine.complete(engine.text_prompt("The quick brown"), GenerationSettings(5, 0.0))
    assert body["choices"][0]["text"] == expected.text
    assert body["usage"]["prompt_tokens"] == len(engine.text_prompt("The quick brown"))


def test_stream_sends_role_then_several_chunks_then_done_with_the_same_text(client):
    whole = client.post("/v1/chat/completions", json=_chat()).json()
    response = client.post("/v1/chat/completions", json=_chat(stream=True, stream_options={"include_usage": True}))
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/event-stream")
    events = _events(response.text)
    assert events[-1] == "[DONE]"
    chunks = [json.loads(event) for event in events[:-1]]
    assert all(c["object"] == "chat.completion.chunk" and c["id"] == chunks[0]["id"] for c in chunks)
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    pieces = [c["choices"][0]["delta"].get("content") for c in chunks[1:] if c["choices"]]
    assert len([p for p in pieces if p]) >= 2
    assert "".join(p for p in pieces if p) == whole["choices"][0]["message"]["content"]
    assert chunks[-2]["choices"][0]["finish_reason"] == whole["choices"][0]["finish_reason"]
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"] == whole["usage"]


def test_text_completion_stream_has_text_chunks(client):
    whole = client.post("/v1/completions", json={"prompt": "Paris is", "max_tokens": 6, "temperature": 0}).json()
    events = _events(client.post("/v1/completions", json={"prompt": "Paris is", "max_tokens": 6, "temperature": 0,
                                                          "stream": True}).text)
    chunks = [json.loads(event) for event in events[:-1]]
    assert events[-1] == "[DONE]" and all(c["object"] == "text_completion" for c in chunks)
    assert "".join(c["choices"][0]["text"] for c in chunks) == whole["choices"][0]["text"]


@pytest.mark.parametrize("stream", [False, True])
def test_answer_ends_before_a_stop_string(client, stream):
    text = client.post("/v1/chat/completions", json=_chat()).json()["choices"][0]["message"]["content"]
    assert len(text) >= 4, text
    stop = text[2:4]
    response = client.post("/v1/chat/completions", json=_chat(stop=["\x00never", stop], stream=stream))
    if stream:
        chunks = [json.loads(event) for event in _events(response.text)[:-1]]
        answer = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks[1:])
        finish = chunks[-1]["choices"][0]["finish_reason"]
    else:
        choice = response.json()["choices"][0]
        answer, finish = choice["message"]["content"], choice["finish_reason"]
    assert answer == text[:text.index(stop)] and finish == "stop"


def test_models_and_health(client):
    assert client.get("/health").json() == {"status": "ok", "models": ["tiny"]}
    models = client.get("/v1/models").json()
    assert models["object"] == "list" and [m["id"] for m in models["data"]] == ["tiny"]
    assert client.get("/v1/models/tiny").json()["object"] == "model"


def _assert_openai_error(response, status: int, code: str | None = None) -> dict:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["message"]
    if code:
        assert error["code"] == code
    return error


def test_api_key_is_required_except_for_health(tiny):
    with TestClient(create_app(tiny, ServeSettings(api_key="sesame"))) as locked:
        _assert_openai_error(locked.get("/v1/models"), 401, "invalid_api_key")
        _assert_openai_error(locked.post("/v1/chat/completions", json=_chat(),
                                         headers={"Authorization": "Bearer wrong"}), 401)
        assert locked.get("/health").status_code == 200
        ok = locked.post("/v1/chat/completions", json=_chat(), headers={"Authorization": "Bearer sesame"})
        assert ok.status_code == 200


def test_limits_refuse_large_bodies_answers_and_prompts(client):
    _assert_openai_error(client.post("/v1/chat/completions", json=_chat(padding="x" * 5000)), 413, "request_too_large")
    chunked = client.post("/v1/completions", content=iter([b'{"prompt": "', b"x" * 5000, b'"}']),
                          headers={"content-type": "application/json"})  # no Content-Length: counted as it arrives
    _assert_openai_error(chunked, 413)
    error = _assert_openai_error(client.post("/v1/chat/completions", json=_chat(max_tokens=65)), 400)
    assert error["param"] == "max_tokens"
    long_prompt = [{"role": "user", "content": "hello world " * 150}]
    _assert_openai_error(client.post("/v1/chat/completions", json=_chat(messages=long_prompt)), 400,
                         "context_length_exceeded")
    _assert_openai_error(client.post("/v1/chat/completions", json=_chat(n=17)), 400)  # above MAX_N


@pytest.mark.parametrize("body", [b'{"messages": [', b"not json at all"])
def test_malformed_json_is_a_400(client, body):
    _assert_openai_error(client.post("/v1/chat/completions", content=body,
                                     headers={"content-type": "application/json"}), 400)


@pytest.mark.parametrize("change", [{"messages": "hi"}, {"messages": []}, {"temperature": "hot"}, {"max_tokens": 0},
                                    {"stream": "yes"}, {"messages": [{"role": "robot", "content": "x"}]}])
def test_wrong_types_and_values_are_a_400_naming_the_field(client, change):
    error = _assert_openai_error(client.post("/v1/chat/completions", json=_chat(**change)), 400)
    assert next(iter(change)) in error["message"]


def test_unknown_model_and_route_are_openai_404s(client):
    _assert_openai_error(client.post("/v1/chat/completions", json=_chat("nope")), 404, "model_not_found")
    _assert_openai_error(client.get("/v1/nothing-here"), 404)


def test_unexpected_errors_are_a_logged_generic_500(client, tiny, monkeypatch, caplog):
    def broken(*args, **kwargs):
        raise RuntimeError("secret internals")

    monkeypatch.setattr(tiny.get("tiny").engine.model, "forward", broken)
    with caplog.at_level(logging.ERROR, logger="tunelab"):
        error = _assert_openai_error(client.post("/v1/chat/completions", json=_chat()), 500)
    assert "secret" not in error["message"] and "secret internals" in caplog.text
    events = _events(client.post("/v1/chat/completions", json=_chat(stream=True)).text)
    assert json.loads(events[-2])["error"]["type"] == "server_error" and events[-1] == "[DONE]"


def test_one_log_line_per_answer(client, caplog):
    with caplog.at_level(logging.INFO, logger="tunelab"):
        client.post("/v1/chat/completions", json=_chat())
    lines = [r.getMessage() for r in caplog.records if "tokens_in=" in r.getMessage()]
    assert len(lines) == 1 and "model=tiny" in lines[0] and "latency=" in lines[0]


def test_adapter_runs_over_one_base_share_it_and_answer_with_their_adapter(shared, adapter_runs):
    quill, cats = shared.get("quill"), shared.get("cats")
    assert quill.engine.model is cats.engine.model and quill.adapter != cats.adapter
    assert set(quill.engine.model.peft_config) == {quill.adapter, cats.adapter}
    answers = {}
    with TestClient(create_app(shared, LIMITS)) as client:
        for name in ("quill", "cats", "quill"):
            body = client.post("/v1/chat/completions", json=_chat(name, max_tokens=10)).json()
            assert body["model"] == name
            answers.setdefault(name, set()).add(body["choices"][0]["message"]["content"])
    for name, path in adapter_runs.items():  # each alone, loaded the usual way
        alone = ChatEngine(load_any(path))
        assert answers[name] == {alone.generate([QUESTION], GenerationSettings(10, 0.0))[0]}
    assert answers["quill"] != answers["cats"]


def test_a_base_served_beside_its_adapter_runs_is_that_model_with_adapters_off(adapter_runs, tiny_model_dir):
    """`--model BASE --model a=RUN --model b=RUN`: one copy of the base in memory; concurrent requests for all
    three batch per adapter (lanes) and each answers as it would alone."""
    specs = [parse_model_spec(f"base={tiny_model_dir}")] + [parse_model_spec(f"{name}={path}")
                                                            for name, path in adapter_runs.items()]
    registry = load_registry(specs, torch.float32, "cpu")
    assert [served.name for served in registry] == ["base", "quill", "cats"]
    base, quill = registry.get("base"), registry.get("quill")
    assert base.engine.model is quill.engine.model and base.base
    expected = {"base": ChatEngine(load_any(str(tiny_model_dir))).generate([QUESTION], GenerationSettings(8, 0.0))[0]}
    expected.update({name: ChatEngine(load_any(path)).generate([QUESTION], GenerationSettings(8, 0.0))[0]
                     for name, path in adapter_runs.items()})
    assert len(set(expected.values())) == 3
    with TestClient(create_app(registry, LIMITS)) as client:
        with ThreadPoolExecutor(12) as pool:
            results = list(pool.map(lambda i: client.post("/v1/chat/completions", json=_chat(
                ("base", "quill", "cats")[i % 3])).json(), range(12)))
    for body in results:
        assert body["choices"][0]["message"]["content"].strip() == expected[body["model"]]


def test_32_concurrent_clients_all_get_their_models_answer(shared):
    with TestClient(create_app(shared, LIMITS)) as client:
        expected = {name: client.post("/v1/chat/completions", json=_chat(name)).json()["choices"][0]["message"]
                    for name in ("quill", "cats")}

        def ask(index: int):
            name = ("quill", "cats")[index % 2]
            return name, client.post("/v1/chat/completions", json=_chat(name, stream=index % 4 == 3))

        with ThreadPoolExecutor(32) as pool:
            results = list(pool.map(ask, range(32)))
    for name, response in results:
        assert response.status_code == 200
        if response.headers["content-type"].startswith("text/event-stream"):
            chunks = [json.loads(event) for event in _events(response.text)[:-1]]
            assert all(c["model"] == name for c in chunks)
            assert "".join(c["choices"][0]["delta"].get("content", "") for c in chunks) == expected[name]["content"]
        else:
            assert response.json()["model"] == name and response.json()["choices"][0]["message"] == expected[name]


def test_a_path_as_model_name_is_never_loaded(client, tiny_model_dir, monkeypatch):
    import tunelab.runs.loading as loading

    def must_not_load(*args, **kwargs):
        raise AssertionError("a request made the server load a model")

    monkeypatch.setattr(loading, "load_any", must_not_load)
    for name in (str(tiny_model_dir), "/etc/passwd", "../runs/x", "builtin:smollm2"):
        _assert_openai_error(client.post("/v1/chat/completions", json=_chat(name)), 404, "model_not_found")


@pytest.mark.parametrize("host, key, warned", [("127.0.0.1", None, False), ("::1", None, False),
                                                ("localhost", None, False), ("0.0.0.0", None, True),
                                                ("0.0.0.0", "k", False), ("example.org", None, True)])
def test_binding_beyond_loopback_without_a_key_warns(host, key, warned):
    from tunelab.cli.serve import exposure_warning

    message = exposure_warning(host, key)
    assert bool(message) == warned
    if warned:
        assert host in message and "--api-key" in message


def test_the_server_binds_loopback_by_default():
    from tunelab.cli.main import build_parser

    assert build_parser().parse_args(["serve", "--model", "m"]).host == "127.0.0.1"

"""The real `openai` client against a live uvicorn on a free local port: models, chat, streaming, text
completions and its exceptions; and a client that leaves mid-stream stops its generation without
stalling the next request."""
import json
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

import httpx
import openai
import pytest
import torch
import uvicorn

from tunelab.serve import GenerationSettings
from tunelab.serve.api import create_app
from tunelab.serve.limits import ServeSettings
from tunelab.serve.models import ModelSpec, load_registry

KEY = "test-key"
QUESTION = [{"role": "user", "content": "What is your name?"}]


@pytest.fixture(scope="module")
def registry(tiny_model_dir):
    return load_registry([ModelSpec("tiny", str(tiny_model_dir))], torch.float32, "cpu")


@contextmanager
def live(app):
    """The app served by uvicorn in a background thread, on a socket bound to a free port beforehand."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.started, "uvicorn did not start"
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}/v1"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


@pytest.fixture(scope="module")
def app(registry):
    return create_app(registry, ServeSettings(api_key=KEY, max_tokens_limit=4000, max_prompt_tokens=500))


@pytest.fixture(scope="module")
def base_url(app):
    with live(app) as url:
        yield url


@pytest.fixture()
def client(base_url):
    return openai.OpenAI(base_url=base_url, api_key=KEY, max_retries=0, timeout=30)


def test_models_list(client):
    assert [model.id for model in client.models.list()] == ["tiny"]


def test_chat_completion(client):
    answer = client.chat.completions.create(model="tiny", messages=QUESTION, max_tokens=6, temperature=0)
    assert answer.model == "tiny" and answer.choices[0].message.role == "assistant"
    assert answer.choices[0].message.content and answer.choices[0].finish_reason in ("stop", "length")
    assert answer.usage.total_tokens == answer.usage.prompt_tokens + answer.usage.completion_tokens


def test_streaming_yields_several_chunks_with_the_same_text(client):
    whole = client.chat.completions.create(model="tiny", messages=QUESTION, max_tokens=6, temperature=0)
    chunks = list(client.chat.completions.create(model="tiny", messages=QUESTION, max_tokens=6, temperature=0,
                                                 stream=True))
    assert len(chunks) >= 3
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == whole.choices[0].message.content
    assert chunks[-1].choices[0].finish_reason == whole.choices[0].finish_reason


def test_text_completion(client):
    answer = client.completions.create(model="tiny", prompt="The quick brown", max_tokens=4, temperature=0)
    assert answer.object == "text_completion" and isinstance(answer.choices[0].text, str)


def test_client_exceptions(base_url, client):
    wrong = openai.OpenAI(base_url=base_url, api_key="wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        wrong.models.list()
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="missing", messages=QUESTION, max_tokens=2)
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model="tiny", messages=QUESTION, max_tokens=4001)


def _steps(app) -> float:
    """Decoding steps so far, from the server's own /metrics histogram of batch sizes."""
    return sum(sample.value for metric in app.state.server.metrics.batch_size.collect() for sample in metric.samples
               if sample.name == "tunelab_batch_size_count")


def test_a_client_leaving_mid_stream_stops_its_generation_and_stalls_nobody(base_url, client, registry, app):
    engine = registry.get("tiny").engine
    uninterrupted = engine.complete(engine.text_prompt("Tokyo"), GenerationSettings(4000, 0.0)).completion_tokens
    assert uninterrupted > 100  # greedy runs a while before it meets EOS: long enough to leave in the middle
    before = _steps(app)
    stream = client.completions.create(model="tiny", prompt="Tokyo", max_tokens=4000, temperature=0, stream=True)
    assert next(iter(stream)).choices[0].text is not None  # generation has begun; now leave
    stream.close()
    started = time.monotonic()
    answer = client.completions.create(model="tiny", prompt="Hello", max_tokens=3, temperature=0)
    assert answer.choices[0].text is not None and time.monotonic() - started < 20
    deadline = time.monotonic() + 20
    while app.state.server.batcher.decoding and time.monotonic() < deadline:
        time.sleep(0.05)
    assert app.state.server.batcher.decoding == 0
    assert _steps(app) - before < uninterrupted - 10  # it stopped when its client left
    metrics = httpx.get(base_url.removesuffix("/v1") + "/metrics", headers={"Authorization": f"Bearer {KEY}"}).text
    assert 'tunelab_requests_total{model="tiny",outcome="cancelled"} 1.0' in metrics


def test_n_answers_are_choices_and_a_seed_reproduces_them(client):
    def ask(seed, n=3):
        return client.chat.completions.create(model="tiny", messages=QUESTION, max_tokens=12, temperature=1.0,
                                              seed=seed, n=n)

    first, again = ask(11), ask(11)
    assert [c.index for c in first.choices] == [0, 1, 2]
    texts = [c.message.content for c in first.choices]
    assert texts == [c.message.content for c in again.choices] and len(set(texts)) > 1
    assert any([c.message.content for c in ask(seed).choices] != texts for seed in (12, 13))
    lengths = [12 if c.finish_reason == "length" else None for c in first.choices]
    if None not in lengths:  # every answer ran to max_tokens: usage counts each of them
        assert first.usage.completion_tokens == 36
    assert 3 <= first.usage.completion_tokens <= 36
    greedy = client.chat.completions.create(model="tiny", messages=QUESTION, max_tokens=8, temperature=0, n=2)
    assert greedy.choices[0].message.content == greedy.choices[1].message.content


def test_n_answers_stream_as_indexed_chunks(client):
    whole = client.completions.create(model="tiny", prompt="The quick brown", max_tokens=8, temperature=1.0, seed=3,
                                      n=2)
    chunks = list(client.completions.create(model="tiny", prompt="The quick brown", max_tokens=8, temperature=1.0,
                                            seed=3, n=2, stream=True))
    texts = {index: "".join(c.choices[0].text for c in chunks if c.choices and c.choices[0].index == index)
             for index in (0, 1)}
    assert texts == {choice.index: choice.text for choice in whole.choices}


def test_logprobs_with_top_alternatives(client):
    answer = client.chat.completions.create(model="tiny", messages=QUESTION, max_tokens=6, temperature=0,
                                            logprobs=True, top_logprobs=2)
    content = answer.choices[0].logprobs.content
    assert content and all(len(entry.top_logprobs) == 2 for entry in content)
    for entry in content:  # greedy: the chosen token is the most likely one
        assert entry.logprob <= 0 and entry.token == entry.top_logprobs[0].token
        assert entry.logprob == entry.top_logprobs[0].logprob >= entry.top_logprobs[1].logprob
        assert entry.bytes == list(entry.token.encode())
    streamed = list(client.chat.completions.create(model="tiny", messages=QUESTION, max_tokens=6, temperature=0,
                                                   logprobs=True, top_logprobs=2, stream=True))
    tokens = [e.token for c in streamed if c.choices and c.choices[0].logprobs for e in c.choices[0].logprobs.content]
    assert tokens == [entry.token for entry in content]
    legacy = client.completions.create(model="tiny", prompt="The quick brown", max_tokens=5, temperature=0,
                                       logprobs=2)
    logprobs = legacy.choices[0].logprobs
    assert len(logprobs.tokens) == len(logprobs.token_logprobs) == len(logprobs.top_logprobs) > 0
    assert logprobs.text_offset[0] == len("The quick brown") and all(len(top) <= 2 for top in logprobs.top_logprobs)
    plain = client.chat.completions.create(model="tiny", messages=QUESTION, max_tokens=3, temperature=0)
    assert plain.choices[0].logprobs is None


def test_logit_bias_and_penalties_steer_the_answer(client, registry):
    tokenizer = registry.get("tiny").engine.tokenizer
    cat = tokenizer("cat", add_special_tokens=False)["input_ids"][0]
    piece = tokenizer.decode([cat])
    biased = client.completions.create(model="tiny", prompt="The quick brown", max_tokens=3, temperature=0,
                                       logit_bias={str(cat): 100}, logprobs=0)
    assert biased.choices[0].text == piece * 3
    plain = client.completions.create(model="tiny", prompt="The quick brown", max_tokens=3, temperature=0)
    penalized = client.completions.create(model="tiny", prompt="The quick brown", max_tokens=3, temperature=0,
                                          logit_bias={str(cat): 100}, frequency_penalty=2, presence_penalty=2)
    assert penalized.choices[0].text == piece * 3 and plain.choices[0].text != biased.choices[0].text
    with pytest.raises(openai.BadRequestError, match="logit_bias"):
        client.completions.create(model="tiny", prompt="x", max_tokens=2, logit_bias={"99999999": 5})


YES_NO = {"type": "object", "properties": {"answer": {"enum": ["yes", "no"]}}, "required": ["answer"],
          "additionalProperties": False}


@pytest.mark.parametrize("temperature", [0, 1.0])
def test_a_json_schema_response_format_gives_matching_json(client, temperature):
    """A tiny random model left alone writes noise; under the schema's grammar it can only write the object."""
    answer = client.chat.completions.create(
        model="tiny", messages=QUESTION, max_tokens=40, temperature=temperature, seed=1, n=2,
        response_format={"type": "json_schema", "json_schema": {"name": "verdict", "schema": YES_NO}})
    for choice in answer.choices:
        assert json.loads(choice.message.content)["answer"] in ("yes", "no") and choice.finish_reason == "stop"
    streamed = list(client.chat.completions.create(
        model="tiny", messages=QUESTION, max_tokens=40, temperature=0, stream=True,
        response_format={"type": "json_schema", "json_schema": {"name": "verdict", "schema": YES_NO}}))
    text = "".join(c.choices[0].delta.content or "" for c in streamed if c.choices)
    assert json.loads(text)["answer"] in ("yes", "no")


def test_json_object_answers_are_json_objects_as_far_as_they_go(client):
    answer = client.chat.completions.create(model="tiny", messages=QUESTION, max_tokens=60, temperature=0,
                                            response_format={"type": "json_object"})
    text = answer.choices[0].message.content.strip()
    assert text.startswith("{")
    if answer.choices[0].finish_reason == "stop":
        assert isinstance(json.loads(text), dict)


@pytest.mark.parametrize("response_format", [{"type": "xml"}, {"type": "json_schema", "json_schema": {"name": "x"}},
                                             {"type": "json_schema", "json_schema": {"schema": {"type": "nope"}}}])
def test_unusable_response_formats_are_a_400_naming_it(client, response_format):
    with pytest.raises(openai.BadRequestError, match="response_format"):
        client.chat.completions.create(model="tiny", messages=QUESTION, max_tokens=3, response_format=response_format)


def test_beyond_max_queue_requests_get_429_with_retry_after_and_the_rest_are_answered(registry):
    app = create_app(registry, ServeSettings(api_key=KEY, max_tokens_limit=4000, max_queue=3))
    with live(app) as url:
        client = openai.OpenAI(base_url=url, api_key=KEY, max_retries=0, timeout=60)

        def ask(_):
            try:
                return client.completions.create(model="tiny", prompt="Tokyo", max_tokens=150, temperature=0)
            except openai.RateLimitError as exc:
                return exc

        with ThreadPoolExecutor(10) as pool:
            results = list(pool.map(ask, range(10)))
        refused = [r for r in results if isinstance(r, openai.RateLimitError)]
        answered = [r for r in results if not isinstance(r, Exception)]
        assert len(answered) + len(refused) == 10 and answered and refused
        assert all(int(r.response.headers["retry-after"]) >= 1 for r in refused)
        assert refused[0].status_code == 429 and "--max-queue 3" in refused[0].message
        assert client.completions.create(model="tiny", prompt="Hi", max_tokens=2, temperature=0).choices
        metrics = httpx.get(url.removesuffix("/v1") + "/metrics", headers={"Authorization": f"Bearer {KEY}"}).text
    assert f'tunelab_requests_total{{model="tiny",outcome="rejected"}} {float(len(refused))}' in metrics
    assert 'tunelab_queue_depth 0.0' in metrics and "tunelab_request_latency_seconds_bucket" in metrics


def test_a_client_that_gives_up_on_a_whole_answer_frees_its_place(base_url, registry, app, monkeypatch):
    engine = registry.get("tiny").engine
    uninterrupted = engine.complete(engine.text_prompt("Tokyo"), GenerationSettings(4000, 0.0)).completion_tokens
    forward = engine.model.forward

    def slow(*args, **kwargs):  # 10 ms a step: the answer takes seconds, the client waits half of one
        time.sleep(0.01)
        return forward(*args, **kwargs)

    monkeypatch.setattr(engine.model, "forward", slow)
    impatient = openai.OpenAI(base_url=base_url, api_key=KEY, max_retries=0, timeout=0.5)
    before = _steps(app)
    with pytest.raises(openai.APITimeoutError):
        impatient.completions.create(model="tiny", prompt="Tokyo", max_tokens=4000, temperature=0)
    deadline = time.monotonic() + 20
    while app.state.server.batcher.decoding and time.monotonic() < deadline:
        time.sleep(0.05)
    assert app.state.server.batcher.decoding == 0 and _steps(app) - before < uninterrupted - 10

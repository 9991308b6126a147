"""The real `openai` client against a live uvicorn on a free local port: models, chat, streaming, text
completions and its exceptions; and a client that leaves mid-stream stops its generation without
stalling the next request."""
import socket
import threading
import time

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


@pytest.fixture(scope="module")
def base_url(registry):
    """The app served by uvicorn in a background thread, on a socket bound to a free port beforehand."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    app = create_app(registry, ServeSettings(api_key=KEY, max_tokens_limit=4000, max_prompt_tokens=500))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.started, "uvicorn did not start"
    yield f"http://127.0.0.1:{sock.getsockname()[1]}/v1"
    server.should_exit = True
    thread.join(timeout=10)
    sock.close()


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


def test_a_client_leaving_mid_stream_stops_its_generation_and_stalls_nobody(base_url, client, registry, monkeypatch):
    served = registry.get("tiny")
    engine = served.engine
    uninterrupted = engine.complete(engine.text_prompt("Tokyo"), GenerationSettings(4000, 0.0)).completion_tokens
    assert uninterrupted > 100  # greedy runs a while before it meets EOS: long enough to leave in the middle
    finished = []
    original = served.complete

    def recording(*args, **kwargs):
        finished.append(original(*args, **kwargs))
        return finished[-1]

    monkeypatch.setattr(served, "complete", recording)
    request = {"model": "tiny", "prompt": "Tokyo", "max_tokens": 4000, "temperature": 0, "stream": True}
    with httpx.Client(timeout=30) as http:
        with http.stream("POST", f"{base_url}/completions", json=request,
                         headers={"Authorization": f"Bearer {KEY}"}) as response:
            assert next(response.iter_lines()).startswith("data: ")  # generation has begun; now leave
    started = time.monotonic()
    answer = client.completions.create(model="tiny", prompt="Hello", max_tokens=3, temperature=0)
    assert answer.choices[0].text is not None and time.monotonic() - started < 20
    assert len(finished) == 2 and finished[0].completion_tokens < uninterrupted  # stopped when its client left

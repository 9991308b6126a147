"""`tunelab serve` as a process: HTTP on a thread, decoding on the main thread; it answers, reports /metrics,
stops cleanly on SIGTERM, and a taken port is one clear error."""
import signal
import socket
import subprocess
import sys
import time

import httpx
import pytest


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _serve(model_dir, port: int, *flags: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "tunelab", "serve", "--model", f"tiny={model_dir}", "--port",
                             str(port), *flags], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_healthy(url: str, process: subprocess.Popen) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        assert process.poll() is None, process.communicate()
        try:
            if httpx.get(url + "/health", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            time.sleep(0.3)
    pytest.fail("the server did not become healthy")


def test_serve_answers_reports_metrics_and_stops_on_sigterm(tiny_model_dir):
    port = _free_port()
    process = _serve(tiny_model_dir, port, "--max-batch", "4", "--max-queue", "8", "--request-timeout", "30")
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_healthy(url, process)
        body = {"model": "tiny", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 5, "n": 2,
                "temperature": 0}
        answer = httpx.post(url + "/v1/chat/completions", json=body, timeout=60).json()
        assert [choice["index"] for choice in answer["choices"]] == [0, 1]
        metrics = httpx.get(url + "/metrics", timeout=10).text
        assert 'tunelab_requests_total{model="tiny",outcome="ok"} 1.0' in metrics
    finally:
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=60)
    assert process.returncode == 0, err
    assert "Traceback" not in err


def test_a_taken_port_is_one_clear_error(tiny_model_dir):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        process = _serve(tiny_model_dir, port)
        out, err = process.communicate(timeout=120)
    assert process.returncode != 0 and "Traceback" not in err
    assert "could not start" in err and str(port) in err

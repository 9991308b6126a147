"""Latency and throughput of `tunelab serve` with the official `openai` client: the server runs in its own process
on a free local port, then 1 and 8 concurrent clients each send the same number of chat requests.

    .venv/bin/python bench/serve.py                      # the built-in model, 1 and 8 clients
    .venv/bin/python bench/serve.py --model runs/identity --clients 1 4 8 --requests 4 --max-tokens 64
"""
from __future__ import annotations

import argparse
import json
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PROMPTS = ["What is the capital of France?", "Name three colours of the rainbow.", "Why is the sky blue?",
           "Give me a tip for learning to cook.", "What does a bee make?", "How many legs does a spider have?",
           "Write one sentence about the sea.", "What is 12 plus 30?"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_healthy(url: str, server: subprocess.Popen, timeout: float = 300) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"server exited with {server.returncode}")
        try:
            with urllib.request.urlopen(url + "/health", timeout=2):
                return
        except OSError:
            time.sleep(1)
    raise SystemExit("server did not become healthy")


def one_request(client, model: str, prompt: str, max_tokens: int) -> tuple[float, int, str]:
    started = time.perf_counter()
    reply = client.chat.completions.create(model=model, messages=[{"role": "user", "content": prompt}],
                                           max_tokens=max_tokens, temperature=0)
    return time.perf_counter() - started, reply.usage.completion_tokens, reply.choices[0].message.content


def measure(client, model: str, clients: int, requests: int, max_tokens: int) -> dict:
    jobs = [PROMPTS[i % len(PROMPTS)] for i in range(clients * requests)]
    started = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        results = list(pool.map(lambda p: one_request(client, model, p, max_tokens), jobs))
    wall = time.perf_counter() - started
    latencies = sorted(r[0] for r in results)
    tokens = sum(r[1] for r in results)
    return {"clients": clients, "requests": len(jobs), "mean_latency_s": statistics.mean(latencies),
            "p95_latency_s": latencies[max(0, round(0.95 * len(latencies)) - 1)],
            "completion_tokens": tokens, "tokens_per_s": tokens / wall, "wall_s": wall,
            "sample": results[0][2][:80]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--requests", type=int, default=4, help="requests per client")
    parser.add_argument("--max-tokens", type=int, default=64)
    args = parser.parse_args()
    from openai import OpenAI

    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "tunelab", "serve", "--model", args.model, "--port", str(port),
                               "--api-key", "bench"], cwd=ROOT)
    try:
        url = f"http://127.0.0.1:{port}"
        wait_healthy(url, server)
        client = OpenAI(base_url=url + "/v1", api_key="bench", max_retries=0, timeout=600)
        model = client.models.list().data[0].id
        one_request(client, model, "Hi", 4)  # warm-up
        rows = [measure(client, model, n, args.requests, args.max_tokens) for n in args.clients]
    finally:
        server.terminate()
        server.wait(timeout=30)
    print("| clients | requests | mean latency s | p95 latency s | completion tokens/s (all clients) |")
    print("|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['clients']} | {r['requests']} | {r['mean_latency_s']:.2f} | {r['p95_latency_s']:.2f} "
              f"| {r['tokens_per_s']:.1f} |")
    print(f"first answer: {rows[0]['sample']!r}")
    out = ROOT / "bench" / "results" / "serve.json"
    out.write_text(json.dumps(rows, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())

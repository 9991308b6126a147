"""Latency and throughput of `tunelab serve` with the official `openai` client: the server runs in its own process
on a free local port, then 1, 8 and 32 concurrent clients each send the same number of chat requests (greedy,
the same max_tokens), once with the batching engine and once with `--max-batch 1` (one answer at a time, as
before batching); then 32 clients at once against `--max-queue 16`, counting the 429s.

    .venv/bin/python bench/serve.py                      # the built-in model
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
from contextlib import contextmanager
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


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, round(fraction * len(ordered)) - 1)]


def measure(client, model: str, clients: int, requests: int, max_tokens: int) -> dict:
    jobs = [PROMPTS[i % len(PROMPTS)] for i in range(clients * requests)]
    started = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        results = list(pool.map(lambda p: one_request(client, model, p, max_tokens), jobs))
    wall = time.perf_counter() - started
    latencies = [r[0] for r in results]
    tokens = sum(r[1] for r in results)
    return {"clients": clients, "requests": len(jobs), "p50_latency_s": statistics.median(latencies),
            "p95_latency_s": percentile(latencies, 0.95), "completion_tokens": tokens, "tokens_per_s": tokens / wall,
            "wall_s": wall, "sample": results[0][2][:80]}


def overload(client, model: str, clients: int, max_tokens: int) -> dict:
    """`clients` requests at once; how many were answered and how many refused with 429."""
    from openai import RateLimitError

    def ask(prompt: str):
        try:
            return one_request(client, model, prompt, max_tokens)
        except RateLimitError as exc:
            return int(exc.response.headers.get("retry-after", "0"))

    with ThreadPoolExecutor(clients) as pool:
        results = list(pool.map(ask, [PROMPTS[i % len(PROMPTS)] for i in range(clients)]))
    refused = [r for r in results if isinstance(r, int)]
    return {"clients": clients, "answered": len(results) - len(refused), "refused_429": len(refused),
            "retry_after_s": sorted(set(refused))}


@contextmanager
def server(model: str, *flags: str):
    from openai import OpenAI

    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "tunelab", "serve", "--model", model, "--port", str(port),
                                "--api-key", "bench", *flags], cwd=ROOT)
    try:
        url = f"http://127.0.0.1:{port}"
        wait_healthy(url, process)
        client = OpenAI(base_url=url + "/v1", api_key="bench", max_retries=0, timeout=600)
        served = client.models.list().data[0].id
        one_request(client, served, "Hi", 4)  # warm-up
        yield client, served, url
        alive = urllib.request.urlopen(urllib.request.Request(url + "/health"), timeout=10).status == 200
        if not alive or process.poll() is not None:
            raise SystemExit("the server died during the run")
    finally:
        process.terminate()
        process.wait(timeout=30)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--requests", type=int, default=4, help="requests per client")
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--max-batch", type=int, default=None, help="the batching server's --max-batch (default: "
                        "tunelab serve's)")
    parser.add_argument("--dtype", default="auto", help="the servers' --dtype (auto: bf16 where the CPU has it)")
    parser.add_argument("--skip-unbatched", action="store_true", help="leave out the --max-batch 1 comparison")
    args = parser.parse_args()

    rows = []
    batching = ("--max-batch", str(args.max_batch)) if args.max_batch else ()
    setups = [("batching" + (f" (--max-batch {args.max_batch})" if args.max_batch else ""), batching)] + ([] if args.skip_unbatched else [("one at a time (--max-batch 1)",
                                                                     ("--max-batch", "1"))])
    for label, flags in setups:
        with server(args.model, "--dtype", args.dtype, *flags) as (client, model, _):
            for clients in args.clients:
                rows.append({"setup": label, **measure(client, model, clients, args.requests, args.max_tokens)})
                print(rows[-1], flush=True)
    with server(args.model, "--dtype", args.dtype, "--max-queue", "16") as (client, model, _):
        pressure = overload(client, model, 32, args.max_tokens)
    single = {row["setup"]: row["tokens_per_s"] for row in rows if row["clients"] == 1}
    print("| setup | clients | requests | p50 latency s | p95 latency s | completion tokens/s (all clients) "
          "| x one client |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['setup']} | {r['clients']} | {r['requests']} | {r['p50_latency_s']:.2f} | "
              f"{r['p95_latency_s']:.2f} | {r['tokens_per_s']:.1f} | {r['tokens_per_s'] / single[r['setup']]:.2f} |")
    print(f"--max-queue 16, 32 clients at once: {pressure['answered']} answered, {pressure['refused_429']} got 429 "
          f"(Retry-After {pressure['retry_after_s']} s); the server stayed up")
    print(f"first answer: {rows[0]['sample']!r}")
    out = ROOT / "bench" / "results" / "serve.json"
    out.write_text(json.dumps({"rows": rows, "max_queue_16": pressure}, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())

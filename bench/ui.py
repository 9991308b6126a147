"""What the web UI costs: `tunelab ui` start-up, the page's load in headless Chromium, and the Runs tab's
refresh (every 2 s while the page is open) with many run directories, cold and with unchanged runs.

    .venv/bin/python bench/ui.py                    # 10, 100 and 500 synthetic runs
    .venv/bin/python bench/ui.py --runs 10 1000 --repeats 20

The page load needs Chromium (Debian's package); without it that row says so.
"""
from __future__ import annotations

import argparse
import json
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_ui(runs_dir: Path) -> tuple[subprocess.Popen, str, float]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    start = time.perf_counter()
    server = subprocess.Popen([sys.executable, "-m", "tunelab", "ui", "--port", str(port), "--runs-dir", str(runs_dir)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    while True:
        if server.poll() is not None:
            raise SystemExit(f"tunelab ui exited with {server.returncode}")
        try:
            with urllib.request.urlopen(url + "/health", timeout=2):
                return server, url, time.perf_counter() - start
        except OSError:
            time.sleep(0.1)


def page_load(url: str) -> float | None:
    executable = shutil.which("chromium")
    if executable is None:
        return None
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_FLAGS)
        page = browser.new_page()
        start = time.perf_counter()
        page.goto(url + "/")
        page.wait_for_selector("#config-yaml .cm-content")
        seconds = time.perf_counter() - start
        browser.close()
    return seconds


def make_runs(folder: Path, count: int, steps: int = 200) -> None:
    """Finished runs with a config, status, summary and a 200-line metrics.jsonl each."""
    import yaml

    metrics = "".join(json.dumps({"step": s, "loss": 3 / s, "lr": 1e-4}) + "\n" for s in range(1, steps + 1))
    for index in range(count):
        run = folder / f"run-{index:04d}"
        run.mkdir(parents=True)
        (run / "config.yaml").write_text(yaml.safe_dump({"method": {"name": "lora"}, "train": {"stage": "sft"}}))
        (run / "provenance.json").write_text("{}")
        (run / "status").write_text("finished\n")
        (run / "summary.json").write_text(json.dumps({"global_step": steps, "train_loss": 0.1}))
        (run / "metrics.jsonl").write_text(metrics)


def refresh_ms(folder: Path, repeats: int) -> tuple[float, float]:
    """(first refresh, mean of the next ones) of the Runs tab's timer handler, in milliseconds."""
    from tunelab.ui.context import UiContext
    from tunelab.ui.runs_tab import RunsTab

    tab = RunsTab(UiContext(folder))
    start = time.perf_counter()
    seen = tab.refresh("run-0000", None)[-1]
    cold = (time.perf_counter() - start) * 1000
    start = time.perf_counter()
    for _ in range(repeats):
        tab.refresh("run-0000", seen)
    return cold, (time.perf_counter() - start) * 1000 / repeats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, nargs="+", default=[10, 100, 500])
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        server, url, startup = start_ui(Path(tmp) / "runs")
        try:
            load = page_load(url)
        finally:
            server.terminate()
            server.wait(30)
        rows.append(("`tunelab ui` start to /health", f"{startup:.1f} s"))
        rows.append(("page load in Chromium (to the config preview)",
                     "no chromium" if load is None else f"{load:.2f} s"))
        for count in args.runs:
            folder = Path(tmp) / f"many-{count}"
            make_runs(folder, count)
            cold, warm = refresh_ms(folder, args.repeats)
            rows.append((f"Runs tab refresh, {count} runs: first / unchanged", f"{cold:.0f} ms / {warm:.1f} ms"))
    print("| what | time |\n|---|---|")
    for what, value in rows:
        print(f"| {what} | {value} |")


if __name__ == "__main__":
    main()

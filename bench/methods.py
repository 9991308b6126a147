"""Every adaptation method on the same model, data and settings: trainable parameters, tokens/s,
peak RSS and what it saves on disk. Each method trains in its own process (`tunelab train`).

    .venv/bin/python bench/methods.py                    # 20 steps of SFT on builtin:identity per method
    .venv/bin/python bench/methods.py --steps 3 --only lora --only bitfit
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def run_method(name: str, args: argparse.Namespace, work: Path) -> dict:
    run_dir = work / name
    overrides = [f"method.name={name}", f"train.max_steps={args.steps}", f"output.dir={run_dir}",
                 "output.overwrite=true", "train.report_to=none", f"train.num_threads={args.threads}",
                 "train.save_steps=0", "train.save_total_limit=1"]
    command = [sys.executable, "-m", "tunelab", "train", args.config, *overrides]
    start = time.perf_counter()
    with (work / f"{name}.log").open("w") as log:
        proc = subprocess.Popen(command, stdout=log, stderr=log, env={**os.environ, "OMP_NUM_THREADS": str(args.threads)})
        _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        tail = (work / f"{name}.log").read_text()[-400:]
        return {"method": name, "error": tail.strip().splitlines()[-1] if tail.strip() else "failed"}
    summary = json.loads((run_dir / "summary.json").read_text())
    saved = sum(f.stat().st_size for f in (run_dir / "model").rglob("*") if f.is_file() and f.suffix == ".safetensors")
    answer = reload_and_generate(run_dir, work / f"{name}-answers.jsonl")
    return {"method": name, "answer": answer, "trainable": summary["trainable_params"], "share": summary["trainable_params"] / summary["total_params"],
            "tokens_per_s": summary["train_tokens_per_s"], "train_loss": summary["train_loss"],
            "peak_rss_gb": usage.ru_maxrss / 2**20, "wall_s": wall, "saved_mb": saved / 2**20}


def reload_and_generate(run_dir: Path, out: Path) -> str:
    """Load the run back from disk (`tunelab generate --model RUN`) and answer one question."""
    prompt = out.with_suffix(".in.jsonl")
    prompt.write_text(json.dumps({"prompt": "What is your name?"}) + "\n")
    done = subprocess.run([sys.executable, "-m", "tunelab", "generate", "--model", str(run_dir), "--input", str(prompt),
                           "--output", str(out), "--max-new-tokens", "24"], capture_output=True, text=True)
    if done.returncode != 0:
        return "reload failed: " + (done.stderr.strip().splitlines() or ["?"])[-1]
    return json.loads(out.read_text().splitlines()[0])["response"].replace("\n", " ").replace("|", "/")[:60]


def table(rows: list[dict]) -> str:
    lines = ["| method | trainable | share | tokens/s | peak RSS GB | weights saved MB | train_loss | reloaded run answers |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['method']} | failed: {r['error']} | | | | | | |")
            continue
        lines.append(f"| {r['method']} | {r['trainable']:,} | {100 * r['share']:.2f}% | {r['tokens_per_s']:.0f} | "
                     f"{r['peak_rss_gb']:.2f} | {r['saved_mb']:.1f} | {r['train_loss']:.3f} | {r['answer']} |")
    return "\n".join(lines)


def main() -> int:
    from tunelab.methods import METHODS

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default=str(Path(__file__).resolve().parents[1] / "examples" / "identity_lora.yaml"))
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--only", action="append", choices=sorted(METHODS))
    parser.add_argument("--output", type=Path, default=Path(__file__).resolve().parent / "results" / "methods.json")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix="tunelab-methods-") as tmp:
        for name in args.only or sorted(METHODS):
            print(f"running {name} ...", file=sys.stderr, flush=True)
            rows.append(run_method(name, args, Path(tmp)))
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps({"steps": args.steps, "config": args.config, "rows": rows}, indent=2) + "\n")
    print(table(rows))
    return 1 if any("error" in r or r["answer"].startswith("reload failed") for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())

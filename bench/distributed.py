"""One process against several: the same global batch trained by 1 rank and by `--nproc N` ranks (torchrun, gloo on
CPU), each engine in its own run. Prints tokens/s, wall time and whether the per-step losses agree.

    .venv/bin/python bench/distributed.py                                   # default model, ddp, 2 ranks
    .venv/bin/python bench/distributed.py --engines ddp fsdp deepspeed_zero2 --steps 6 --nproc 2
"""
from __future__ import annotations

import argparse
import json
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "identity_lora.yaml"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def run(out: Path, nproc: int, batch: int, steps: int, engine: str) -> dict:
    command = [sys.executable, "-m", "tunelab", "train", str(EXAMPLE), f"output.dir={out}", "output.overwrite=true",
               f"train.max_steps={steps}", "train.logging_steps=1", f"train.batch_size={batch}",
               f"train.distributed={engine}", "train.report_to=none"]
    if nproc > 1:
        command += ["--nproc", str(nproc), "--master-addr", "127.0.0.1", "--master-port", str(free_port())]
    start = time.perf_counter()
    subprocess.run(command, check=True, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wall = time.perf_counter() - start
    summary = json.loads((out / "summary.json").read_text())
    losses = [json.loads(line)["loss"] for line in (out / "metrics.jsonl").read_text().splitlines() if '"loss"' in line]
    return {"ranks": nproc, "engine": engine, "batch_per_rank": batch, "tokens_per_s": summary["train_tokens_per_s"],
            "train_s": summary["train_runtime_s"], "wall_s": wall, "losses": losses}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nproc", type=int, default=2)
    parser.add_argument("--global-batch", type=int, default=8)
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--engines", nargs="+", default=["ddp"])
    parser.add_argument("--output", default=str(ROOT / "bench" / "results" / "distributed.json"))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        rows = [run(Path(tmp) / "one", 1, args.global_batch, args.steps, "ddp")]
        for engine in args.engines:
            rows.append(run(Path(tmp) / engine, args.nproc, args.global_batch // args.nproc, args.steps, engine))
    base = rows[0]["losses"]
    print("| ranks | engine | batch/rank | tokens/s | train s | wall s | max loss diff vs 1 rank |")
    print("|---|---|---|---|---|---|---|")
    for row in rows:
        diff = max(abs(a - b) / abs(a) for a, b in zip(base, row["losses"]))
        row["max_rel_loss_diff"] = diff
        print(f"| {row['ranks']} | {row['engine']} | {row['batch_per_rank']} | {row['tokens_per_s']:.1f} | "
              f"{row['train_s']:.1f} | {row['wall_s']:.1f} | {diff:.2%} |")
    Path(args.output).write_text(json.dumps(rows, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()

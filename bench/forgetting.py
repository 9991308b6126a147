"""Forgetting with and without the continual methods: the aggressive identity fine-tune of
examples/continual/identity_aggressive.yaml once per continual.method, each in its own process, then a table of
what was learned (held-out identity questions answered with the new name) and what was kept (general-knowledge
probes answered correctly, before -> after).

    .venv/bin/python bench/forgetting.py                         # none, kl, ewc, replay
    .venv/bin/python bench/forgetting.py --methods none ewc --override continual.weight=0.05
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "examples" / "continual" / "identity_aggressive.yaml"


def run(method: str, overrides: list[str], out_root: Path, train: bool = True) -> dict:
    out = out_root / f"forgetting-{method}"
    command = [sys.executable, "-m", "tunelab", "train", str(CONFIG), f"continual.method={method}",
               f"output.dir={out}", "output.overwrite=true", *overrides]
    started = time.perf_counter()
    if train:
        subprocess.run(command, check=True, cwd=ROOT)
    summary = json.loads((out / "summary.json").read_text())
    probes = summary["forgetting"]
    return {
        "method": method,
        "identity": summary["eval"]["metrics"]["contains"],
        "probes_before": probes["base_metrics"]["contains"],
        "probes_after": probes["metrics"]["contains"],
        "kept": kept(out / "eval" / "forgetting" / "predictions.jsonl"),
        "probe_ppl_before": probes["base_metrics"]["perplexity"],
        "probe_ppl_after": probes["metrics"]["perplexity"],
        "train_loss": summary["train_loss"],
        "tokens_per_s": summary["train_tokens_per_s"],
        "wall_s": time.perf_counter() - started if train else None,
    }


def kept(predictions: Path) -> str:
    """Of the probes the base model answered correctly, how many the tuned model still does."""
    lines = [json.loads(line) for line in predictions.read_text(encoding="utf-8").splitlines()]
    known = [line for line in lines if line["base_scores"]["contains"] == 100]
    return f"{sum(line['scores']['contains'] == 100 for line in known)}/{len(known)}"


def table(rows: list[dict]) -> str:
    lines = ["| continual.method | held-out identity (new name) | probes correct before -> after | base-correct "
             "probes kept | probe-answer ppl before -> after | train loss | tokens/s | wall s |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        wall = f"{r['wall_s']:.0f}" if r["wall_s"] is not None else "-"
        lines.append(f"| {r['method']} | {r['identity']:.0f}% | {r['probes_before']:.0f}% -> {r['probes_after']:.0f}% "
                     f"| {r['kept']} | {r['probe_ppl_before']:.2f} -> {r['probe_ppl_after']:.2f} "
                     f"| {r['train_loss']:.3f} | {r['tokens_per_s']:.0f} | {wall} |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--methods", nargs="+", default=["none", "kl", "ewc", "replay"])
    parser.add_argument("--override", action="append", default=[], help="extra section.key=value for every run")
    parser.add_argument("--out", default=str(ROOT / "runs"), help="where the run directories go")
    parser.add_argument("--table-only", action="store_true", help="rebuild the table from finished runs")
    args = parser.parse_args()
    rows = []
    for method in args.methods:
        rows.append(run(method, args.override, Path(args.out), train=not args.table_only))
        print(table(rows), flush=True)
    results = ROOT / "bench" / "results" / "forgetting.json"
    results.write_text(json.dumps(rows, indent=2) + "\n", encoding="utf-8")
    print(f"\n{table(rows)}\n(written to {results})")
    return 0


if __name__ == "__main__":
    sys.exit(main())

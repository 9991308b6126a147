"""Forgetting with and without the continual methods: the aggressive identity fine-tune of
examples/continual/identity_aggressive.yaml once per continual.method, each in its own process, then a table of
what was learned (held-out identity questions answered with the new name), what was kept of the general questions
the base answered correctly (builtin:probes, scored by the run itself, and builtin:general_heldout, scored after
by `tunelab eval --compare-base`), and what it cost (training tokens/s against the unguarded run of the same bench).

    .venv/bin/python bench/forgetting.py                         # none, kl, ewc, replay
    .venv/bin/python bench/forgetting.py --methods none kl --override train.lr=5e-3 --override train.epochs=8
    .venv/bin/python bench/forgetting.py --cold                  # KL base log-probs recomputed, not cached
    .venv/bin/python bench/forgetting.py --methods none kl --seeds 42 1 2  # each method under three train.seeds (42: the default)
    .venv/bin/python bench/forgetting.py --config my_task.yaml --heldout my_general.jsonl  # your task, your questions

`--config` is any training config with `continual.probes` on (the default) and, for the task column, an `eval:`
section scored with `contains` (its held-out questions; "-" without one). `--heldout` is the second set of general
questions (any data tunelab reads, answers as `output`/assistant turns; default builtin:general_heldout), scored by
`tunelab eval --compare-base` after each run. The base must share no text with the training or reference data.

Which question a run loses moves with small changes (seed, precision, a guard's settings): one run says little
about one question. `--seeds` runs every method once per `train.seed` and adds a table of the totals over the
seeds (questions lost of those the base answered, throughput against the unguarded run of the same seed).

Throughput is the task's own tokens per second of training (tokens the reference rows add are not counted): what a
user waits for. The KL's one-off base pass happens before training; its time is in the wall column (and `--cold`
makes every run pay it).
"""
from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
from tunelab.eval.moved import moved_of, with_gap  # noqa: E402
from tunelab.models.cache import cache_root  # noqa: E402

CONFIG = ROOT / "examples" / "continual" / "identity_aggressive.yaml"
SECOND_SET = "builtin:general_heldout"


def run(method: str, overrides: list[str], out_root: Path, train: bool, seed: int | None = None,
        config: Path = CONFIG, heldout: str = SECOND_SET) -> dict:
    out = out_root / (f"forgetting-{method}" if seed is None else f"forgetting-{method}-seed{seed}")
    overrides = overrides if seed is None else [*overrides, f"train.seed={seed}"]
    second = out / "eval" / "heldout"
    started = time.perf_counter()
    if train:
        subprocess.run([sys.executable, "-m", "tunelab", "train", str(config), f"continual.method={method}",
                        f"output.dir={out}", "output.overwrite=true", *overrides], check=True, cwd=ROOT)
    wall = time.perf_counter() - started
    if train or not second.is_dir():
        subprocess.run([sys.executable, "-m", "tunelab", "eval", "--model", str(out), "--data", heldout,
                        "--metrics", "contains", "--compare-base", "--output", str(second)], check=True, cwd=ROOT,
                       stdout=subprocess.DEVNULL)
    summary = json.loads((out / "summary.json").read_text())
    probes = summary.get("forgetting")
    if not probes:
        sys.exit(f"{out}: the run scored no probes (continual.probes is off in {config})")
    return {
        "method": method,
        "seed": seed,
        "identity": task_score(out / "eval" / "predictions.jsonl"),
        "probes": changes(*moved_of(out / "eval" / "forgetting")),
        "heldout": changes(*moved_of(second)),
        "probe_ppl_before": probes["base_metrics"]["perplexity"],
        "probe_ppl_after": probes["metrics"]["perplexity"],
        "train_loss": summary["train_loss"],
        "tokens_per_s": summary["train_tokens_per_s"],
        "train_s": summary["train_runtime_s"],
        "wall_s": wall if train else None,
    }


def read_predictions(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def task_score(predictions: Path) -> str:
    """"k/n" of the task's held-out questions answered (the run's own eval, `contains`), or "-" without one."""
    lines = read_predictions(predictions) if predictions.is_file() else []
    scored = [line["scores"]["contains"] for line in lines if "contains" in line.get("scores", {})]
    return f"{sum(score == 100 for score in scored)}/{len(scored)}" if scored else "-"


def changes(moved: dict[str, list[str]], gaps: dict[str, float] | None = None) -> dict:
    """kept "k/n" of the questions the base answered, and the questions lost (each with how firmly the base answered
    it, where known: "(base by 0.012)") and gained."""
    known = len(moved["kept"]) + len(moved["lost"])
    return {"kept": f"{len(moved['kept'])}/{known}", "lost": [with_gap(q, gaps) for q in moved["lost"]],
            "gained": moved["gained"]}


def unguarded_speed(rows: list[dict], seed: int | None) -> float | None:
    """Tokens/s of the unguarded run under the same seed, if the bench ran one."""
    return next((r["tokens_per_s"] for r in rows if r["method"] == "none" and r.get("seed") == seed), None)


def set_name(spec: str) -> str:
    """What a table calls a question set: builtin:general_heldout -> general_heldout, a file -> its stem."""
    return spec.split(":", 1)[1] if spec.startswith("builtin:") else Path(spec).stem


def table(rows: list[dict], heldout: str = "general_heldout", task: str = "identity (new name)") -> str:
    lines = [f"| continual.method | {task} | base-correct kept: probes | base-correct kept: {heldout} "
             "| probe-answer ppl before -> after | train loss | tokens/s | vs none | train s | wall s |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        wall = f"{r['wall_s']:.0f}" if r["wall_s"] is not None else "-"
        unguarded = unguarded_speed(rows, r.get("seed"))
        ratio = f"{r['tokens_per_s'] / unguarded:.2f}" if unguarded else "-"
        lines.append(f"| {label(r)} | {r['identity']} | {r['probes']['kept']} | {r['heldout']['kept']} "
                     f"| {r['probe_ppl_before']:.2f} -> {r['probe_ppl_after']:.2f} | {r['train_loss']:.3f} "
                     f"| {r['tokens_per_s']:.0f} | {ratio} | {r['train_s']:.0f} | {wall} |")
    for r in rows:
        for key, name in (("probes", "probes"), ("heldout", heldout)):
            for kind in ("lost", "gained"):
                if r[key][kind]:
                    lines.append(f"- {label(r)}, {name} {kind}: " + "; ".join(r[key][kind]))
    return "\n".join(lines)


def label(row: dict) -> str:
    return row["method"] if row.get("seed") is None else f"{row['method']} (seed {row['seed']})"


def totals(rows: list[dict], heldout: str = "general_heldout", task: str = "identity (new name)") -> str:
    """Per method, over its seeds: runs, the task's held-out questions answered, base-correct questions lost per
    set (of how many), and the mean throughput ratio to the unguarded run of the same seed."""
    lines = [f"| continual.method | runs | {task} | lost: probes | lost: {heldout} | lost: both | "
             "tokens/s vs none (mean) |", "|---|---|---|---|---|---|---|"]
    for method in dict.fromkeys(r["method"] for r in rows):
        mine = [r for r in rows if r["method"] == method]
        learned = [_fraction(r["identity"]) for r in mine if r["identity"] != "-"]
        task_total = f"{sum(a for a, _ in learned)}/{sum(b for _, b in learned)}" if learned else "-"
        lost = {key: _lost_of(mine, key) for key in ("probes", "heldout")}
        both = tuple(map(sum, zip(*lost.values())))
        ratios = [r["tokens_per_s"] / u for r in mine if (u := unguarded_speed(rows, r.get("seed")))]
        ratio = f"{sum(ratios) / len(ratios):.2f}" if ratios else "-"
        lines.append(f"| {method} | {len(mine)} | {task_total} "
                     f"| {'%d of %d' % lost['probes']} | {'%d of %d' % lost['heldout']} "
                     f"| {'%d of %d' % both} | {ratio} |")
    return "\n".join(lines)


def _lost_of(rows: list[dict], key: str) -> tuple[int, int]:
    known = [_fraction(r[key]["kept"]) for r in rows]
    return sum(n - k for k, n in known), sum(n for _, n in known)


def _fraction(text: str) -> tuple[int, int]:
    """"8/9" -> (8, 9): the run rows keep their counts as the table prints them."""
    done, total = text.split("/")
    return int(done), int(total)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--methods", nargs="+", default=["none", "kl", "ewc", "replay"])
    parser.add_argument("--config", type=Path, default=CONFIG, help="the training config (default: the aggressive "
                        "identity fine-tune)")
    parser.add_argument("--heldout", default=SECOND_SET, help="the second set of general questions (data spec)")
    parser.add_argument("--override", action="append", default=[], help="extra section.key=value for every run")
    parser.add_argument("--out", default=str(ROOT / "runs"), help="where the run directories go")
    parser.add_argument("--table-only", action="store_true", help="rebuild the table from finished runs")
    parser.add_argument("--cold", action="store_true", help="drop the cached KL base log-probs before each run")
    parser.add_argument("--seeds", nargs="+", type=int, default=None,
                        help="run every method once per train.seed and add a table of the totals")
    parser.add_argument("--results", default=str(ROOT / "bench" / "results" / "forgetting.json"))
    args = parser.parse_args()
    if not args.config.is_file():
        parser.error(f"--config {args.config}: no such file")
    names = {"heldout": set_name(args.heldout),
             "task": "identity (new name)" if args.config.resolve() == CONFIG else "task: held-out eval answered"}
    rows = []
    for seed in args.seeds or [None]:
        for method in args.methods:
            if args.cold:
                shutil.rmtree(cache_root() / "base_logprobs", ignore_errors=True)
            rows.append(run(method, args.override, Path(args.out), not args.table_only, seed, args.config.resolve(),
                            args.heldout))
            print(table(rows, **names), flush=True)
    report = table(rows, **names) + (f"\n\nOver seeds {' '.join(map(str, args.seeds))}:\n\n{totals(rows, **names)}"
                                      if args.seeds else "")
    results = Path(args.results)
    results.write_text(json.dumps({"config": str(args.config), "heldout": args.heldout, "overrides": args.override,
                                   "seeds": args.seeds, "runs": rows}, indent=2) + "\n", encoding="utf-8")
    print(f"\n{report}\n(written to {results})")
    return 0


if __name__ == "__main__":
    sys.exit(main())

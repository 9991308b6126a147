"""What an evaluation leaves in its output directory: predictions.jsonl (one line per example, written batch
by batch) and eval.json (written last). A failed evaluation leaves neither, nor a directory it created."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

PREDICTIONS, RESULT = "predictions.jsonl", "eval.json"


class EvalWriter:
    def __init__(self, output: Path):
        self.output = Path(output)
        self.created = not self.output.exists()
        self.partial = self.output / (PREDICTIONS + ".partial")
        self.handle = None

    def __enter__(self) -> "EvalWriter":
        self.output.mkdir(parents=True, exist_ok=True)
        self.handle = self.partial.open("w", encoding="utf-8")
        return self

    def predictions(self, lines: list[dict]) -> None:
        for line in lines:
            self.handle.write(json.dumps(line, ensure_ascii=False) + "\n")
        self.handle.flush()

    def result(self, record: dict) -> None:
        self.handle.close()
        self.partial.replace(self.output / PREDICTIONS)
        write_result(self.output, record)

    def __exit__(self, kind, error, trace) -> None:
        if self.handle and not self.handle.closed:
            self.handle.close()
        if kind is None:
            return
        self.partial.unlink(missing_ok=True)
        if self.created:
            shutil.rmtree(self.output, ignore_errors=True)


def write_result(output: Path, record: dict) -> None:
    """output/eval.json, replaced in one step so a reader never sees half a record."""
    tmp = Path(output) / (RESULT + ".partial")
    tmp.write_text(json.dumps(record, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    tmp.replace(Path(output) / RESULT)


def format_metrics(record: dict) -> str:
    """A table of the metrics; with a base run, base / tuned / delta columns."""
    metrics, base = record["metrics"], record.get("base_metrics")
    if base is None:
        rows = [f"| {key} | {value:.4f} |" for key, value in metrics.items()]
        return "\n".join(["| metric | value |", "|---|---|", *rows])
    rows = [f"| {key} | {base.get(key, float('nan')):.4f} | {value:.4f} | {value - base.get(key, value):+.4f} |"
            for key, value in metrics.items()]
    return "\n".join(["| metric | base | tuned | delta |", "|---|---|---|---|", *rows])

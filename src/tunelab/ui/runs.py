"""What the Runs tab shows, read from run directories (the files `tunelab train` writes as it goes):
the list of runs, live curves from metrics.jsonl, final numbers from summary.json.

Only cheap reads: the page refreshes every few seconds while a run trains. No torch import here.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from tunelab.errors import TunelabError
from tunelab.report.rundata import (METRICS, STATUS, SUMMARY, is_number, is_run_dir, numeric_metrics, read_metrics,
                                    series)
from tunelab.ui.form import UI_DIR

CURVE_COLUMNS = ["step", "value", "series"]


@dataclass
class RunInfo:
    name: str          # path below the runs folder: "x", or "seq/task-1" for a sequence's task
    path: Path
    status: str
    method: str
    stage: str
    step: int | None
    max_steps: int | None
    loss: float | None
    eval_loss: float | None
    modified: float

    @property
    def has_model(self) -> bool:
        return (self.path / "model").is_dir()

    def progress(self) -> str:
        step = "-" if self.step is None else f"{self.step}" + (f"/{self.max_steps}" if self.max_steps else "")
        return step


def find_runs(runs_dir: Path) -> list[RunInfo]:
    """Run directories in `runs_dir` and one level below (a task sequence's task-N runs), newest first."""
    runs_dir = Path(runs_dir)
    if not runs_dir.is_dir():
        return []
    found = []
    for child in sorted(runs_dir.iterdir()):
        if child.name == UI_DIR or not child.is_dir():
            continue
        candidates = [child] if is_run_dir(child) else sorted(p for p in child.iterdir() if p.is_dir())
        found += [run_info(runs_dir, path) for path in candidates if is_run_dir(path)]
    return sorted(found, key=lambda info: info.modified, reverse=True)


_SEEN: dict[Path, tuple[tuple, RunInfo]] = {}  # run dir -> (file times, what they said): unchanged runs are not re-read


def run_info(runs_dir: Path, path: Path) -> RunInfo:
    stamp = tuple(_mtime(path / name) for name in (METRICS, STATUS, SUMMARY, "config.yaml"))
    known = _SEEN.get(path)
    if known is not None and known[0] == stamp:
        return known[1]
    info = _read_info(runs_dir, path)
    _SEEN[path] = (stamp, info)
    return info


def _read_info(runs_dir: Path, path: Path) -> RunInfo:
    config = _config(path)
    train, method = config.get("train") or {}, config.get("method") or {}
    metrics = _metrics(path)
    losses = [line for line in metrics if is_number(line.get("loss"))]
    evals = [line for line in metrics if is_number(line.get("eval_loss"))]
    summary = _summary(path)
    step = summary.get("global_step") if is_number(summary.get("global_step")) else (
        max((line["step"] for line in metrics if is_number(line.get("step"))), default=None))
    return RunInfo(
        name=path.relative_to(runs_dir).as_posix(), path=path, status=status_of(path),
        method=str(method.get("name", "?")), stage=str(train.get("stage", "?")), step=step,
        max_steps=train.get("max_steps") or None, loss=losses[-1]["loss"] if losses else None,
        eval_loss=evals[-1]["eval_loss"] if evals else None, modified=_modified(path))


def status_of(path: Path) -> str:
    status = path / STATUS
    return status.read_text(encoding="utf-8").strip() if status.is_file() else "unknown"


def runs_table(runs: list[RunInfo]) -> pd.DataFrame:
    rows = [{"run": run.name, "status": run.status, "method": run.method, "stage": run.stage, "step": run.progress(),
             "loss": _round(run.loss), "eval loss": _round(run.eval_loss)} for run in runs]
    return pd.DataFrame(rows, columns=["run", "status", "method", "stage", "step", "loss", "eval loss"])


def curves(path: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(loss and eval loss by step, learning rate by step) for line plots."""
    metrics = _metrics(path)
    loss = _frame([(key, *series(metrics, key)) for key in ("loss", "eval_loss")])
    lr = _frame([("lr", *series(metrics, "lr"))])
    return loss, lr


def compare_metrics(paths: list[Path], runs_dir: Path) -> pd.DataFrame:
    """Final numbers of several runs side by side: a row per metric, a column per run."""
    columns = {path.relative_to(runs_dir).as_posix(): numeric_metrics(_summary(path)) for path in paths}
    names = list(dict.fromkeys(name for numbers in columns.values() for name in numbers))
    rows = [{"metric": name, **{run: _round(numbers.get(name)) for run, numbers in columns.items()}} for name in names]
    return pd.DataFrame(rows, columns=["metric", *columns])


def final_metrics(path: Path) -> pd.DataFrame:
    numbers = numeric_metrics(_summary(path))
    return pd.DataFrame([{"metric": key, "value": _round(value)} for key, value in numbers.items()],
                        columns=["metric", "value"])


def _frame(named: list[tuple[str, list, list]]) -> pd.DataFrame:
    """Rows of (step, value, series). A series with no points yet gets one empty (NaN) row: Gradio's plot fixes
    its colour domain at the first drawing (gradio 6.31), so a series that appears later (eval_loss after the
    first evaluation, or in the next run shown) would never be drawn."""
    nan = float("nan")
    rows = [(step, value, name) for name, steps, values in named for step, value in zip(steps, values)]
    rows += [(nan, nan, name) for name, steps, _ in named if not steps]
    return pd.DataFrame(rows, columns=CURVE_COLUMNS).astype({"step": float, "value": float})


def _metrics(path: Path) -> list[dict]:
    try:
        return read_metrics(path / METRICS) if (path / METRICS).is_file() else []
    except TunelabError:
        return []  # a damaged line: the page shows no curve rather than failing its refresh


def _summary(path: Path) -> dict:
    try:
        summary = json.loads((path / SUMMARY).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}  # still running, or failed before the end
    return summary if isinstance(summary, dict) else {}


def _config(path: Path) -> dict:
    import yaml

    try:
        config = yaml.safe_load((path / "config.yaml").read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError):
        return {}
    return config if isinstance(config, dict) else {}


def _mtime(path: Path) -> float:
    try:
        return os.stat(path).st_mtime_ns
    except OSError:
        return 0


def _modified(path: Path) -> float:
    return max(_mtime(path / name) for name in (METRICS, STATUS, "config.yaml")) / 1e9


def _round(value: float | None) -> float | None:
    return None if value is None else round(float(value), 4)

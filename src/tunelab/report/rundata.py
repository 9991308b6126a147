"""Everything a report reads from one run directory, parsed once into a `RunData`.

config.yaml and summary.json are required (a report without them would be empty); metrics.jsonl,
provenance.json, status, samples.json, eval/eval.json and eval/forgetting/ are optional because runs that failed
early, or that nobody has evaluated yet, still deserve a report.

The file names are the run directory contract of tunelab.runs.rundir, spelled out here because
importing that package loads torch (its model loading), which would cost a report seconds.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from tunelab.errors import TunelabError
from tunelab.eval.moved import moved_of
from tunelab.eval.output import PREDICTIONS

SAMPLE_FIELDS = ("prompt", "reference", "base", "tuned")
CONFIG, SUMMARY, PROVENANCE = "config.yaml", "summary.json", "provenance.json"
METRICS, STATUS = "metrics.jsonl", "status"
EVALUATIONS = {"Evaluation (eval/eval.json)": "eval/eval.json",
               "Forgetting: general-knowledge probes before and after (eval/forgetting/eval.json)":
                   "eval/forgetting/eval.json"}
FORGETTING = "eval/forgetting"
MAX_FLATTENED = 16  # a dict of numbers longer than this (AdaLoRA's per-layer ranks) is shown as its mean


@dataclass
class RunData:
    path: Path
    status: str
    config: dict
    summary: dict
    provenance: dict = field(default_factory=dict)
    metrics: list[dict] = field(default_factory=list)
    samples: list[dict] = field(default_factory=list)
    evaluations: dict = field(default_factory=dict)  # title -> eval.json record (metrics, base_metrics?)
    probe_sets: list[dict] = field(default_factory=list)  # probes.json: graded base vs tuned answers per set
    probe_changes: dict = field(default_factory=dict)  # forgetting probes: {kept, lost, gained, never: [question]}
    probe_gaps: dict = field(default_factory=dict)  # {question: how firmly the base answered it} (eval.firmness)

    @property
    def name(self) -> str:
        return self.path.resolve().name

    def section(self, name: str) -> dict:
        """One config section; {} when an older or hand-written config lacks it."""
        value = self.config.get(name)
        return value if isinstance(value, dict) else {}


def is_run_dir(path: Path) -> bool:
    """The same test as RunDir.is_run: what `tunelab train` writes before its first step."""
    return (path / CONFIG).is_file() and (path / PROVENANCE).is_file()


def load_run_data(path: Path) -> RunData:
    if not path.is_dir():
        raise TunelabError(f"{path}: not a directory (expected a tunelab run directory)")
    status = path / STATUS
    return RunData(
        path=path,
        status=status.read_text(encoding="utf-8").strip() if status.is_file() else "unknown",
        config=_read_config(path / CONFIG),
        summary=_read_summary(path / SUMMARY),
        provenance=_read_json(path / PROVENANCE) if (path / PROVENANCE).is_file() else {},
        metrics=read_metrics(path / METRICS) if (path / METRICS).is_file() else [],
        samples=_read_samples(path / "samples.json"),
        evaluations={title: record for title, where in EVALUATIONS.items()
                     if (record := _read_eval(path / where))},
        probe_sets=_read_probe_sets(path / "probes.json"),
        **_read_probe_changes(path / FORGETTING),
    )


def _read_config(path: Path) -> dict:
    if not path.is_file():
        raise TunelabError(f"{path}: missing (expected the resolved config `tunelab train` writes into every run)")
    try:
        config = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise TunelabError(f"{path}: unreadable config ({exc})") from None
    if not isinstance(config, dict):
        raise TunelabError(f"{path}: expected a mapping with sections model/data/method/train/output")
    return config


def _read_summary(path: Path) -> dict:
    expected = "the final numbers `tunelab train` writes when a run finishes"
    if not path.is_file():
        raise TunelabError(f"{path}: missing (expected {expected}; is the run still going, or did it fail?)")
    summary = _read_json(path)
    if not isinstance(summary, dict):
        raise TunelabError(f"{path}: expected a JSON object ({expected})")
    return summary


def _read_json(path: Path) -> object:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise TunelabError(f"{path}: unreadable run file ({exc})") from None


def read_metrics(path: Path) -> list[dict]:
    """The logged lines; a broken last line is skipped because a running trainer may be mid-write."""
    lines = path.read_text(encoding="utf-8").splitlines()
    records = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            if number == len(lines):
                break
            raise TunelabError(f"{path}:{number}: invalid JSON ({exc.msg})") from None
        if not isinstance(record, dict):
            raise TunelabError(f"{path}:{number}: expected a JSON object per line")
        records.append(record)
    return records


def _read_samples(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    data = _read_json(path)
    if not isinstance(data, list) or not all(isinstance(item, dict) for item in data):
        raise TunelabError(f"{path}: expected a list of objects with {', '.join(SAMPLE_FIELDS)}")
    return [{key: str(item.get(key) or "") for key in SAMPLE_FIELDS} for item in data]


PROBE_FIELDS = ("question", "base", "tuned", "base_ok", "tuned_ok")


def _read_probe_sets(path: Path) -> list[dict]:
    """[{title, total, base_correct, tuned_correct, rows}] from probes.json (eval.probes.save_probe_sets)."""
    if not path.is_file():
        return []
    data = _read_json(path)
    valid = isinstance(data, list) and all(
        isinstance(item, dict) and isinstance(item.get("title"), str) and isinstance(item.get("rows"), list)
        and all(isinstance(row, dict) and all(key in row for key in PROBE_FIELDS) for row in item["rows"])
        for item in data)
    if not valid:
        raise TunelabError(f"{path}: expected a list of {{title, rows}} objects, "
                           f"each row with {', '.join(PROBE_FIELDS)}")
    return [{"title": item["title"], "total": len(item["rows"]), "rows": item["rows"],
             "base_correct": sum(bool(row["base_ok"]) for row in item["rows"]),
             "tuned_correct": sum(bool(row["tuned_ok"]) for row in item["rows"])} for item in data]


def _read_probe_changes(folder: Path) -> dict:
    """Which forgetting probes the run kept, lost or gained, and how firmly the base answered them (probe_changes,
    probe_gaps); nothing without a forgetting eval. Read from the predictions rather than summary.json, so runs
    from before summary.json listed them get the lists too."""
    if not (folder / PREDICTIONS).is_file():
        return {}
    changes, gaps = moved_of(folder)
    return {"probe_changes": changes, "probe_gaps": gaps}


def _read_eval(path: Path) -> dict:
    if not path.is_file():
        return {}
    data = _read_json(path)
    metrics = data.get("metrics") if isinstance(data, dict) else None
    if not isinstance(metrics, dict):
        raise TunelabError(f"{path}: expected an object with a `metrics` object")
    base = data.get("base_metrics")
    return {"metrics": metrics, "base_metrics": base if isinstance(base, dict) else None}


def is_number(value: object) -> bool:
    """Plain finite-or-not numbers; bools are JSON flags, not metrics."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def numeric_metrics(summary: dict) -> dict[str, float]:
    """The numeric scalars of a summary; dicts of numbers are flattened one level (`examples.kept`)."""
    found: dict[str, float] = {}
    for key, value in summary.items():
        if is_number(value):
            found[key] = value
        elif isinstance(value, dict):
            numbers = {sub: v for sub, v in value.items() if is_number(v)}
            if len(numbers) > MAX_FLATTENED:
                found[f"{key} (mean of {len(numbers)})"] = sum(numbers.values()) / len(numbers)
            else:
                found.update({f"{key}.{sub}": v for sub, v in numbers.items()})
    return found


def series(metrics: list[dict], key: str) -> tuple[list[float], list[float]]:
    """(steps, values) of every logged line that has a finite number under `key`."""
    steps, values = [], []
    for line in metrics:
        value = line.get(key)
        if is_number(value) and math.isfinite(value) and is_number(line.get("step")):
            steps.append(line["step"])
            values.append(value)
    return steps, values

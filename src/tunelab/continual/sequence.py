"""Tasks trained one after another: `tunelab train SEQUENCE.yaml` where the file lists `continual.tasks`.

Each task is its own run directory (OUT/task-1, OUT/task-2, ...) that starts from the previous task's result,
with the sequence's continual methods (EWC carries the Fisher of every earlier task forward). Before training
and after each task, every task's `eval.data` is scored with its first `eval.metrics` entry, plus the general
probes: OUT/matrix.json, matrix.md, matrix.png and report.html.
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

from tunelab.config.loader import dump_config, load_config, validate
from tunelab.continual.matrix import ScoreMatrix, heatmap
from tunelab.data.records import atomic_write
from tunelab.errors import Interrupted, TunelabError
from tunelab.runs.rundir import STATUS_FAILED, STATUS_FINISHED, STATUS_INTERRUPTED, STATUS_RUNNING, RunDir

log = logging.getLogger("tunelab")
HIGHER_IS_BETTER = {"contains": "contains", "exact_match": "exact_match", "bleu": "bleu", "rouge": "rougeL",
                    "accuracy": "accuracy", "f1": "f1"}


@dataclass
class Task:
    name: str
    path: str
    config: object      # RunConfig, as written (before the sequence's changes)
    metric: str         # eval.metrics[0]
    key: str            # the eval.json key scored


@dataclass
class SequenceResult:
    out: Path
    matrix: ScoreMatrix
    runs: list[Path]


def read_tasks(sequence) -> list[Task]:
    tasks = []
    for index, path in enumerate(sequence.continual.tasks, start=1):
        config = load_config(path)
        if config.eval is None or not config.eval.data:
            raise TunelabError(f"{path}: a task of a sequence needs eval.data (what its score is measured on)")
        metric = config.eval.metrics[0]
        if metric not in HIGHER_IS_BETTER:
            raise TunelabError(f"{path}: eval.metrics[0] is the task's score and must be higher-is-better "
                               f"({', '.join(HIGHER_IS_BETTER)}), got {metric!r}")
        tasks.append(Task(f"task-{index}", path, config, metric, HIGHER_IS_BETTER[metric]))
    return tasks


def task_config(sequence, task: Task, out: Path, previous: Path | None):
    """The task's own config, started from the previous result, with the sequence's continual methods."""
    raw = task.config.model_dump(mode="json")
    if previous is not None:
        raw["model"]["path"] = str(previous)
    elif sequence.model is not None:
        raw["model"] = sequence.model.model_dump(mode="json")
    continual = sequence.continual.model_dump(mode="json")
    continual.update(tasks=[], probes=False)  # the matrix scores the probes itself
    if previous is not None and any(name == "ewc" for name, _ in sequence.continual.entries()):
        continual["fisher"] = str(previous)
    raw.update(continual=continual, eval=None, output={"dir": str(out / task.name), "overwrite": True})
    raw["train"]["resume"] = sequence.train.resume  # a finished task is kept, an interrupted one continues
    return validate(raw, source=task.path)


def run_sequence(sequence) -> SequenceResult:
    from tunelab.train import train

    out = Path(sequence.output.dir)
    tasks = read_tasks(sequence)  # every task file checked before anything trains
    folder = RunDir(out)  # the same refuse-to-clobber and status rules as a run directory
    if not _resuming(sequence, folder):
        folder.prepare(sequence.output.overwrite)
    (out / "sequence.yaml").write_text(dump_config(sequence), encoding="utf-8")
    folder.set_status(STATUS_RUNNING)
    current = "before"
    try:
        first = sequence.model.path if sequence.model is not None else tasks[0].config.model.path
        rows, names, runs = [_scores(first, tasks, out / "scores" / "before")], ["before"], []
        previous = None
        for task in tasks:
            current = task.name
            log.info("sequence: training %s (%s)", task.name, task.config.data.label)
            previous = train(task_config(sequence, task, out, previous)).run_dir
            runs.append(previous)
            rows.append(_scores(str(previous), tasks, out / "scores" / f"after-{task.name}"))
            names.append(f"after {task.name}")
        matrix = ScoreMatrix([t.name for t in tasks], names, rows)
        _write(out, matrix, tasks)
    except Interrupted as exc:
        folder.set_status(STATUS_INTERRUPTED)
        raise Interrupted(f"{str(exc).split(';')[0]} of {current}; resume the sequence with: tunelab train "
                          f"{out / 'sequence.yaml'} train.resume=true", exc.exit_code - 128) from None
    except KeyboardInterrupt:
        folder.set_status(STATUS_INTERRUPTED)
        raise
    except BaseException:
        folder.set_status(STATUS_FAILED)
        raise
    folder.set_status(STATUS_FINISHED)
    return SequenceResult(out, matrix, runs)


def _resuming(sequence, folder: RunDir) -> bool:
    """train.resume keeps what an earlier attempt finished (its task runs and score files)."""
    if not sequence.train.resume or not folder.path.is_dir() or folder.status() is None:
        return False
    log.info("sequence: resuming in %s (finished tasks and scores are kept)", folder.path)
    return True


def _scores(model_path: str, tasks: list[Task], out: Path) -> list[float]:
    """score_all, kept in OUT/scores/<row>/scores.json: a resumed sequence does not score a row twice."""
    saved = out / "scores.json"
    if saved.is_file():
        return json.loads(saved.read_text(encoding="utf-8"))
    scores = score_all(model_path, tasks, out)
    with atomic_write(saved) as tmp:
        tmp.write_text(json.dumps(scores) + "\n", encoding="utf-8")
    return scores


def score_all(model_path: str, tasks: list[Task], out: Path) -> list[float]:
    """Every task's score and the probes' `contains`, for one model (loaded once)."""
    from tunelab.eval.runner import PROBES, EvalSettings, evaluate_data
    from tunelab.eval.subject import Subject
    from tunelab.models import detect_device
    from tunelab.runs import load_any

    subject = Subject(load_any(model_path), detect_device())
    scores = []
    for task in tasks:
        section = task.config.eval
        settings = EvalSettings([task.metric], section.max_new_tokens, section.batch_size, limit=section.limit,
                                max_length=task.config.train.max_length)
        record = evaluate_data(subject, section.data, section.dataset, settings, out / task.name)
        scores.append(float(record["metrics"][task.key]))
    first = tasks[0].config
    probes = EvalSettings(["contains"], first.eval.max_new_tokens, first.eval.batch_size,
                          max_length=first.train.max_length)
    scores.append(float(evaluate_data(subject, PROBES, None, probes, out / "probes")["metrics"]["contains"]))
    return scores


def _write(out: Path, matrix: ScoreMatrix, tasks: list[Task]) -> None:
    data = {**matrix.as_json(), "tasks": {t.name: {"config": t.config.data.label, "metric": t.key} for t in tasks}}
    (out / "matrix.json").write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    (out / "matrix.md").write_text(matrix.markdown(), encoding="utf-8")
    heatmap(matrix, out / "matrix.png")
    from tunelab.report.sequence import write_sequence_report

    write_sequence_report(out, matrix, {t.name: f"{t.config.data.label} ({t.key})" for t in tasks})

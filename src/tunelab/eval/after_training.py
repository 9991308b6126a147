"""What a run does once its weights are saved: the `eval:` section (RUN/eval/), base-vs-tuned sample
generations (RUN/samples.json) and the report (RUN/report.html).

The eval data is checked before training starts (`check_eval`), so a typo there fails in seconds, not
after an hour of training. The trained model is evaluated as it is in memory; its base is the same
model with the method switched off.
"""
from __future__ import annotations

import json
import logging
from pathlib import Path

from tunelab.config import RunConfig
from tunelab.errors import TunelabError
from tunelab.eval.metrics import LABEL_METRICS
from tunelab.eval.moved import describe_changes
from tunelab.eval.runner import EvalSettings, check_examples, evaluate_data, evaluate_forgetting
from tunelab.eval.samples import sample_generations
from tunelab.eval.subject import Subject

log = logging.getLogger("tunelab")
SAMPLES = "samples.json"


def check_eval(config: RunConfig, stage) -> None:
    """Refuse an `eval:` section that cannot run on what this stage trains, and unreadable eval data."""
    section = config.eval
    if section is None:
        return
    if stage.eval_kind is None:
        raise TunelabError(f"eval: train.stage {stage.name!r} trains a model that generates nothing to evaluate "
                           "(its own metrics are in summary.json); remove the eval section")
    labels = [name for name in section.metrics if name in LABEL_METRICS]
    if stage.eval_kind == "generation" and labels:
        raise TunelabError(f"eval.metrics: {', '.join(labels)} need a classification run (train.stage classify)")
    if stage.eval_kind == "labels" and (section.forgetting or len(labels) != len(section.metrics)):
        raise TunelabError("eval.metrics: a classifier is evaluated with accuracy and f1 only (no forgetting probes)")
    if section.data:
        from tunelab.data.loading import load_examples

        examples = load_examples(section.data, section.dataset)
        if stage.eval_kind == "generation":
            check_examples(examples, section.metrics, section.data)


def settings_of(config: RunConfig) -> EvalSettings:
    from tunelab.config import EvalConfig

    section = config.eval or EvalConfig(forgetting=True)
    return EvalSettings(section.metrics, section.max_new_tokens, section.batch_size, section.compare_base,
                        section.limit, config.train.max_length)


def evaluate_run(config: RunConfig, run_path: Path, subject: Subject, stage) -> dict:
    """Run the `eval:` section; returns the numbers that go into summary.json."""
    asked = (config.continual is not None and config.continual.probes) or (config.eval is not None
                                                                            and config.eval.forgetting)
    forgetting = asked and stage.eval_kind == "generation"
    if config.eval is None and not forgetting:
        return {}
    settings, found = settings_of(config), {}
    if config.eval is not None and config.eval.data:
        record = evaluate_data(subject, config.eval.data, config.eval.dataset, settings, run_path / "eval")
        found["eval"] = _numbers(record)
    if forgetting:  # every continual run measures what it kept of the general probes
        record = evaluate_forgetting(subject, settings, run_path / "eval" / "forgetting")
        found["forgetting"] = _numbers(record)
        log.info("%s", describe_changes(record["changes"], gaps=record.get("base_gaps")))
    return found


def _numbers(record: dict) -> dict:
    """What summary.json keeps of an eval record: its metrics and, for the probes, which questions moved."""
    return {key: record[key] for key in ("metrics", "base_metrics", "delta", "changes", "base_gaps") if key in record}


def write_samples(run_path: Path, subject: Subject, rows) -> None:
    """samples.json from up to four validation rows (nothing when there is no validation split)."""
    if not rows:
        return
    samples = sample_generations(subject, rows)
    if samples:
        (run_path / SAMPLES).write_text(json.dumps(samples, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def write_run_report(run_path: Path, status: str | None = None) -> None:
    """report.html; a report that cannot be drawn is logged, and the finished run stays finished."""
    from tunelab.report import write_report

    try:
        path = write_report(run_path, status)
    except Exception as exc:  # noqa: BLE001 - the weights are saved; a plotting failure must not fail the run
        log.warning("report: could not write %s/report.html (%s); rebuild it with `tunelab report %s`",
                    run_path, exc, run_path)
        return
    log.info("report: %s", path)

"""One run's HTML report: RUN/report.html plus its PNG plots, readable straight from disk.

The page shows what someone reviewing a run asks first: what was trained (config), on what (data),
how it went (curves, final metrics, eval.json) and what changed (base vs tuned samples).
"""
from __future__ import annotations

import math
from functools import lru_cache
from pathlib import Path

import jinja2
import yaml

from tunelab.eval.moved import with_gap
from tunelab.report.files import StagedFiles
from tunelab.report.plots import loss_curves, lr_curves, reward_curves, save_plot
from tunelab.report.rundata import RunData, is_number, load_run_data, numeric_metrics

REPORT_NAME = "report.html"


def write_report(run_dir: Path, status: str | None = None) -> Path:
    """Write RUN/report.html and its PNGs (replacing earlier ones) and return the page's path. `status`: the one
    the run is about to get (training writes the page first, so it exists once the run says finished)."""
    run = load_run_data(Path(run_dir))
    if status is not None:
        run.status = status
    page = run.path / REPORT_NAME
    with StagedFiles() as staged:
        images = _save_plots(run, staged)
        html = render("report.html.jinja", run=run, images=images, config_rows=config_rows(run),
                      data_rows=data_rows(run), metrics=_formatted(numeric_metrics(run.summary)),
                      evaluations={title: _eval_rows(record) for title, record in run.evaluations.items()},
                      probe_changes=probe_change_rows(run.probe_changes, run.probe_gaps),
                      provenance_rows=provenance_rows(run),
                      config_text=yaml.safe_dump(run.config, sort_keys=False, allow_unicode=True))
        staged.path(page).write_text(html, encoding="utf-8")
    return page


def _eval_rows(record: dict) -> dict:
    """{"columns": [...], "rows": [[metric, value...]]}: value, or base / tuned / change when the base was scored."""
    metrics, base = record["metrics"], record["base_metrics"]
    if not base:
        return {"columns": ["value"], "rows": [[key, format_number(value)] for key, value in metrics.items()]}
    rows = [[key, format_number(base.get(key)) if key in base else "–", format_number(value),
             format_number(value - base[key]) if is_number(base.get(key)) and is_number(value) else "–"]
            for key, value in metrics.items()]
    return {"columns": ["base", "tuned", "change"], "rows": rows}


# Lost first: what a reviewer of a fine-tune must see before anything else about the probes.
CHANGE_LABELS = {"lost": "lost (the base answered, the tuned model does not)",
                 "gained": "gained (the tuned model answers, the base did not)",
                 "kept": "kept (answered before and after)",
                 "never": "never (answered by neither)"}


def probe_change_rows(changes: dict, gaps: dict | None = None) -> list[dict]:
    """[{kind, label, questions}] in CHANGE_LABELS order; [] for a run without forgetting probes. A lost question
    says how firmly the base answered it, where that is known: a loss by 0.01 is a coin toss, by 0.1 forgetting."""
    if not changes:
        return []
    return [{"kind": kind, "label": label,
             "questions": [with_gap(q, gaps) for q in changes.get(kind, [])] if kind == "lost" else changes.get(kind, [])}
            for kind, label in CHANGE_LABELS.items()]


def _save_plots(run: RunData, staged: StagedFiles) -> list[tuple[str, str]]:
    """(file name, caption) of each plot the run has data for."""
    loss = loss_curves(run.metrics)
    plots = {
        "loss.png": (loss, "Training and eval loss" if len(loss) > 1 else "Loss", "loss"),
        "lr.png": (lr_curves(run.metrics), "Learning rate", "learning rate"),
        "rewards.png": (reward_curves(run.metrics, run.summary), "Rewards", "value"),
    }
    written = []
    for name, (curves, title, ylabel) in plots.items():
        if curves:
            save_plot(staged.path(run.path / name), curves, title, ylabel)
            written.append((name, title))
    return written


@lru_cache(maxsize=1)
def _environment() -> jinja2.Environment:
    environment = jinja2.Environment(
        loader=jinja2.FileSystemLoader(Path(__file__).parent), autoescape=True,
        undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True,
    )
    environment.filters["number"] = format_number
    return environment


def render(template: str, **context) -> str:
    return _environment().get_template(template).render(**context)


def format_number(value: object) -> str:
    """Integers with thousands separators, floats to 4 significant digits; anything else as text."""
    if not is_number(value):
        return "–" if value is None else str(value)
    if isinstance(value, int):
        return f"{value:,}"
    if value == 0 or not math.isfinite(value):
        return "0" if value == 0 else str(value)
    return f"{value:,.1f}" if abs(value) >= 1000 else f"{value:.4g}"


def _formatted(metrics: dict) -> list[tuple[str, str]]:
    return [(key, format_number(value)) for key, value in metrics.items()]


def config_rows(run: RunData) -> dict[str, str]:
    """What was trained, in the words of the config (shared with the comparison page)."""
    model, method, train = run.section("model"), run.section("method"), run.section("train")
    return {
        "model": str(model.get("path", "–")),
        "method": str(method.get("name", "–")),
        "method options": _method_options(method),
        "stage": str(train.get("stage", "–")),
        "learning rate": format_number(train.get("lr")),
        "steps": _steps(run.summary, train),
        "batch size": _batch_size(train),
        "max length": format_number(train.get("max_length")),
        "trainable params": _parameters(run.summary),
    }


def _method_options(method: dict) -> str:
    """The method.* keys set away from their defaults.

    Every method key is saved in config.yaml whichever method reads it; which ones a method reads is
    known only to the method registry, whose import (torch) costs seconds. Non-default keys are the
    ones a user chose; the full section is in the page's resolved config.
    """
    from tunelab.config.method import MethodConfig

    defaults = {name: info.get_default(call_default_factory=True) for name, info in MethodConfig.model_fields.items()}
    chosen = [f"{key}={value}" for key, value in method.items()
              if key != "name" and (key not in defaults or defaults[key] != value)]
    return ", ".join(chosen) or "all defaults"


def _steps(summary: dict, train: dict) -> str:
    done = format_number(summary.get("global_step"))
    if is_number(train.get("max_steps")) and train["max_steps"] > 0:
        return f"{done} (max_steps {train['max_steps']})"
    if "epochs" in train:
        return f"{done} ({format_number(train['epochs'])} epochs)"
    return done


def _batch_size(train: dict) -> str:
    size, accumulation = train.get("batch_size"), train.get("grad_accum") or 1
    if is_number(size) and is_number(accumulation) and accumulation > 1:
        return f"{size} × grad_accum {accumulation} = {size * accumulation} per step"
    return format_number(size)


def _parameters(summary: dict) -> str:
    trainable, total = summary.get("trainable_params"), summary.get("total_params")
    if is_number(trainable) and is_number(total) and total:
        return f"{trainable:,} of {total:,} ({100 * trainable / total:.2f}%)"
    return format_number(trainable)


def data_rows(run: RunData) -> dict[str, str]:
    examples = run.summary.get("examples") if isinstance(run.summary.get("examples"), dict) else {}
    return {
        "data": str(run.section("data").get("path", run.provenance.get("data", "–"))),
        "examples kept": format_number(examples.get("kept")),
        "examples truncated": format_number(examples.get("truncated")),
        "examples dropped": format_number(examples.get("dropped")),
        "train tokens": format_number(run.summary.get("train_tokens")),
        "tokens / s": format_number(run.summary.get("train_tokens_per_s")),
        "runtime (s)": format_number(run.summary.get("train_runtime_s")),
    }


def provenance_rows(run: RunData) -> dict[str, str]:
    provenance = run.provenance
    libraries = provenance.get("libraries") if isinstance(provenance.get("libraries"), dict) else {}
    rows = {
        "started at": provenance.get("started_at"),
        "base model": provenance.get("base_model"),
        "base location": provenance.get("base_location"),
        "git sha": provenance.get("git_sha"),
        "libraries": ", ".join(f"{name} {version}" for name, version in libraries.items()),
    }
    return {key: str(value) for key, value in rows.items() if value}

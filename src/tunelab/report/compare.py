"""Several runs on one page: loss and learning-rate curves overlaid, configs and final metrics side by side."""
from __future__ import annotations

from pathlib import Path

from tunelab.errors import TunelabError
from tunelab.report.files import StagedFiles
from tunelab.report.page import config_rows, data_rows, format_number, render
from tunelab.report.plots import loss_curves, lr_curves, save_plot
from tunelab.report.rundata import RunData, is_run_dir, load_run_data, numeric_metrics

PAGE_NAME = "compare.html"


def compare_runs(run_dirs: list[Path], output: Path) -> Path:
    """Write the comparison page (`output`: an .html path, or a directory to hold compare.html) and its PNGs."""
    if not run_dirs:
        raise TunelabError("compare: name at least one run directory")
    for path in map(Path, run_dirs):
        if not is_run_dir(path):
            raise TunelabError(f"{path}: not a tunelab run directory (expected config.yaml and provenance.json in it)")
    runs = [load_run_data(Path(path)) for path in run_dirs]
    labels = _labels(runs)
    page = _page_path(Path(output))
    page.parent.mkdir(parents=True, exist_ok=True)
    with StagedFiles() as staged:
        images = _save_plots(runs, labels, page, staged)
        html = render("compare.html.jinja", labels=labels, runs=list(zip(labels, runs)), images=images,
                      tables=_tables(runs))
        staged.path(page).write_text(html, encoding="utf-8")
    return page


def _page_path(output: Path) -> Path:
    if output.is_dir() or output.suffix.lower() not in (".html", ".htm"):
        return output / PAGE_NAME
    return output


def _labels(runs: list[RunData]) -> list[str]:
    """Run directory names; the full paths when two runs share a name (runs/a/x vs runs/b/x)."""
    names = [run.name for run in runs]
    return [run.name if names.count(run.name) == 1 else str(run.path) for run in runs]


def _save_plots(runs: list[RunData], labels: list[str], page: Path, staged: StagedFiles) -> list[tuple[str, str]]:
    """Each run keeps one colour across plots; its eval loss is dashed. PNGs are named after the page."""
    loss, lr = [], []
    for index, (run, label) in enumerate(zip(runs, labels)):
        color = f"C{index % 10}"
        loss += loss_curves(run.metrics, label, color)
        lr += lr_curves(run.metrics, label, color)
    written = []
    for kind, curves, title, ylabel in (("loss", loss, "Loss (eval dashed)", "loss"),
                                        ("lr", lr, "Learning rate", "learning rate")):
        if curves:
            name = f"{page.stem}_{kind}.png"
            save_plot(staged.path(page.parent / name), curves, title, ylabel)
            written.append((name, title))
    return written


def _tables(runs: list[RunData]) -> list[tuple[str, list[tuple[str, list[str]]], bool]]:
    """(title, rows of (name, one cell per run), numeric) for the configuration, data and final metrics."""
    metrics = [{key: format_number(value) for key, value in numeric_metrics(run.summary).items()} for run in runs]
    return [
        ("Configuration", _rows([{"status": run.status, **config_rows(run)} for run in runs]), False),
        ("Data", _rows([data_rows(run) for run in runs]), False),
        ("Final metrics", _rows(metrics), True),
    ]


def _rows(per_run: list[dict[str, str]]) -> list[tuple[str, list[str]]]:
    """One row per key found in any run (first-seen order), "–" where a run lacks it."""
    keys = list(dict.fromkeys(key for rows in per_run for key in rows))
    return [(key, [rows.get(key, "–") for rows in per_run]) for key in keys]

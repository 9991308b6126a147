"""The page of a task sequence: the score matrix (heat-map and table), its summary, links to each task's report."""
from __future__ import annotations

from pathlib import Path

from tunelab.report.files import StagedFiles
from tunelab.report.page import render


def write_sequence_report(out: Path, matrix, tasks: dict[str, str]) -> Path:
    page = out / "report.html"
    with StagedFiles() as staged:
        html = render("sequence.html.jinja", name=out.resolve().name, out=str(out), tasks=tasks,
                      columns=matrix.columns(), rows=list(zip(matrix.rows, matrix.scores)), summary=matrix.summary())
        staged.path(page).write_text(html, encoding="utf-8")
    return page

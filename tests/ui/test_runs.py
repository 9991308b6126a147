"""What the Runs tab reads from run directories: status, progress, curves, final numbers, comparisons."""
from __future__ import annotations

import json
from pathlib import Path

import yaml

from tunelab.ui.runs import compare_metrics, curves, final_metrics, find_runs, runs_table


def make_run(folder: Path, status="finished", steps=3, summary=True, method="lora", broken_tail=False) -> Path:
    folder.mkdir(parents=True)
    (folder / "config.yaml").write_text(yaml.safe_dump({"method": {"name": method},
                                                        "train": {"stage": "sft", "max_steps": steps}}))
    (folder / "provenance.json").write_text("{}")
    (folder / "status").write_text(status + "\n")
    lines = [{"step": s, "loss": 3.0 - s * 0.5, "lr": 0.01 / s} for s in range(1, steps + 1)]
    lines.append({"step": steps, "eval_loss": 2.5})
    text = "".join(json.dumps(line) + "\n" for line in lines) + ('{"step": 9, "lo' if broken_tail else "")
    (folder / "metrics.jsonl").write_text(text)
    if summary:
        (folder / "summary.json").write_text(json.dumps({"global_step": steps, "train_loss": 1.75,
                                                         "examples": {"kept": 3, "truncated": 0}}))
    return folder


def test_runs_are_found_with_their_progress(tmp_path):
    make_run(tmp_path / "a")
    make_run(tmp_path / "b", status="running", summary=False, broken_tail=True)  # a trainer mid-write
    make_run(tmp_path / "seq" / "task-1", method="full")
    (tmp_path / ".ui" / "configs").mkdir(parents=True)
    (tmp_path / "not-a-run").mkdir()
    runs = {run.name: run for run in find_runs(tmp_path)}
    assert set(runs) == {"a", "b", "seq/task-1"}
    assert (runs["b"].status, runs["b"].step, runs["b"].max_steps, runs["b"].loss) == ("running", 3, 3, 1.5)
    assert runs["b"].eval_loss == 2.5 and runs["b"].progress() == "3/3"
    assert runs["seq/task-1"].method == "full"
    table = runs_table(list(runs.values()))
    assert list(table.columns) == ["run", "status", "method", "stage", "step", "loss", "eval loss"]
    assert find_runs(tmp_path / "missing") == []


def test_curves_and_final_numbers(tmp_path):
    run = make_run(tmp_path / "a")
    loss, lr = curves(run)
    assert loss.to_dict("records")[-1] == {"step": 3, "value": 2.5, "series": "eval_loss"}
    assert list(loss[loss.series == "loss"].value) == [2.5, 2.0, 1.5]
    assert list(lr.value) == [0.01, 0.005, 0.01 / 3]
    numbers = dict(zip(final_metrics(run).metric, final_metrics(run).value))
    assert numbers == {"global_step": 3, "train_loss": 1.75, "examples.kept": 3, "examples.truncated": 0}


def test_a_series_without_points_keeps_its_place(tmp_path):
    """Gradio's plot draws only the series it saw first: eval_loss is there (empty) before the first evaluation."""
    run = make_run(tmp_path / "a")
    (run / "metrics.jsonl").write_text('{"step": 1, "loss": 2.0, "lr": 0.01}\n')
    loss, _ = curves(run)
    assert list(loss.series) == ["loss", "eval_loss"] and loss.value.isna().tolist() == [False, True]
    assert loss.value.dtype == float and loss.step.dtype == float  # numbers, so the axes stay quantitative


def test_compare_writes_the_cli_page_and_lines_up_numbers(tmp_path):
    from tunelab.ui.context import UiContext
    from tunelab.ui.runs_tab import RunsTab

    a, b = make_run(tmp_path / "a", steps=2), make_run(tmp_path / "b", steps=3)
    table = compare_metrics([a, b], tmp_path)
    assert list(table.columns) == ["metric", "a", "b"]
    assert table.set_index("metric").loc["global_step"].to_dict() == {"a": 2, "b": 3}
    link, plot, numbers = RunsTab(UiContext(tmp_path)).compare(["a", "b"])
    assert "/files/.ui/compare/a-vs-b.html" in link and plot.endswith("a-vs-b_loss.png")
    assert (tmp_path / ".ui" / "compare" / "a-vs-b.html").is_file() and numbers.equals(table)
    make_run(tmp_path / "c", status="running", summary=False)
    link, plot, numbers = RunsTab(UiContext(tmp_path)).compare(["a", "c"])
    assert "summary.json: missing" in link and plot is None
    assert RunsTab(UiContext(tmp_path)).compare(["a"])[0] == "Choose two or more runs."

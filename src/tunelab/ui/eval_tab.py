"""Evaluate tab: a run (or any model) on a data set with chosen metrics, optionally against its base
(`tunelab eval ... --compare-base`); the metrics table the CLI prints and a table of predictions."""
from __future__ import annotations

import json
import time
from pathlib import Path

import gradio as gr
import pandas as pd

from tunelab.ui.context import UiContext
from tunelab.ui.jobs import run_cli
from tunelab.ui.widgets import error_text, file_link, model_picker, ok_text

PREDICTION_COLUMNS = ["input", "reference", "prediction", "base_prediction"]
SHOWN_PREDICTIONS = 200


class EvalTab:
    def __init__(self, ctx: UiContext):
        self.ctx = ctx

    def build(self) -> None:
        from tunelab.data.dataset_info import read_index
        from tunelab.data.loading import BUILTIN_DIR
        from tunelab.eval.metrics import ALL_METRICS

        with gr.Row():
            self.model = model_picker(self.ctx, "eval-model", scale=2)
            self.builtin = gr.Dropdown([""] + sorted(read_index(BUILTIN_DIR).entries), value="identity_heldout",
                                       label="built-in data set", elem_id="eval-builtin", scale=1)
            self.path = gr.Textbox(label="or a data file / LLaMA-Factory folder", elem_id="eval-path", scale=2)
            self.dataset = gr.Textbox(label="dataset (in the folder's dataset_info.json)", elem_id="eval-dataset",
                                      scale=1)
        with gr.Row():
            self.metrics = gr.CheckboxGroup(list(ALL_METRICS), value=["bleu", "rouge", "contains"], label="metrics",
                                            elem_id="eval-metrics", scale=3)
            self.compare_base = gr.Checkbox(True, label="compare with base", elem_id="eval-compare-base", scale=1)
            self.limit = gr.Number(20, precision=0, label="examples (0: all)", elem_id="eval-limit", scale=1)
            self.max_new_tokens = gr.Number(64, precision=0, label="max new tokens", elem_id="eval-max-new", scale=1)
        self.button = gr.Button("Evaluate", variant="primary", elem_id="eval-button")
        self.status = gr.HTML(elem_id="eval-status")
        self.table = gr.Markdown(elem_id="eval-metrics-table")
        self.predictions = gr.Dataframe(label="predictions", interactive=False, wrap=True, elem_id="eval-predictions")

    def wire(self, blocks) -> None:
        self.button.click(self.evaluate, [self.model, self.builtin, self.path, self.dataset, self.metrics,
                                          self.compare_base, self.limit, self.max_new_tokens],
                          [self.status, self.table, self.predictions])

    def evaluate(self, model, builtin, path, dataset, metrics, compare_base, limit, max_new_tokens):
        data = (path or "").strip() or (f"builtin:{builtin}" if builtin else "")
        if not model or not data:
            return error_text("evaluate: choose a model and a data set"), "", None
        if not metrics:
            return error_text("evaluate: choose at least one metric"), "", None
        output = self._output_dir(model, data)
        args = ["eval", "--model", self.ctx.model_path(model), "--data", data, "--metrics", ",".join(metrics),
                "--output", str(output), "--max-new-tokens", str(int(max_new_tokens or 64))]
        if (dataset or "").strip():
            args += ["--dataset", dataset.strip()]
        if limit:
            args += ["--limit", str(int(limit))]
        if compare_base:
            args.append("--compare-base")
        result = run_cli(args)
        if not result.ok:
            return error_text(result.message()), "", None
        table = result.stdout.strip().split("\nwrote ")[0]
        link = file_link(self.ctx.runs_dir, output / "eval.json", "eval.json") if _inside(output, self.ctx.runs_dir) \
            else str(output / "eval.json")
        return ok_text(f"evaluated {model} on {data}"), f"{table}\n\n{link}", _predictions(output)

    def _output_dir(self, model: str, data: str) -> Path:
        """RUN/evals/<data>-<time> for a run, RUNS/.ui/evals/... for any other model."""
        stamp = time.strftime("%Y%m%d-%H%M%S")
        name = f"{Path(data.removeprefix('builtin:')).stem or 'data'}-{stamp}"
        run = self.ctx.runs_dir / model
        return (run / "evals" / name) if (run / "config.yaml").is_file() else self.ctx.ui_dir / "evals" / name


def _inside(path: Path, folder: Path) -> bool:
    return Path(path).resolve().is_relative_to(Path(folder).resolve())


def _predictions(output: Path) -> pd.DataFrame:
    rows = []
    with (output / "predictions.jsonl").open(encoding="utf-8") as handle:
        for line in handle:
            record = json.loads(line)
            rows.append({key: _text(record.get(key)) for key in PREDICTION_COLUMNS if key in record})
            if len(rows) >= SHOWN_PREDICTIONS:
                break
    return pd.DataFrame(rows)


def _text(value) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, list):  # the input is a conversation: show its last user message
        users = [m.get("content", "") for m in value if isinstance(m, dict) and m.get("role") == "user"]
        return users[-1] if users else json.dumps(value, ensure_ascii=False)
    return "" if value is None else json.dumps(value, ensure_ascii=False)

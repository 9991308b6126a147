"""Runs tab: every run directory with its status; the selected run's live loss and learning-rate curves
(re-read from metrics.jsonl every few seconds), log tail, final numbers, report link; stop and resume;
runs compared side by side."""
from __future__ import annotations

import html

import gradio as gr
import pandas as pd

from tunelab.errors import TunelabError
from tunelab.ui.context import UiContext
from tunelab.ui.runs import compare_metrics, curves, final_metrics, run_info, runs_table, status_of
from tunelab.ui.widgets import error_text, file_url, ok_text

REFRESH_SECONDS = 2.0
LOG_LINES = 14


class RunsTab:
    def __init__(self, ctx: UiContext):
        self.ctx = ctx

    def build(self) -> None:
        runs = self.ctx.runs()
        first = runs[0].name if runs else None
        with gr.Row():
            self.selector = gr.Dropdown([run.name for run in runs], value=first, label="run", scale=4,
                                        elem_id="run-selector", allow_custom_value=True)
            self.stop_button = gr.Button("Stop", variant="stop", scale=1, elem_id="run-stop")
            self.resume_button = gr.Button("Resume", scale=1, elem_id="run-resume")
        self.status = gr.HTML(elem_id="run-status")
        self.message = gr.HTML(elem_id="run-message")
        with gr.Row():
            self.loss_plot = gr.LinePlot(x="step", y="value", color="series", title="loss", elem_id="loss-plot",
                                         x_title="step", y_title="loss")
            self.lr_plot = gr.LinePlot(x="step", y="value", color="series", title="learning rate", elem_id="lr-plot",
                                       x_title="step", y_title="learning rate")
        with gr.Row():
            self.log = gr.Textbox(label="log (last lines)", lines=LOG_LINES, max_lines=LOG_LINES, autoscroll=True, scale=3,
                                  elem_id="run-log", interactive=False)
            self.metrics = gr.Dataframe(pd.DataFrame(columns=["metric", "value"]), label="final numbers (summary.json)",
                                        scale=2, elem_id="run-metrics", interactive=False)
        self.table = gr.Dataframe(runs_table(runs), label="all runs", elem_id="runs-table", interactive=False)
        with gr.Accordion("Compare runs", open=False):
            self.compare_pick = gr.Dropdown([run.name for run in runs], multiselect=True, label="runs to compare",
                                            elem_id="compare-pick")
            self.compare_link = gr.HTML(elem_id="compare-link")
            self.compare_plot = gr.Image(label="loss (eval dashed)", type="filepath", elem_id="compare-plot",
                                         interactive=False)
            self.compare_table = gr.Dataframe(label="final numbers", interactive=False, elem_id="compare-table")
        self.timer = gr.Timer(REFRESH_SECONDS)

    def wire(self, blocks) -> None:
        shown = [self.status, self.loss_plot, self.lr_plot, self.log, self.metrics]
        self.selector.change(self.show, self.selector, shown, show_progress="hidden")
        blocks.load(self.show, self.selector, shown, show_progress="hidden")
        seen = gr.State(None)
        self.timer.tick(self.refresh, [self.selector, seen], [self.table, self.selector, self.compare_pick, *shown, seen],
                        show_progress="hidden")
        self.stop_button.click(lambda: ok_text(self.ctx.jobs.stop()), None, self.message)
        self.resume_button.click(self.resume, self.selector, self.message)
        self.compare_pick.change(self.compare, self.compare_pick, [self.compare_link, self.compare_plot,
                                                                   self.compare_table])

    def refresh(self, name: str | None, seen: tuple | None):
        """The timer's update; nothing is sent when nothing changed (a redrawn plot would flicker)."""
        runs = self.ctx.runs()
        job = self.ctx.jobs.current
        log = self.ctx.log_of(name) if name else None
        signature = (name, tuple((r.name, r.status, r.step, r.modified) for r in runs),
                     job.state() if job else None, log.stat().st_size if log and log.is_file() else 0)
        if signature == seen:
            return (*[gr.skip()] * 8, seen)
        names = [run.name for run in runs]
        if job is not None and job.name not in names:
            names.insert(0, job.name)  # started, but its run directory is not written yet (or it failed before)
        return (runs_table(runs), gr.update(choices=names), gr.update(choices=[run.name for run in runs]),
                *self.show(name), signature)

    def show(self, name: str | None):
        """Status line, loss and lr curves, log tail and final numbers of one run."""
        if not name:
            return "<p>No runs yet: start one in the Train tab.</p>", None, None, "", None
        path, job, log = self.ctx.runs_dir / name, self.ctx.jobs.job(name), self._log(name)
        message = job.message() if job else ""
        if not (path / "config.yaml").is_file():  # started, its run directory not written yet (or never)
            return self._status_html(name, job.state() if job else "unknown", message, None), None, None, log, None
        info = run_info(self.ctx.runs_dir, path)
        loss, lr = curves(path)
        return self._status_html(name, info.status, message, info), loss, lr, log, final_metrics(path)

    def _status_html(self, name: str, status: str, message: str, info) -> str:
        parts = [f"<b>{html.escape(name)}</b>", f"status <b class='run-state'>{html.escape(status)}</b>"]
        if info is not None:
            parts += [f"step {info.progress()}", f"method {info.method}", f"stage {info.stage}"]
            if info.loss is not None:
                parts.append(f"loss {info.loss:.4f}")
            if info.eval_loss is not None:
                parts.append(f"eval loss {info.eval_loss:.4f}")
            if (info.path / "report.html").is_file():
                url = file_url(self.ctx.runs_dir, info.path / "report.html")
                parts.append(f"<a href='{url}' target='_blank' id='report-link'>report.html</a>")
        return " · ".join(parts) + (error_text(message) if message else "")

    def _log(self, name: str) -> str:
        from tunelab.ui.jobs import tail

        log = self.ctx.log_of(name)
        return tail(log, LOG_LINES) if log.is_file() else "(no log: this run was not started from this page)"

    def resume(self, name: str | None) -> str:
        """`tunelab train RUN/config.yaml train.resume=true`: continues from the newest complete checkpoint."""
        if not name or not (self.ctx.runs_dir / name / "config.yaml").is_file():
            return error_text("resume: choose a run that has a run directory")
        path = self.ctx.runs_dir / name
        if status_of(path) == "finished":
            return error_text(f"resume: {name} already finished; nothing to resume")
        try:
            self.ctx.jobs.start(name, ["train", str(path / "config.yaml"), "train.resume=true"])
        except TunelabError as exc:
            return error_text(str(exc))
        return ok_text(f"resuming {name} from its newest complete checkpoint")

    def compare(self, names: list[str] | None):
        """The page `tunelab compare` writes (curves overlaid, a colour per run), its loss plot, the final numbers."""
        from tunelab.report import compare_runs

        paths = [self.ctx.runs_dir / name for name in names or []]
        if len(paths) < 2:
            return "Choose two or more runs.", None, None
        page = self.ctx.ui_dir / "compare" / ("-vs-".join(name.replace("/", "_") for name in names) + ".html")
        try:
            written = compare_runs(paths, page)
        except TunelabError as exc:
            return error_text(str(exc)), None, None
        plot = written.with_name(f"{written.stem}_loss.png")
        link = f"<a href='{file_url(self.ctx.runs_dir, written)}' target='_blank'>open the comparison page</a>"
        return link, str(plot) if plot.is_file() else None, compare_metrics(paths, self.ctx.runs_dir)

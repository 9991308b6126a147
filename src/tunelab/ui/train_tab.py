"""Train tab: model, data, method, stage and hyperparameters -> a live YAML preview of the exact config;
Inspect data (`tunelab data inspect`), Plan (`tunelab plan`), Start (`tunelab train`) and Stop."""
from __future__ import annotations

import shutil
from pathlib import Path

import gradio as gr

from tunelab.errors import TunelabError
from tunelab.specs.methods import METHOD_SPECS
from tunelab.specs.stages import STAGE_SPECS
from tunelab.ui.context import UiContext
from tunelab.ui.fields import all_fields
from tunelab.ui.form import (DATA_SOURCES, MODEL_SOURCES, build_config, form_defaults, preview, suggest_run_name,
                             write_config)
from tunelab.ui.jobs import run_cli
from tunelab.ui.widgets import element_id, error_text, file_url, ok_text, widget

UPLOAD_TYPES = [".json", ".jsonl", ".csv", ".parquet", ".txt"]


class TrainTab:
    """Builds the tab; `inputs` maps each form key to its component (the order handlers receive values in)."""

    def __init__(self, ctx: UiContext, tabs: gr.Tabs, runs_tab):
        self.ctx, self.tabs, self.runs_tab = ctx, tabs, runs_tab
        self.inputs: dict[str, gr.components.Component] = {}
        self.fields = {field.key: field for field in all_fields()}

    # ---- layout ------------------------------------------------------------------------------------

    def build(self) -> None:
        defaults = form_defaults()
        defaults["ui.run_name"] = suggest_run_name(defaults, self.ctx.runs_dir)
        with gr.Row():
            with gr.Column(scale=3):
                self._model_group(defaults)
                self._data_group(defaults)
                self._method_group(defaults)
                self._stage_group(defaults)
                self._train_group(defaults)
            with gr.Column(scale=2):
                self.inputs["ui.run_name"] = gr.Textbox(defaults["ui.run_name"], label="run name",
                                                        info=f"the run directory inside {self.ctx.runs_dir}",
                                                        elem_id="f-run-name")
                with gr.Row():
                    self.inspect_button = gr.Button("Inspect data", elem_id="inspect-button")
                    self.plan_button = gr.Button("Plan", elem_id="plan-button")
                    self.start_button = gr.Button("Start", variant="primary", elem_id="start-button")
                    self.stop_button = gr.Button("Stop", variant="stop", elem_id="stop-button")
                self.status = gr.HTML(elem_id="train-status")
                yaml_text, problem = preview(defaults, self.ctx.runs_dir)
                self.yaml = gr.Code(yaml_text, language="yaml", label="config (exactly what `tunelab train` gets)",
                                    interactive=False, elem_id="config-yaml")
                self.problem = gr.HTML(error_text(problem), elem_id="config-problem")
                self.plan_output = gr.Textbox(label="plan", lines=8, visible=False, elem_id="plan-output")
                self.inspect_output = gr.Textbox(label="data", lines=10, visible=False, elem_id="inspect-output")
                self.inspect_image = gr.Image(label="token lengths", visible=False, elem_id="inspect-lengths",
                                              type="filepath")
                self.inspect_page = gr.HTML(visible=False, elem_id="inspect-page")

    def _model_group(self, defaults: dict) -> None:
        from tunelab.models.sources import BUILTIN_MODELS

        with gr.Group():
            gr.Markdown("### Model")
            source = defaults["ui.model_source"]
            self.inputs["ui.model_source"] = gr.Radio(list(MODEL_SOURCES), value=source, label="model from",
                                                      elem_id="f-model-source")
            self.inputs["ui.model_builtin"] = gr.Dropdown(list(BUILTIN_MODELS), value=defaults["ui.model_builtin"],
                                                          label="built-in model", elem_id="f-model-builtin")
            self.inputs["ui.model_run"] = gr.Dropdown([], label="run to continue", visible=False,
                                                      elem_id="f-model-run", info="its adapter continues, or it is "
                                                      "merged first when the method differs")
            self.inputs["ui.model_path"] = gr.Textbox("", label="path or hub id", visible=False,
                                                      elem_id="f-model-path",
                                                      placeholder="/models/my-model, model.gguf or org/name")

    def _data_group(self, defaults: dict) -> None:
        from tunelab.data.dataset_info import read_index
        from tunelab.data.loading import BUILTIN_DIR

        with gr.Group():
            gr.Markdown("### Data")
            self.inputs["ui.data_source"] = gr.Radio(list(DATA_SOURCES), value=defaults["ui.data_source"],
                                                     label="data from", elem_id="f-data-source")
            self.inputs["ui.data_builtin"] = gr.Dropdown(sorted(read_index(BUILTIN_DIR).entries),
                                                         value=defaults["ui.data_builtin"], label="built-in data set",
                                                         elem_id="f-data-builtin")
            with gr.Row(visible=False) as self.path_row:
                self.inputs["ui.data_path"] = gr.Textbox("", label="file or LLaMA-Factory folder", scale=4,
                                                         elem_id="f-data-path",
                                                         placeholder="data.jsonl, or a folder with dataset_info.json")
                self.upload = gr.UploadButton("Upload", file_types=UPLOAD_TYPES, scale=1, elem_id="data-upload")
            self.inputs["ui.datasets"] = gr.Dropdown([], multiselect=True, label="datasets (from dataset_info.json)",
                                                     visible=False, elem_id="f-datasets")
            for key in ("data.format", "data.template", "data.val_size"):
                self.inputs[key] = widget(self.fields[key], defaults[key])

    def _method_group(self, defaults: dict) -> None:
        self.method_about, self.method_widgets = self._registry_group("Method", "method.name", METHOD_SPECS,
                                                                      defaults)

    def _stage_group(self, defaults: dict) -> None:
        self.stage_about, self.stage_widgets = self._registry_group("Stage", "train.stage", STAGE_SPECS, defaults)

    def _registry_group(self, title: str, key: str, registry, defaults: dict):
        """A dropdown of a registry's names, its description, and the widgets of the keys its members read."""
        with gr.Group():
            gr.Markdown(f"### {title}")
            name = defaults[key]
            self.inputs[key] = gr.Dropdown(sorted(registry), value=name, label=title.lower(),
                                           elem_id=element_id(key))
            about = gr.Markdown(registry[name].description, elem_id=f"{title.lower()}-about")
            return about, self._keyed_widgets(key.split(".")[0] + ".", defaults)

    def _keyed_widgets(self, prefix: str, defaults: dict) -> list:
        """A widget per field with a condition (method or stage keys), shown when the condition holds."""
        made = []
        with gr.Row():
            for key, field in self.fields.items():
                if key.startswith(prefix) and field.applies is not None and key not in self.inputs:
                    self.inputs[key] = widget(field, defaults[key], visible=field.relevant(defaults))
                    made.append((field, self.inputs[key]))
        return made

    def _train_group(self, defaults: dict) -> None:
        with gr.Group():
            gr.Markdown("### Training")
            main = [f for f in self.fields.values() if f.key.startswith("train.") and f.applies is None and f.always]
            with gr.Row():
                for field in main:
                    self.inputs[field.key] = widget(field, defaults[field.key])
        with gr.Accordion("Advanced", open=False):
            rest = [f for f in self.fields.values() if f.key not in self.inputs and f.applies is None]
            with gr.Row():
                for field in rest:
                    self.inputs[field.key] = widget(field, defaults[field.key])
            self.inputs["ui.extra"] = gr.Code("", language="yaml", label="more config (YAML laid over the form: "
                                              "eval:, continual:, any key)", interactive=True, elem_id="f-extra")

    # ---- events ------------------------------------------------------------------------------------

    def wire(self, blocks) -> None:
        keys, components = list(self.inputs), list(self.inputs.values())

        def values(*args) -> dict:
            return dict(zip(keys, args))

        gr.on([c.change for c in components], lambda *a: self._preview(values(*a)), components,
              [self.yaml, self.problem], show_progress="hidden")
        self.inputs["method.name"].change(self._method_changed, self.inputs["method.name"],
                                          [self.method_about, *[w for _, w in self.method_widgets]])
        self.inputs["train.stage"].change(self._stage_changed, self.inputs["train.stage"],
                                          [self.stage_about, *[w for _, w in self.stage_widgets]])
        self.inputs["ui.model_source"].change(self._model_source, self.inputs["ui.model_source"],
                                              [self.inputs[k] for k in ("ui.model_builtin", "ui.model_run",
                                                                        "ui.model_path")])
        self.inputs["ui.data_source"].change(self._data_source, self.inputs["ui.data_source"],
                                             [self.inputs["ui.data_builtin"], self.path_row])
        self.inputs["ui.data_path"].change(self._datasets, self.inputs["ui.data_path"],
                                           [self.inputs["ui.datasets"], self.status])
        self.upload.upload(self._uploaded, self.upload, [self.inputs["ui.data_path"]])
        self.plan_button.click(lambda *a: self._plan(values(*a)), components, [self.plan_output, self.status])
        self.inspect_button.click(lambda *a: self._inspect(values(*a)), components,
                                  [self.inspect_output, self.inspect_image, self.inspect_page, self.status])
        self.start_button.click(lambda *a: self._start(values(*a)), components,
                                [self.status, self.tabs, self.runs_tab.selector, self.inputs["ui.run_name"]])
        self.stop_button.click(lambda: ok_text(self.ctx.jobs.stop()), None, self.status)

    def _preview(self, values: dict):
        text, problem = preview(values, self.ctx.runs_dir)
        return text, error_text(problem)

    def _method_changed(self, name: str):
        values = {"method.name": name}
        return [METHOD_SPECS[name].description,
                *[gr.update(visible=f.relevant(values)) for f, _ in self.method_widgets]]

    def _stage_changed(self, name: str):
        values = {"train.stage": name}
        return [STAGE_SPECS[name].description, *[gr.update(visible=f.relevant(values)) for f, _ in self.stage_widgets]]

    def _model_source(self, source: str):
        runs = [run.name for run in self.ctx.runs() if run.has_model]
        return (gr.update(visible=source == "built-in"),
                gr.update(visible=source == "earlier run", choices=runs, value=runs[0] if runs else None),
                gr.update(visible=MODEL_SOURCES.get(source) == "ui.model_path"))

    def _data_source(self, source: str):
        return gr.update(visible=source == "built-in"), gr.update(visible=source != "built-in")

    def _datasets(self, path: str):
        """A LLaMA-Factory folder: its dataset_info.json entries become the dataset choices."""
        from tunelab.data.dataset_info import INFO_FILE, read_index

        folder = Path(path.strip()).expanduser() if path and path.strip() else None
        if folder is None or not (folder / INFO_FILE).is_file():
            return gr.update(visible=False, choices=[], value=[]), ""
        try:
            names = list(read_index(folder).entries)  # in the file's order, as LLaMA-Factory lists them
        except TunelabError as exc:
            return gr.update(visible=False, choices=[], value=[]), error_text(str(exc))
        return gr.update(visible=True, choices=names, value=[]), ""

    def _uploaded(self, file) -> str:
        """Uploads are kept in RUNS/.ui/uploads (the config names the file, so it must outlive the browser)."""
        source = Path(file if isinstance(file, str) else file.name)
        target = self.ctx.ui_dir / "uploads" / source.name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, target)
        return str(target)

    def _config_file(self, values: dict) -> tuple[dict, Path]:
        raw, _ = build_config(values, self.ctx.runs_dir)
        return raw, write_config(raw, self.ctx.runs_dir)

    def _plan(self, values: dict):
        try:
            _, path = self._config_file(values)
        except TunelabError as exc:
            return gr.update(visible=False), error_text(str(exc))
        result = run_cli(["plan", str(path)])
        if not result.ok:
            return gr.update(visible=False), error_text(result.message())
        return gr.update(value=result.stdout.strip(), visible=True), ok_text("plan: three real steps measured")

    def _inspect(self, values: dict):
        hidden = (gr.update(visible=False),) * 3
        try:
            raw, path = self._config_file(values)
        except TunelabError as exc:
            return (*hidden, error_text(str(exc)))
        out = self.ctx.ui_dir / "inspect" / Path(raw["output"]["dir"]).name
        page = out / "page.html"
        result = run_cli(["data", "inspect", str(path), "--output", str(out), "--html", str(page), "--show", "2"])
        if not result.ok:
            return (*hidden, error_text(result.message()))
        frame = (f"<iframe src='{file_url(self.ctx.runs_dir, page)}' "
                 "style='width:100%;height:420px;border:1px solid #ddd;border-radius:6px'></iframe>")
        return (gr.update(value=result.stdout.strip(), visible=True),
                gr.update(value=str(out / "lengths.png"), visible=True), gr.update(value=frame, visible=True),
                ok_text(f"inspected {raw['data']['path']} (trained tokens highlighted below)"))

    def _start(self, values: dict):
        try:
            raw, path = self._config_file(values)
            name = Path(raw["output"]["dir"]).name
            self.ctx.jobs.start(name, ["train", str(path)])
        except TunelabError as exc:
            return error_text(str(exc)), gr.update(), gr.update(), gr.update()
        return (ok_text(f"started {name}: follow it in the Runs tab"), gr.Tabs(selected="runs"),
                gr.update(choices=[name, *[run.name for run in self.ctx.runs() if run.name != name]], value=name),
                suggest_run_name(values, self.ctx.runs_dir, taken={name}))

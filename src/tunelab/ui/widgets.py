"""Gradio widgets for form fields, and the small helpers every tab shares."""
from __future__ import annotations

import html
from pathlib import Path

import gradio as gr

from tunelab.ui.fields import FormField

# The label of the blank choice of an optional dropdown: what happens when the key is left out.
UNSET_LABELS = {"data.format": "(detect from the data)", "data.template": "(the tokenizer's own)"}


def element_id(key: str) -> str:
    """A stable id for tests and styles: `train.lr` -> `f-train-lr`."""
    return "f-" + key.replace(".", "-").replace("_", "-")


def widget(field: FormField, value, visible: bool = True):
    common = {"label": field.label, "info": field.info or None, "elem_id": element_id(field.key), "visible": visible}
    if field.kind == "bool":
        return gr.Checkbox(value=bool(value), min_width=220, **common)  # room for a long label in a row
    if field.kind == "choice":
        choices = [(str(choice), choice) for choice in field.choices]
        if field.optional:
            choices = [(UNSET_LABELS.get(field.key, "(not set)"), "")] + choices
        return gr.Dropdown(choices=choices, value="" if value is None else value, **common)
    if field.kind in ("int", "number"):
        return gr.Number(value=value, precision=0 if field.kind == "int" else None, **common)
    return gr.Textbox(value=value, lines=1, max_lines=1, **common)


def model_picker(ctx, elem_id: str, scale: int):
    """A run, a built-in model, or a typed path / hub id; the list is read again each time it is opened."""
    choices = ctx.model_choices()
    picker = gr.Dropdown(choices, value=choices[0] if choices else None, allow_custom_value=True,
                         label="model (a run, a built-in model, or a path)", elem_id=elem_id, scale=scale)
    picker.focus(lambda: gr.update(choices=ctx.model_choices()), None, picker)
    return picker


def file_url(runs_dir: Path, path: Path) -> str:
    """The URL of a file in the runs folder, served by the app's /files route."""
    return "/files/" + Path(path).resolve().relative_to(Path(runs_dir).resolve()).as_posix()


def file_link(runs_dir: Path, path: Path, text: str) -> str:
    """A markdown link to a file in the runs folder."""
    return f"[{text}]({file_url(runs_dir, path)})"


def error_text(message: str) -> str:
    return f"<div class='tunelab-error'>⚠ {html.escape(message)}</div>" if message else ""


def ok_text(message: str) -> str:
    return f"<div class='tunelab-ok'>{html.escape(message)}</div>" if message else ""


CSS = """
.tunelab-error { color: #b42318; background: #fef3f2; border: 1px solid #fda29b; border-radius: 6px;
                 padding: 8px 12px; white-space: pre-wrap; font-family: ui-monospace, monospace; font-size: 13px; }
#plan-output textarea, #inspect-output textarea, #run-log textarea { font-family: ui-monospace, monospace;
                                                                      font-size: 12px; }
.tunelab-ok { color: #05603a; background: #ecfdf3; border: 1px solid #a6f4c5; border-radius: 6px; padding: 8px 12px; }
"""

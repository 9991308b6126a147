"""Train form values -> the exact config the CLI will run, validated with the same schema as `tunelab train`.

The form is a flat dict: dotted config keys (`train.lr`) for config fields, `ui.*` keys for the choices
that become a config value only after a little assembly (where the model and data come from, the run
name, extra YAML). Nothing here imports gradio, so it is tested on its own.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from tunelab.config import RunConfig, validate
from tunelab.errors import TunelabError
from tunelab.models.sources import HUB_ID
from tunelab.ui.fields import all_fields

# Where the model comes from -> the form key holding its path.
MODEL_SOURCES = {"built-in": "ui.model_builtin", "earlier run": "ui.model_run", "local folder or .gguf": "ui.model_path",
                 "hub id": "ui.model_path"}
DATA_SOURCES = ("built-in", "file or folder")
RUN_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
UI_DIR = ".ui"  # inside the runs folder: the configs the UI wrote and the logs of the runs it started


def form_defaults() -> dict[str, Any]:
    """The form as it opens: the schema's defaults, the built-in model and data set, a short LoRA run."""
    from tunelab.config.model import DEFAULT_MODEL

    values: dict[str, Any] = {field.key: field.shown(field.default) for field in all_fields()}
    values.update({"ui.model_source": "built-in", "ui.model_builtin": DEFAULT_MODEL, "ui.model_run": None,
                   "ui.model_path": "", "ui.data_source": "built-in", "ui.data_builtin": "identity",
                   "ui.data_path": "", "ui.datasets": [], "ui.run_name": "", "ui.extra": "",
                   "method.name": "lora", "train.stage": "sft"})
    return values


def build_raw(values: dict[str, Any], runs_dir: Path, problems: list[str] | None = None) -> dict:
    """The config as a plain dict, in the order a person would write it: model, data, method, train, output.

    A choice that is missing or wrong raises, or, given a `problems` list, is noted there and left out (the
    preview still shows the rest)."""
    def part(build, *args):
        try:
            return build(*args)
        except TunelabError as exc:
            if problems is None:
                raise
            problems.append(str(exc))
            return None

    raw: dict = {"model": {"path": part(_model_path, values)}, "data": _data(values, part),
                 "method": {"name": values.get("method.name")}, "train": {"stage": values.get("train.stage")},
                 "output": {"dir": _output_dir(part(run_name, values), runs_dir)}}
    for field in all_fields():
        if not field.relevant(values):
            continue
        value = field.parse(values.get(field.key, field.default))
        if field.always or value != field.default:
            section, name = field.key.split(".", 1)
            raw[section][name] = value
    return _merge(raw, part(_extra, values.get("ui.extra") or "") or {})


def _output_dir(name: str | None, runs_dir: Path) -> str | None:
    return None if name is None else str(Path(runs_dir).resolve() / name)


def build_config(values: dict[str, Any], runs_dir: Path) -> tuple[dict, RunConfig]:
    """(raw dict, validated RunConfig): the schema's own error when a value is wrong, naming the key."""
    raw = build_raw(values, runs_dir)
    return raw, validate(raw, source="train form")


def config_yaml(raw: dict) -> str:
    return yaml.safe_dump(raw, sort_keys=False, allow_unicode=True)


def preview(values: dict[str, Any], runs_dir: Path) -> tuple[str, str]:
    """(YAML of the config, '' or the reasons it is not valid yet) for the live preview."""
    problems: list[str] = []
    raw = build_raw(values, runs_dir, problems)
    if not problems:
        try:
            validate(raw, source="train form")
        except TunelabError as exc:
            problems.append(str(exc))
    return config_yaml(raw), "\n".join(problems)


def run_name(values: dict[str, Any]) -> str:
    name = str(values.get("ui.run_name") or "").strip()
    if not name:
        raise TunelabError("run name: required (letters, digits, '.', '_' or '-'; the run directory's name)")
    if not RUN_NAME.match(name):
        raise TunelabError(f"run name {name!r}: use letters, digits, '.', '_' or '-', starting with a letter or digit")
    return name


def suggest_run_name(values: dict[str, Any], runs_dir: Path, taken: set[str] = frozenset()) -> str:
    """`<method>-<stage>-N` with the first N that names no existing run directory (nor one in `taken`)."""
    stem = f"{values.get('method.name') or 'run'}-{values.get('train.stage') or 'sft'}"
    number = 1
    while f"{stem}-{number}" in taken or (Path(runs_dir) / f"{stem}-{number}").exists():
        number += 1
    return f"{stem}-{number}"


def write_config(raw: dict, runs_dir: Path) -> Path:
    """The config file the CLI is given: RUNS/.ui/configs/<run name>.yaml."""
    name = Path(raw["output"]["dir"]).name
    path = Path(runs_dir) / UI_DIR / "configs" / f"{name}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(config_yaml(raw), encoding="utf-8")
    return path


def _model_path(values: dict[str, Any]) -> str:
    source = values.get("ui.model_source") or "built-in"
    if source not in MODEL_SOURCES:
        raise TunelabError(f"model source {source!r}: choose one of {', '.join(MODEL_SOURCES)}")
    path = str(values.get(MODEL_SOURCES[source]) or "").strip()
    if not path:
        raise TunelabError(f"model ({source}): required")
    if source == "local folder or .gguf" and not Path(path).expanduser().exists():
        raise TunelabError(f"model: {path}: no such folder or file")
    if source == "hub id" and not HUB_ID.match(path):
        raise TunelabError(f"model: {path!r} is not a hub id (expected org/name)")
    return path


def _data(values: dict[str, Any], part) -> dict:
    """data.path, and data.dataset for a LLaMA-Factory folder; `part` runs each piece (see build_raw)."""
    path = part(_data_path, values)
    if path is None:
        return {}
    data = {"path": path}
    if Path(path).expanduser().is_dir():
        dataset = part(_datasets, Path(path).expanduser(), values.get("ui.datasets") or [])
        if dataset:
            data["dataset"] = dataset
    return data


def _data_path(values: dict[str, Any]) -> str:
    if (values.get("ui.data_source") or "built-in") == "built-in":
        name = str(values.get("ui.data_builtin") or "").strip()
        if not name:
            raise TunelabError("data (built-in): choose a data set")
        return f"builtin:{name}"
    path = str(values.get("ui.data_path") or "").strip()
    if not path:
        raise TunelabError("data: give a file or a LLaMA-Factory folder (with dataset_info.json), or upload a file")
    return path


def _datasets(folder: Path, chosen: list[str] | str) -> str:
    """The chosen entries of a LLaMA-Factory folder's dataset_info.json, comma-joined as data.dataset."""
    from tunelab.data.dataset_info import INFO_FILE, read_index

    if not (folder / INFO_FILE).is_file():
        raise TunelabError(f"data: {folder} is a folder without {INFO_FILE}; give a data file, or a LLaMA-Factory "
                           "data folder")
    if not chosen:
        available = ", ".join(read_index(folder).entries) or "none"
        raise TunelabError(f"data: choose a dataset from {folder / INFO_FILE} (available: {available})")
    return ",".join(chosen) if isinstance(chosen, list) else str(chosen)


def _extra(text: str) -> dict:
    """More config (any section, e.g. eval: or continual:) as YAML, laid over what the form sets."""
    if not text.strip():
        return {}
    try:
        extra = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        raise TunelabError(f"extra YAML{where}: invalid YAML ({getattr(exc, 'problem', exc)})") from None
    if not isinstance(extra, dict):
        raise TunelabError("extra YAML: expected a mapping of sections (e.g. eval: {data: builtin:probes})")
    return extra


def _merge(base: dict, extra: dict) -> dict:
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            _merge(base[key], value)
        else:
            base[key] = value
    return base

"""The train form's fields, read off the config schema: a field per config key, with its type, default,
choices and help text taken from the pydantic model, so a key added to the schema needs no UI code.

Which fields apply is decided by the specs (a method's or a stage's `options`, tunelab.specs),
never by a table of names here.
"""
from __future__ import annotations

import types
import typing
from dataclasses import dataclass
from typing import Any, Callable, Literal

from pydantic import BaseModel

from tunelab.config.data import DataConfig
from tunelab.config.keys import form_keys
from tunelab.config.method import MethodConfig
from tunelab.config.output import OutputConfig
from tunelab.config.train import TrainConfig
from tunelab.specs.methods import METHOD_SPECS
from tunelab.specs.stages import STAGE_SPECS

SECTIONS: dict[str, type[BaseModel]] = {"data": DataConfig, "method": MethodConfig, "train": TrainConfig,
                                        "output": OutputConfig}


@dataclass(frozen=True)
class FormField:
    key: str                 # dotted config key, e.g. "train.lr"
    kind: str                # int | number | bool | choice | text | list
    default: Any
    info: str = ""
    choices: tuple = ()
    optional: bool = False   # blank means "not set" (None)
    always: bool = True      # written into the config even at its default (the form's main fields)
    applies: Callable[[dict], bool] | None = None  # form values -> whether the key means anything now

    @property
    def label(self) -> str:
        return self.key.split(".", 1)[1].replace("_", " ")

    def relevant(self, values: dict) -> bool:
        return self.applies is None or self.applies(values)

    def parse(self, value: Any) -> Any:
        """A widget's value as the config value (validation is the schema's job, not this one's)."""
        if isinstance(value, str):
            value = value.strip()
        if value in ("", None):
            return None if self.optional else self.default
        if self.kind == "int" and isinstance(value, float) and value.is_integer():
            return int(value)
        if self.kind == "list":
            return _list_value(value, self.default)
        return value

    def shown(self, value: Any) -> Any:
        """A config value as the widget shows it (lists as comma-separated text)."""
        if self.kind == "list" and isinstance(value, list):
            return ", ".join(str(item) for item in value)
        return "" if value is None and self.kind in ("text", "list") else value


def _list_value(value: Any, default: Any) -> Any:
    if isinstance(value, list):
        return value
    items = [item.strip() for item in str(value).split(",") if item.strip()]
    # `target_modules` is a string ('all-linear') or a list: one word stays a string when the default is one.
    return items[0] if len(items) == 1 and isinstance(default, str) else items


def _formats() -> tuple:
    from tunelab.data.formats import CONVERTERS

    return tuple(sorted(CONVERTERS))


def _templates() -> tuple:
    from tunelab.data.templates import TEMPLATES

    return tuple(TEMPLATES)


# Keys whose valid values a registry holds (the schema checks them with a validator, not a Literal).
REGISTRY_CHOICES: dict[str, Callable[[], tuple]] = {"data.format": _formats, "data.template": _templates}


def schema_field(key: str, always: bool = True, applies: Callable[[dict], bool] | None = None) -> FormField:
    section, name = key.split(".", 1)
    info = SECTIONS[section].model_fields[name]
    kind, choices, optional = _kind(info.annotation)
    if key in REGISTRY_CHOICES:
        kind, choices = "choice", REGISTRY_CHOICES[key]()
    default = info.get_default(call_default_factory=True)
    always = always and default not in (None, "", [])  # an empty default written out says nothing
    return FormField(key, kind, default, info.description or "", choices, optional, always, applies)


def _kind(annotation: Any) -> tuple[str, tuple, bool]:
    """(widget kind, choices, optional) of a field annotation."""
    args = typing.get_args(annotation)
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        rest = [arg for arg in args if arg is not type(None)]
        optional = len(rest) < len(args)
        if any(typing.get_origin(arg) is list for arg in rest):
            return "list", (), optional
        if rest == [bool, str] or rest == [str, bool]:
            return "text", (), optional
        kind, choices, _ = _kind(rest[0])
        return kind, choices, optional
    if origin is Literal:
        return "choice", args, False
    if origin is list:
        return "list", (), False
    return {int: "int", float: "number", bool: "bool"}.get(annotation, "text"), (), False


def _method_reads(name: str) -> Callable[[dict], bool]:
    def applies(values: dict) -> bool:
        method = METHOD_SPECS.get(values.get("method.name"))
        return method is not None and name in method.options

    return applies


def _stage_reads(name: str) -> Callable[[dict], bool]:
    def applies(values: dict) -> bool:
        stage = STAGE_SPECS.get(values.get("train.stage"))
        return stage is not None and name in stage.options

    return applies


def method_fields() -> list[FormField]:
    """Every method.* key but the name; each applies when the chosen method reads it."""
    return [schema_field(f"method.{name}", applies=_method_reads(name))
            for name in MethodConfig.model_fields if name != "name"]


def stage_fields() -> list[FormField]:
    """The train.* keys some stage reads beyond the common ones; each applies when the chosen stage reads it."""
    names = dict.fromkeys(name for stage in STAGE_SPECS.values() for name in stage.options)
    return [schema_field(f"train.{name}", applies=_stage_reads(name)) for name in names]


def train_fields() -> list[FormField]:
    """The train.* keys the schema marks for the form (FORM) and for its advanced part (ADVANCED)."""
    return ([schema_field(f"train.{name}") for name in form_keys(TrainConfig)]
            + [schema_field(f"train.{name}", always=False) for name in form_keys(TrainConfig, advanced=True)])


def data_fields() -> list[FormField]:
    return ([schema_field(f"data.{name}", always=False) for name in form_keys(DataConfig, advanced=True)]
            + [schema_field(f"data.{name}") for name in form_keys(DataConfig)])


def all_fields() -> list[FormField]:
    """Every config field the form shows, in form order."""
    return [*data_fields(), *method_fields(), *stage_fields(), *train_fields(),
            schema_field("output.overwrite", always=False)]

"""docs/config.md, generated from the schema: every key with its default, its values and its help, which methods or
stages read it, and what the schema says about it (free on resume, part of the data cache key). A test keeps the
file equal to this text: `python -m tunelab.config.reference > docs/config.md` regenerates it."""
from __future__ import annotations

import json
import typing

from pydantic import BaseModel

from tunelab.config.keys import _section, marked
from tunelab.config.run import RunConfig
from tunelab.specs.continual import PENALTY_SPECS
from tunelab.specs.methods import METHOD_SPECS
from tunelab.specs.stages import STAGE_SPECS

INTRO = """# Config reference

One YAML file, one section per domain, validated into typed objects; unknown keys and wrong types are refused with
the file, line, key path and a "did you mean". Every key can be overridden as `section.key=value`
(`tunelab train cfg.yaml train.lr=1e-4`); a key that takes a list also takes one item as itself. A key only some
methods or stages read is refused with another method or stage (the "read by" column). What the libraries
underneath would refuse (TRL, peft, transformers) is checked when the config is read and said in these keys.

*free*: may change when a run is resumed. *cache*: part of the tokenized-data cache key.
This page is generated from the schema (`python -m tunelab.config.reference > docs/config.md`).
"""


def config_markdown() -> str:
    free, cache = set(marked("resume")), set(marked("cache_key"))
    readers = _readers()
    lines = [INTRO]
    for name, field in RunConfig.model_fields.items():
        section = _section(field.annotation)
        lines += [f"## {name}", "", _summary(section), "",
                  "| key | default | values | meaning |", "|---|---|---|---|"]
        lines += _rows(section, f"{name}.", free, cache, readers)
        lines.append("")
    return "\n".join(lines)


def _summary(section: type[BaseModel]) -> str:
    """The first sentence of the section's module docstring (`data:` section — which examples ...)."""
    import sys

    return (sys.modules[section.__module__].__doc__ or "").strip().split("\n\n")[0].replace("\n", " ")


def _rows(schema: type[BaseModel], prefix: str, free: set, cache: set, readers: dict) -> list[str]:
    rows = []
    for name, field in schema.model_fields.items():
        key = f"{prefix}{name}"
        inner = _section(field.annotation)
        if inner is not None:
            rows += _rows(inner, f"{key}.", free, cache, readers)
            continue
        notes = [note for note, keys in (("free", free), ("cache", cache))
                 if key in keys or any(key.startswith(f"{k}.") for k in keys)]
        meaning = " ".join(filter(None, [field.description or "", f"Read by: {readers[key]}." if key in readers else "",
                                         f"*{', '.join(notes)}*" if notes else ""]))
        rows.append(f"| `{key}` | {_default(field)} | {_values(key, field.annotation)} | {_cell(meaning)} |")
    return rows


def _default(field) -> str:
    if field.is_required():
        return "required"
    value = field.get_default(call_default_factory=True)
    return f"`{json.dumps(value)}`"


def _values(key: str, annotation) -> str:
    names = _registry_names(key)
    if names:
        return ", ".join(f"`{name}`" for name in names)
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if typing.get_origin(annotation) is typing.Literal:
        return ", ".join(f"`{json.dumps(a)}`" for a in typing.get_args(annotation))
    for arg in args:
        if typing.get_origin(arg) is typing.Literal:
            return ", ".join(f"`{json.dumps(a)}`" for a in typing.get_args(arg))
    return _cell(str(annotation).replace("typing.", "").replace("<class '", "").replace("'>", ""))


def _registry_names(key: str) -> list[str] | None:
    from tunelab.data.formats import CONVERTERS
    from tunelab.data.templates import TEMPLATES

    return {"train.stage": sorted(STAGE_SPECS), "method.name": sorted(METHOD_SPECS), "data.format": sorted(CONVERTERS),
            "data.template": sorted(TEMPLATES), "continual.method": ["none", *sorted(PENALTY_SPECS)]}.get(key)


def _readers() -> dict[str, str]:
    from tunelab.config.reads import readers

    return {key: ", ".join(f"`{name}`" for name in names) for key, names in readers().items()}


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ").replace("<", "&lt;").replace(">", "&gt;")


if __name__ == "__main__":
    print(config_markdown(), end="")

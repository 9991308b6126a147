"""What the schema says about its keys (config.base FREE / CACHE_KEY), for the code that needs the lists: resume's
free keys and the tokenized-data cache key come from here, so a new key carries its own facts."""
from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from tunelab.config.run import RunConfig


def marked(marker: str, schema: type[BaseModel] = RunConfig, prefix: str = "") -> list[str]:
    """Dotted keys whose field carries `marker` (a marked section counts as a whole: `output`, `eval`)."""
    found = []
    for name, field in schema.model_fields.items():
        extra = field.json_schema_extra if isinstance(field.json_schema_extra, dict) else {}
        if extra.get(marker):
            found.append(f"{prefix}{name}")
            continue
        section = _section(field.annotation)
        if section is not None:
            found += marked(marker, section, f"{prefix}{name}.")
    return found


def _section(annotation) -> type[BaseModel] | None:
    import typing

    for candidate in (annotation, *typing.get_args(annotation)):
        if isinstance(candidate, type) and issubclass(candidate, BaseModel):
            return candidate
    return None


def free_keys() -> tuple[str, ...]:
    """Keys that may differ when a run is resumed."""
    return tuple(marked("resume"))


def cache_key_values(config: RunConfig) -> dict[str, Any]:
    """The config values the tokenized rows depend on (the rest of the cache key is the data's and tokenizer's)."""
    values = {}
    for key in marked("cache_key"):
        value: Any = config
        for part in key.split("."):
            value = getattr(value, part) if value is not None else None
        values[key] = value.model_dump(mode="json") if isinstance(value, BaseModel) else value
    return values


def form_keys(section: type[BaseModel], advanced: bool = False) -> tuple[str, ...]:
    """A section's keys the UI's train form shows at once (FORM) or under "advanced" (ADVANCED), in schema order."""
    return tuple(marked("form_advanced" if advanced else "form", section))


def optional_backends() -> dict[tuple[str, Any], str]:
    """(dotted key, value) -> the package that value needs (`backends` on the field)."""
    found = {}
    for key in marked("backends"):
        section, name = key.rsplit(".", 1)
        schema: type[BaseModel] = RunConfig
        for part in section.split("."):
            schema = _section(schema.model_fields[part].annotation)
        for value, package in schema.model_fields[name].json_schema_extra["backends"].items():
            found[(key, value)] = package
    return found


def chosen_backends(config: RunConfig) -> list[tuple[str, Any, str]]:
    """(dotted key, value, package) for each value chosen in `config` that needs an optional package."""
    chosen = []
    for (key, value), package in optional_backends().items():
        section, name = key.split(".")
        if getattr(getattr(config, section), name) == value:
            chosen.append((key, value, package))
    return chosen

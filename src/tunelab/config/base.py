"""Shared base for every config section: unknown keys are errors, values are validated on assignment.

Facts about a key live on its field (`json_schema_extra`), and the code that needs them reads them from the schema
(config.keys): FREE — may change when a run is resumed (where and how it is logged or saved, not what a step
computes); CACHE_KEY — the tokenized rows depend on it (part of the data cache's key); FORM / ADVANCED — the
UI's train form shows it at once / under "advanced"; `backends` — values that need an optional package.
"""
import typing

from pydantic import BaseModel, ConfigDict, model_validator


FREE = {"resume": "free"}
CACHE_KEY = {"cache_key": True}
FORM = {"form": True}
ADVANCED = {"form_advanced": True}


def backends(**needs: str) -> dict:
    """Values of a key that need an optional package: backends(adamw_8bit="bitsandbytes")."""
    return {"backends": needs}


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True, protected_namespaces=())

    @model_validator(mode="before")
    @classmethod
    def _one_value_for_a_list(cls, data):
        """A key that takes a list takes one item as itself: `reward: length` (YAML) and `train.reward=length`
        (override) mean [length], as people write them and the docs show them."""
        if not isinstance(data, dict):
            return data
        return {key: [value] if isinstance(value, str) and _takes_only_lists(cls, key) else value
                for key, value in data.items()}

    def given_keys(self, section: str) -> list[str]:
        """`section.key` for each key the user set here (what an error from a library built from them names)."""
        return [f"{section}.{key}" for key in sorted(self.model_fields_set)] or [f"{section}.* (the defaults)"]


def _takes_only_lists(model: type[BaseModel], key: str) -> bool:
    field = model.model_fields.get(key)
    return field is not None and typing.get_origin(field.annotation) is list

"""Keys a method or stage does not read: `method.num_experts` with `lora`, or `train.beta` with `sft`, would be
accepted by the schema (one section holds every method's keys, one every stage's) and silently ignored. The
methods' and stages' own `options` (and a stage's `data_options`, e.g. sft's `data.train_on`) say which keys each
reads; a key that only other methods (or stages) read, written by the user, is refused with the keys the chosen one
does read.

Checked on what the user wrote (the raw sections) and only where the value differs from the key's default: a run
directory's config.yaml stores every key with its value, and copying it to train again stays valid.
"""
from __future__ import annotations

from tunelab.specs.methods import METHOD_SPECS
from tunelab.specs.stages import STAGE_SPECS


# section -> (registry, the section and key naming the chosen member, the spec attribute listing what it reads)
READERS = {"method": (METHOD_SPECS, ("method", "name"), "options"),
           "train": (STAGE_SPECS, ("train", "stage"), "options"),
           "data": (STAGE_SPECS, ("train", "stage"), "data_options")}


def readers() -> dict[str, list[str]]:
    """`method.x` / `train.x` / `data.x` -> the methods or stages that read it, for the keys only some of them read."""
    found = {}
    for section, (registry, _, attribute) in READERS.items():
        reads = {name: set(getattr(spec, attribute)) for name, spec in registry.items()}
        for key in set().union(*reads.values()):
            names = sorted(name for name, keys in reads.items() if key in keys)
            if len(names) < len(registry):
                found[f"{section}.{key}"] = names
    return found


def unread_key_problems(raw: dict, config) -> list[tuple[tuple[str, str], str]]:
    """((section, key), message) for each key written that the chosen method or stage does not read."""
    who = readers()
    problems = []
    for section, (registry, chooser, attribute) in READERS.items():
        name = getattr(getattr(config, chooser[0]), chooser[1])
        described, keys = f"{'.'.join(chooser)} {name!r}", getattr(registry[name], attribute)
        written = raw.get(section) if isinstance(raw.get(section), dict) else {}
        for key in written:
            names = who.get(f"{section}.{key}")
            if names is None or name in names or not _differs(getattr(config, section), key):
                continue
            its = ", ".join(f"{section}.{k}" for k in keys) or "none of the stage-specific keys"
            problems.append(((section, key), f"{section}.{key}: {described} does not read it (read by: "
                             f"{', '.join(names)}); {described} reads {its}"))
    return problems


def _differs(section_config, key: str) -> bool:
    field = type(section_config).model_fields[key]
    return getattr(section_config, key) != field.get_default(call_default_factory=True)

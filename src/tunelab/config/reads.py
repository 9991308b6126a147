"""Keys a method or stage does not read: `method.num_experts` with `lora`, or `train.beta` with `sft`, would be
accepted by the schema (one section holds every method's keys, one every stage's) and silently ignored. The
methods' and stages' own `options` say which keys each reads; a key that only other methods (or stages) read,
written by the user, is refused with the keys the chosen one does read.

Checked on what the user wrote (the raw sections) and only where the value differs from the key's default: a run
directory's config.yaml stores every key with its value, and copying it to train again stays valid.
"""
from __future__ import annotations


def unread_key_problems(raw: dict, config) -> list[tuple[tuple[str, str], str]]:
    """((section, key), message) for each key written that the chosen method or stage does not read."""
    from tunelab.methods import METHODS
    from tunelab.stages import STAGES

    method = METHODS[config.method.name]
    stage = STAGES[config.train.stage]
    checks = (
        ("method", set(method.all_options()), {key for cls in METHODS.values() for key in cls.all_options()},
         f"method.name {config.method.name!r}", method.all_options()),
        ("train", set(stage.options), {key for cls in STAGES.values() for key in cls.options},
         f"train.stage {config.train.stage!r}", stage.options),
    )
    problems = []
    for section, reads, specific, chosen, listed in checks:
        written = raw.get(section) if isinstance(raw.get(section), dict) else {}
        section_config = getattr(config, section)
        for key in written:
            if key in specific and key not in reads and _differs(section_config, key):
                readers = ", ".join(sorted(name for name, cls in (METHODS if section == "method" else STAGES).items()
                                           if key in (cls.all_options() if section == "method" else cls.options)))
                its = ", ".join(f"{section}.{k}" for k in listed) or "none of the stage-specific keys"
                problems.append(((section, key), f"{section}.{key}: {chosen} does not read it (read by: {readers}); "
                                 f"{chosen} reads {its}"))
    return problems


def _differs(section_config, key: str) -> bool:
    field = type(section_config).model_fields[key]
    return getattr(section_config, key) != field.get_default(call_default_factory=True)

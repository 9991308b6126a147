"""Which method can train with which stage: checked when the config is validated, so an unsupported
pair fails at once with the reason instead of training something other than what was asked.

The rules are properties of the method and stage classes (flags), not a table of names, so a new
method or stage is covered by what it declares.
"""
from __future__ import annotations


def unsupported(method_cls, stage_cls) -> str | None:
    """Why `method_cls` cannot train with `stage_cls`, or None when the pair works."""
    if stage_cls.head != "causal-lm" and not method_cls.trains_task_heads:
        return (f"method {method_cls.name} cannot train the new {stage_cls.head} head that stage "
                f"{stage_cls.name} adds (it only saves its own weights); use lora, full, freeze or bitfit")
    if stage_cls.head != "causal-lm" and not method_cls.supports_packing:
        return (f"method {method_cls.name} adds virtual tokens, which a {stage_cls.head} head would read "
                "instead of the text's last token")
    if stage_cls.owns_loop and method_cls.adds_loss_terms:
        return (f"TRL's {stage_cls.name} trainer runs its own loop, so the loss terms of method {method_cls.name} "
                "would be silently dropped")
    if getattr(stage_cls, "aligned_logits", False) and not method_cls.supports_packing:
        return (f"method {method_cls.name} adds virtual tokens, which shift the logits TRL lines up with the "
                f"completion tokens in stage {stage_cls.name}")
    return None


def support_table(methods: dict, stages: dict) -> list[tuple[str, str, str]]:
    """(method, stage, "yes" or the reason) for every pair: the matrix the docs show."""
    return [(m, s, unsupported(methods[m], stages[s]) or "yes") for m in sorted(methods) for s in sorted(stages)]

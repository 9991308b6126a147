"""Which method can train with which stage, and which continual penalty can run with which stage: checked when
the config is validated, so an unsupported pair fails at once with the reason instead of training something
other than what was asked.

The rules read the specs' capabilities, not a table of names, so a new method or stage is covered by what it
declares.
"""
from __future__ import annotations

from tunelab.specs.base import MethodSpec, PenaltySpec, StageSpec
from tunelab.specs.methods import METHOD_SPECS


def unsupported(method: MethodSpec, stage: StageSpec) -> str | None:
    """Why `method` cannot train with `stage` (the config error names both), or None when it can."""
    can, needs = method.caps, stage.caps
    if needs.head != "causal-lm" and not can.trains_task_heads:
        return ("the method cannot train the new head the stage adds (adapter and moe-lora save only their own "
                "weights; peft's AdaLoRA allows no second trainable module); use lora, full, freeze or bitfit")
    if needs.head != "causal-lm" and not can.supports_packing:
        return "the method adds virtual tokens, which the new head would read instead of the text's last token"
    if needs.owns_loop and can.adds_loss_terms:
        return "the stage's TRL trainer runs its own loop, so the method's loss terms would be silently dropped"
    if needs.uses_trl and not can.works_with_trl:
        return ("peft's AdaLoRA allows one trainable adapter and reallocates ranks inside its own forward; TRL's "
                "trainers add a reference adapter and compute their own loss")
    if needs.aligned_logits and not can.supports_packing:
        return "the method adds virtual tokens, which shift the logits TRL lines up with the completion tokens"
    return None


def penalty_unsupported(penalty: PenaltySpec, stage: StageSpec, method: MethodSpec | None = None,
                        distributed: str = "ddp") -> str | None:
    """Why a continual penalty cannot run with `stage`, `method` and the engine (the config error says it), or None."""
    if penalty.caps.needs_ba_update and method is not None and not method.caps.update_is_ba_from_zero:
        return (f"it keeps LoRA's A matrices out of the old data's input directions, which holds only for an update "
                f"B·A starting at zero; method {method.name!r} is not one (use {_ba_methods()})")
    if penalty.caps.needs_ba_update and distributed != "ddp":
        return f"train.distributed {distributed!r} shards and flattens the A matrices, which it needs whole; use ddp"
    if penalty.caps.adds_loss and stage.caps.owns_loop:
        return "the stage's TRL trainer runs its own loop, so the penalty would be silently dropped"
    if penalty.caps.needs_lm_head and stage.caps.head != "causal-lm":
        return "the penalty compares next-token predictions, and this stage's model has another head"
    if not penalty.caps.adds_loss and stage.example_kind not in ("messages", "text"):
        return "replay mixes in conversations or plain text, and this stage trains on other records"
    return None


def support_markdown(methods: dict, stages: dict) -> str:
    """The method x stage matrix as markdown: "yes", or "no (n)" with reason n listed below the table.
    docs/method_stage_matrix.md is this text (a test keeps them equal)."""
    names = sorted(stages)
    lines = ["| method | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    reasons: dict[str, int] = {}
    for method in sorted(methods):
        cells = []
        for stage in names:
            reason = unsupported(methods[method], stages[stage])
            cells.append("yes" if reason is None else f"no ({reasons.setdefault(reason, len(reasons) + 1)})")
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    lines.append("")
    lines += [f"- ({number}) {reason}" for reason, number in reasons.items()]
    return "\n".join(lines) + "\n"


def _ba_methods() -> str:
    """The methods whose spec declares a B·A update from zero, as the message lists them."""
    names = [spec.name for spec in METHOD_SPECS.values() if spec.caps.update_is_ba_from_zero]
    return ", ".join(names[:-1]) + " or " + names[-1]

"""Which method can train with which stage: checked when the config is validated, so an unsupported
pair fails at once with the reason instead of training something other than what was asked.

The rules are properties of the method and stage classes (flags), not a table of names, so a new
method or stage is covered by what it declares.
"""
from __future__ import annotations


def unsupported(method_cls, stage_cls) -> str | None:
    """Why `method_cls` cannot train with `stage_cls` (the config error names both), or None when it can."""
    if stage_cls.head != "causal-lm" and not method_cls.trains_task_heads:
        return ("the method cannot train the new head the stage adds (adapter and moe-lora save only their own "
                "weights; peft's AdaLoRA allows no second trainable module); use lora, full, freeze or bitfit")
    if stage_cls.head != "causal-lm" and not method_cls.supports_packing:
        return "the method adds virtual tokens, which the new head would read instead of the text's last token"
    if stage_cls.owns_loop and method_cls.adds_loss_terms:
        return "the stage's TRL trainer runs its own loop, so the method's loss terms would be silently dropped"
    if getattr(stage_cls, "uses_trl", False) and not method_cls.works_with_trl:
        return ("peft's AdaLoRA allows one trainable adapter and reallocates ranks inside its own forward; TRL's "
                "trainers add a reference adapter and compute their own loss")
    if getattr(stage_cls, "aligned_logits", False) and not method_cls.supports_packing:
        return "the method adds virtual tokens, which shift the logits TRL lines up with the completion tokens"
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

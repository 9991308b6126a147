"""Configs of other fine-tuning tools, taken as they are: LLaMA-Factory and axolotl YAML files are translated
key by key into a tunelab config (mapped, ignored with a reason, or refused naming the key), shown as a table,
then validated like any tunelab config.

Detection: a tunelab config has sections (model:, data:, train:, ...); a file with none of them is LLaMA-Factory's
when it has `model_name_or_path` and `stage` or `finetuning_type`, axolotl's when it has `base_model` and
`datasets` or `pretraining_dataset`. Anything else is read as tunelab's, so a tunelab config with a typo gets
tunelab's "unknown key" message, never a translation.
"""
from __future__ import annotations

from dataclasses import dataclass
from types import ModuleType

from tunelab.config.foreign import axolotl, llamafactory
from tunelab.config.foreign.rules import (DEFAULT, IGNORED, REFUSED, Context, Row, Translation, apply_defaults,
                                          apply_implied, apply_rules)
from tunelab.errors import TunelabError


@dataclass(frozen=True)
class Dialect:
    name: str         # the --from name
    title: str        # how messages name the tool
    module: ModuleType  # RULES, REQUIRED, IMPLIED, defaults(raw), detect(raw)


DIALECTS = {dialect.name: dialect for dialect in (
    Dialect("llamafactory", "LLaMA-Factory", llamafactory),
    Dialect("axolotl", "axolotl", axolotl),
)}
TUNELAB_SECTIONS = ("model", "data", "method", "train", "output", "eval", "continual")


def detect(raw: dict) -> Dialect | None:
    """The foreign tool whose config `raw` is, or None for a tunelab config (see the module doc)."""
    if not isinstance(raw, dict) or set(TUNELAB_SECTIONS) & set(raw):
        return None
    found = [dialect for dialect in DIALECTS.values() if dialect.module.detect(raw)]
    return found[0] if len(found) == 1 else None


def dialect_named(name: str) -> Dialect:
    if name not in DIALECTS:
        raise TunelabError(f"--from: unknown tool {name!r} (choose from {', '.join(DIALECTS)})")
    return DIALECTS[name]


def translate(raw: dict, dialect: Dialect, source: str, lines: dict[tuple, int] | None = None) -> Translation:
    """Every key of `raw` through the dialect's rules, then its defaults that train differently from tunelab's;
    keys the chosen method or stage does not read are dropped with the reason (as the other tool ignores them)."""
    rules, ctx = dialect.module.RULES, Context(raw)
    key_lines = {key[0]: line for key, line in (lines or {}).items() if len(key) == 1}
    rows = apply_rules(raw, rules, ctx, key_lines)
    rows += [Row(f"({key})", None, REFUSED, f"required: {what}") for key, what in dialect.module.REQUIRED.items()
             if raw.get(key) in (None, "")]
    rows += apply_implied(dialect.module.IMPLIED, raw, rules, ctx)
    rows += apply_defaults(dialect.module.defaults(raw), raw, ctx)
    _drop_unread(ctx.out, rows)
    rows += _kto_pairs(ctx) + _packed_accumulation(ctx)
    config = {section: ctx.out[section] for section in TUNELAB_SECTIONS if section in ctx.out}
    return Translation(dialect.title, source, config, rows)


def check(translation: Translation) -> None:
    """One TunelabError naming every refused key (file:line: key: reason), or nothing."""
    refused = translation.refused
    if refused:
        where = translation.source
        problems = "; ".join(f"{where}:{row.line}: {row.key}: {row.detail}" if row.line else f"{where}: {row.key}: "
                             f"{row.detail}" for row in refused)
        raise TunelabError(f"{problems} ({translation.dialect} config; `tunelab convert {where}` shows the whole "
                           "translation)")


def target_lines(translation: Translation) -> dict[tuple, int]:
    """tunelab key path -> the line of the foreign key that set it, so a validation error names that line."""
    found = {}
    for row in translation.rows:
        for dotted in row.targets:
            if row.line:
                found.setdefault(tuple(dotted.split(".")), row.line)
    return found


def _drop_unread(out: dict, rows: list) -> None:
    """`pref_beta` in an SFT file: the other tool ignores it, so does the translation (config.reads would refuse
    it), saying so in the table."""
    from tunelab.config.reads import READERS, readers

    who = readers()
    named = {"method": out.get("method", {}).get("name", "lora"), "train": out.get("train", {}).get("stage", "sft")}
    chosen = {section: named[chooser[0]] for section, (_, chooser, _) in READERS.items()}
    for row in rows:
        if row.outcome == REFUSED:
            continue
        unread = [dotted for dotted in row.targets if dotted.count(".") == 1 and dotted in who
                  and chosen[dotted.split(".")[0]] not in who[dotted]]
        for dotted in unread:
            section, key = dotted.split(".")
            out.get(section, {}).pop(key, None)
            row.targets.remove(dotted)
            row.detail = (f"{dotted}: not read by {chosen[section]} (read by {', '.join(who[dotted])})"
                          + (f"; {row.detail}" if row.targets else ""))
        if unread and not row.targets:
            row.outcome = IGNORED


def _kto_pairs(ctx: Context) -> list[Row]:
    """KTO's KL term compares each answer with the others in its batch (TRL), so a batch needs two examples;
    LLaMA-Factory's KTO examples use batches of one (it builds mismatched pairs in preprocessing). Two per batch
    with half the accumulation trains on the same number of examples per step."""
    train = ctx.out.get("train", {})
    if train.get("stage") != "kto" or train.get("batch_size", 8) >= 2:
        return []
    accum = train.get("grad_accum", 1)
    ctx.assigned = []
    ctx.set("train.batch_size", 2)
    ctx.set("train.grad_accum", max(accum // 2, 1))
    why = (f"KTO needs 2 examples per batch for its KL term: {2 * max(accum // 2, 1)} examples per step "
           f"(was {accum})")
    return [Row("(kto batch)", train.get("batch_size"), DEFAULT, f"train.batch_size = 2, train.grad_accum = "
                f"{max(accum // 2, 1)} ({why})", targets=["train.batch_size", "train.grad_accum"])]


def _packed_accumulation(ctx: Context) -> list[Row]:
    """Micro-batches of one with gradient accumulation (LLaMA-Factory's examples: 1 x 8) train the same examples per
    step, with the same loss, as one batch of eight when tunelab packs: its loss is normalised over the whole
    accumulated batch, and a packed batch runs forward and backward in pieces of train.piece_tokens, so memory stays
    bounded. One batch of eight is ~3x faster on a CPU (measured: 60 vs 168 tokens/s, SmolLM2-135M, LoRA)."""
    from tunelab.specs.methods import METHOD_SPECS
    from tunelab.specs.stages import STAGE_SPECS

    train = ctx.out.get("train", {})
    method, stage = ctx.out.get("method", {}).get("name", "lora"), train.get("stage", "sft")
    accum = train.get("grad_accum", 1)
    packs = train.get("packing", True) and STAGE_SPECS[stage].caps.supports_packing and \
        METHOD_SPECS[method].caps.supports_packing
    if not packs or accum <= 1:
        return []
    batch = train.get("batch_size", 8) * accum
    ctx.assigned = []
    ctx.set("train.batch_size", batch)
    ctx.set("train.grad_accum", 1)
    return [Row("(accumulation)", f"{train.get('batch_size', 8)} x {accum}", DEFAULT,
                f"train.batch_size = {batch}, train.grad_accum = 1 (the same {batch} examples and loss per step: "
                "tunelab packs the batch and runs it in pieces of train.piece_tokens)",
                targets=["train.batch_size", "train.grad_accum"])]

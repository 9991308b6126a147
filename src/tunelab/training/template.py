"""The chat template a run trains with, set on the tokenizer before the method wraps the model.

Order: `data.template` > the tokenizer's own > the model family's default (data.families); with none, a stage
that renders conversations stops with a message instead of guessing. When the template in force comes from the
table (a base model, or `data.template`), the special tokens it writes that the tokenizer lacks are added and
their embedding rows are trained by the method (tunelab.models.tokens); the log and provenance.json say so.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field

from tunelab.data.templates import TemplateChoice, choose_template, no_template_error
from tunelab.errors import TunelabError
from tunelab.models.tokens import add_template_tokens, missing_tokens

log = logging.getLogger("tunelab")


@dataclass
class TemplateSetup:
    choice: TemplateChoice
    added: list[str] = field(default_factory=list)   # special tokens added to the tokenizer
    rows: list[int] = field(default_factory=list)    # their new embedding rows, trained by the method
    trained_by: str = ""
    saved_template: str | None = None  # the template saved with the run being continued
    enable_thinking: bool | None = None  # the template's thinking switch as trained (None: it has none)

    def provenance(self) -> dict:
        family = self.choice.family
        return {"source": self.choice.source, "family": family.name if family else None,
                "enable_thinking": self.enable_thinking,
                "added_tokens": self.added, "new_rows": self.rows, "rows_trained_by": self.trained_by or None}


def set_template(config, stage, method, model, tokenizer, can_add: bool = True,
                 from_run: bool = False) -> TemplateSetup:
    """Choose the template, put it on the tokenizer, add (and let `method` train) the tokens it needs."""
    saved = tokenizer.chat_template if from_run else None
    model_type = getattr(getattr(model, "config", None), "model_type", None)
    choice = choose_template(tokenizer, config.data.template, model_type,
                             config.data.prefer_tokenizer_template)
    tokenizer.chat_template = choice.template
    setup = TemplateSetup(choice, saved_template=saved)
    if not stage.uses_template:
        return setup
    if choice.template is None:
        raise no_template_error()
    log.info("chat template: %s", choice.describe())
    if choice.source == "tokenizer":
        return setup
    wanted = choice.family.special_tokens
    missing = missing_tokens(tokenizer, wanted)
    if not missing:
        return setup
    where = f"data.template {choice.family.name!r}" if choice.source == "data.template" else \
        f"the {choice.family.name} template (the tokenizer has none)"
    if not can_add:
        raise TunelabError(f"data.template: {where} needs tokens the run being continued does not have "
                           f"({', '.join(missing)}); continue with that run's template or start from its merged model")
    if not method.trains_added_tokens:
        raise TunelabError(f"method.name {method.name!r} cannot train the embedding rows of the tokens {where} adds "
                           f"({', '.join(missing)}); use lora, full or freeze, or a tokenizer that has them")
    setup.rows = add_template_tokens(model, tokenizer, wanted)
    setup.added = missing
    setup.trained_by = _trained_by(method)
    method.added_tokens = list(setup.rows)
    log.warning("added %d special tokens for %s: %s; embeddings grown to %d rows, the new rows train (%s)",
                len(missing), where, " ".join(missing), len(tokenizer), setup.trained_by)
    return setup


def set_thinking(data_config, tokenizer, examples: list[dict] | None) -> bool | None:
    """Give the template in force its `enable_thinking` default as trained (saved with the run's tokenizer, so
    inference renders prompts the same way): `data.enable_thinking` when set, else on when reasoning is kept and the
    data has some (streamed data: on unless dropped). Returns the value, or None when the template has no switch."""
    from tunelab.data.reasoning import has_reasoning, with_thinking_default

    template = tokenizer.chat_template
    if not template or "enable_thinking" not in template:
        return None
    reasoning = examples is None or any(has_reasoning(example["messages"]) for example in examples
                                        if isinstance(example.get("messages"), list))
    keep = data_config.thinking == "keep"
    enabled = data_config.enable_thinking
    if enabled is False and keep and examples is not None and reasoning:
        raise TunelabError("data.enable_thinking: false makes the template close the think block in the prompt, so "
                           "the reasoning in the data cannot be trained after it; set data.thinking: drop, or leave "
                           "data.enable_thinking unset")
    if enabled is None:
        enabled = keep and reasoning
    tokenizer.chat_template = with_thinking_default(template, enabled)
    log.info("chat template: enable_thinking=%s (%s), saved with the run", str(enabled).lower(),
             "data.enable_thinking" if data_config.enable_thinking is not None else
             "reasoning kept and in the data" if enabled else "no reasoning trained")
    return enabled


def _trained_by(method) -> str:
    if not method.is_adapter:
        return "the embedding and lm_head train whole and are saved with the model"
    from tunelab.methods.lora import LoraMethod

    if isinstance(method, LoraMethod):  # its peft config is a LoraConfig (PeftMethod.train_added_rows)
        return "peft trainable_token_indices: only those rows train and are saved with the adapter"
    return "peft modules_to_save: the embedding and lm_head train whole and are saved with the adapter"


def lint(config, stage, tokenizer, examples, setup: TemplateSetup | None) -> None:
    """The template lint (tunelab.data.lint) on the template in force and the first conversations of the data:
    warnings, or one error under data.strict_template (`train --strict`)."""
    from tunelab.data.lint import lint_template, linted_conversations, report

    if not stage.uses_template or not tokenizer.chat_template:
        return
    findings = lint_template(tokenizer, linted_conversations(examples or []), setup.saved_template if setup else None)
    report(findings, config.data.strict_template, log)

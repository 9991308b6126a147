"""Chat templates: the tokenizer's own by default, the model family's (data.families) by name or when it has none.

Every component that turns a conversation into text — training, generate, chat and later the
server — calls `render_conversation`, so train and inference see exactly the same text. The
template in force is set on the tokenizer (`tokenizer.chat_template`) and saved with the run.
"""
from __future__ import annotations

import difflib
from dataclasses import dataclass

from tunelab.data.families import FAMILIES, Family, find_family
from tunelab.errors import TunelabError

# data.template names: every family in the table (their templates are the ones used when a tokenizer has none)
TEMPLATES = {name: family.template for name, family in FAMILIES.items()}
CHATML = TEMPLATES["chatml"]


@dataclass
class TemplateChoice:
    """The chat template in force, where it came from, and the model family it belongs to."""
    template: str | None
    source: str              # "data.template", "tokenizer" or "family" (the table's, for a tokenizer with none)
    family: Family | None

    def describe(self) -> str:
        family = self.family.name if self.family else "unknown family"
        return {"data.template": f"data.template {family!r}", "tokenizer": f"the tokenizer's own ({family})",
                "family": f"the {family} family's (the tokenizer has none)"}.get(self.source, "none")


def choose_template(tokenizer, name: str | None, model_type: str | None) -> TemplateChoice:
    """`data.template` when given; else the tokenizer's own; else the default of the model's family (found from
    `model_type` and the vocabulary). No template at all when none applies: rendering then fails with a message
    instead of a silent guess."""
    family = FAMILIES[check_template(name)] if name else find_family(model_type, tokenizer.get_vocab())
    if name:
        return TemplateChoice(family.template, "data.template", family)
    if tokenizer.chat_template:
        return TemplateChoice(tokenizer.chat_template, "tokenizer", family)
    if family is not None:
        return TemplateChoice(family.template, "family", family)
    return TemplateChoice(None, "none", None)


def resolve_template(tokenizer, name: str | None, model_type: str | None = None) -> str | None:
    """The Jinja template for `data.template` (see `choose_template`)."""
    return choose_template(tokenizer, name, model_type).template


def check_template(name: str) -> str:
    """`name` if it is a shipped template, else a TunelabError that lists them and suggests the closest."""
    if name in TEMPLATES:
        return name
    hint = difflib.get_close_matches(name, list(TEMPLATES), n=1)
    suggestion = f"; did you mean {hint[0]!r}?" if hint else ""
    raise TunelabError(
        f"data.template: unknown template {name!r}{suggestion} (available: {', '.join(TEMPLATES)}, "
        "or omit it to use the tokenizer's own)"
    )


def no_template_error() -> TunelabError:
    """What a template-less tokenizer of an unknown family gets, wherever a conversation is to be rendered."""
    return TunelabError("data.template: the tokenizer has no chat template and tunelab cannot tell the model's "
                        "family from its config and vocabulary, so it will not guess one; set data.template to one "
                        f"of: {', '.join(TEMPLATES)}")


def render_conversation(tokenizer, messages: list[dict], add_generation_prompt: bool = False) -> str:
    """Render messages with the tokenizer's template in force — the one function everybody uses."""
    if not tokenizer.chat_template:
        raise no_template_error()
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=add_generation_prompt)

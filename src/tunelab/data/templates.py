"""Chat templates: the tokenizer's own by default, the model family's (data.families) by name or when it has none.

Every component that turns a conversation into text — training, generate, chat and later the
server — calls `render_conversation`, so train and inference see exactly the same text. The
template in force is set on the tokenizer (`tokenizer.chat_template`) and saved with the run.
"""
from __future__ import annotations

import difflib
import json
import logging
from dataclasses import dataclass

from tunelab.data.families import FAMILIES, Family, find_family
from tunelab.data.reasoning import REASONING, inline_reasoning
from tunelab.data.tools import as_text_tags, uses_tools
from tunelab.errors import TunelabError

log = logging.getLogger("tunelab")

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


def choose_template(tokenizer, name: str | None, model_type: str | None,
                    prefer_tokenizer: bool = False) -> TemplateChoice:
    """`data.template` when given; else the tokenizer's own; else the default of the model's family (found from
    `model_type` and the vocabulary). No template at all when none applies: rendering then fails with a message
    instead of a silent guess. `prefer_tokenizer` (data.prefer_tokenizer_template): a named family whose model this
    is takes the tokenizer's own template, the real model's format, over the table's rendition of it."""
    family = FAMILIES[check_template(name)] if name else find_family(model_type, tokenizer.get_vocab())
    if name and prefer_tokenizer and tokenizer.chat_template and find_family(model_type, tokenizer.get_vocab()) == family:
        return TemplateChoice(tokenizer.chat_template, "tokenizer", family)
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


def render_conversation(tokenizer, messages: list[dict], add_generation_prompt: bool = False,
                        tools: list[dict] | None = None) -> str:
    """Render canonical messages (tunelab.data.tools / reasoning) with the tokenizer's template in force — the one
    function everybody uses. What the template cannot take is written the way the model sees it at inference:
    reasoning as a think block in the content, tool calls and results as text tags (logged once)."""
    if not tokenizer.chat_template:
        raise no_template_error()
    messages, tools = adapted(tokenizer, messages, tools)
    return tokenizer.apply_chat_template(messages, tools=tools, tokenize=False,
                                         add_generation_prompt=add_generation_prompt)


@dataclass(frozen=True)
class Support:
    """What a chat template renders itself (found by rendering probe conversations once per template)."""
    reasoning: bool = False    # reads `reasoning_content` on assistant messages
    tools: bool = False        # renders `tools=`, assistant `tool_calls` and `tool` messages
    string_arguments: bool = False  # wants tool-call arguments as a JSON string (DeepSeek-R1), not an object


_SUPPORT: dict[tuple, Support] = {}
_PROBE_TOOL = {"type": "function", "function": {"name": "probe_tool_fn", "description": "PROBE_TOOL_DESCRIPTION",
                                                "parameters": {"type": "object", "properties": {}}}}


def template_support(tokenizer) -> Support:
    key = (id(tokenizer), tokenizer.chat_template)
    if key not in _SUPPORT:
        tools = _probe_tools(tokenizer)
        _SUPPORT[key] = Support(reasoning=_renders(tokenizer, _REASONING_PROBE, None, "PROBE_REASONING"),
                                tools=tools is not None, string_arguments=bool(tools))
        if not _SUPPORT[key].tools:
            log.info("chat template has no tool support: tool calls and results are written as <tool_call> / "
                     "<tool_response> text")
    return _SUPPORT[key]


_REASONING_PROBE = [{"role": "user", "content": "PROBE_QUESTION"},
                    {"role": "assistant", "content": "PROBE_ANSWER", "reasoning_content": "PROBE_REASONING"}]


def _tool_probe(arguments) -> list[dict]:
    return [{"role": "user", "content": "PROBE_QUESTION"},
            {"role": "assistant", "content": "", "tool_calls": [
                {"id": "call00000", "type": "function", "function": {"name": "probe_tool_fn", "arguments": arguments}}]},
            {"role": "tool", "content": "PROBE_TOOL_RESULT", "tool_call_id": "call00000", "name": "probe_tool_fn"},
            {"role": "assistant", "content": "PROBE_ANSWER"}]


def _probe_tools(tokenizer) -> bool | None:
    """None: no tool support; False: arguments as objects; True: as JSON strings."""
    for as_string, arguments in ((False, {"probe_key": 1}), (True, '{"probe_key": 1}')):
        if _renders(tokenizer, _tool_probe(arguments), [_PROBE_TOOL],
                    "probe_tool_fn", "PROBE_TOOL_DESCRIPTION", "PROBE_TOOL_RESULT", "probe_key"):
            return as_string
    return None


def _renders(tokenizer, messages, tools, *needles: str) -> bool:
    try:
        text = tokenizer.apply_chat_template(messages, tools=tools, tokenize=False)
    except Exception:  # a template that rejects the probe (raise_exception on a role) does not support it
        return False
    return all(needle in text for needle in needles)


def adapted(tokenizer, messages: list[dict], tools: list[dict] | None) -> tuple[list[dict], list[dict] | None]:
    """Messages and tools in the shape the template in force takes (see `render_conversation`)."""
    if not tools and not uses_tools(messages) and not any(REASONING in message for message in messages):
        return messages, None
    support = template_support(tokenizer)
    if not support.reasoning:
        messages = [inline_reasoning(m) if m["role"] == "assistant" else m for m in messages]
    if not support.tools:
        return as_text_tags(messages, tools), None
    if support.string_arguments:
        messages = [_string_arguments(m) for m in messages]
    return messages, tools or None


def _string_arguments(message: dict) -> dict:
    if not message.get("tool_calls"):
        return message
    calls = [{**call, "function": {**call["function"], "arguments": call["function"]["arguments"]
                                   if isinstance(call["function"]["arguments"], str)
                                   else json.dumps(call["function"]["arguments"], ensure_ascii=False)}}
             for call in message["tool_calls"]]
    return {**message, "tool_calls": calls}

"""Reasoning ("thinking") in conversations: one canonical field, whichever convention the data uses.

Data writes reasoning two ways: OpenAI/DeepSeek put it in the assistant message's `reasoning_content` (some APIs
call it `reasoning`), LLaMA-Factory puts a `<think>...</think>` block at the start of the answer. Both become the
message's `reasoning_content`, so they tokenize identically. Rendering puts it back the way the template wants
(`tunelab.data.templates`): in `reasoning_content` for templates that read it (Qwen3), else as a think block at the
start of the content (what the model writes at inference).

`data.thinking: drop` removes it; `data.train_thinking: false` keeps it as context but gives its tokens no label
(`think_region` finds them in the rendered text); an empty think block is not trained, since it teaches the model
to skip its reasoning — unless the generation prompt opens it and nothing can close it at inference (`trained_spans`).
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from tunelab.errors import TunelabError

THINK_OPEN, THINK_CLOSE = "<think>", "</think>"
REASONING = "reasoning_content"  # the canonical field (OpenAI-compatible servers, DeepSeek, Qwen3's template)
_LEADING_THINK = re.compile(rf"^\s*{re.escape(THINK_OPEN)}(.*?){re.escape(THINK_CLOSE)}\s*", re.DOTALL)
_ENABLE_PREFIX = "{#- tunelab: enable_thinking default -#}"


@dataclass(frozen=True)
class Thinking:
    """How reasoning is trained: kept or dropped, and whether its tokens carry labels."""
    keep: bool = True
    train: bool = True

    @classmethod
    def of(cls, data_config) -> "Thinking":
        return cls(keep=data_config.thinking == "keep", train=data_config.train_thinking)


def split_reasoning(turn: dict, content: str, where: str) -> tuple[str | None, str]:
    """(reasoning, answer) of an assistant turn: its `reasoning_content`/`reasoning` field, else a think block that
    opens the answer. Both at once must agree to one: a turn with both is refused."""
    field = next((key for key in (REASONING, "reasoning") if turn.get(key) not in (None, "")), None)
    reasoning = turn.get(field) if field else None
    if reasoning is not None and not isinstance(reasoning, str):
        raise TunelabError(f"{where}: field '{field}' must be text, got {type(reasoning).__name__}")
    match = _LEADING_THINK.match(content)
    if match:
        if reasoning is not None:
            raise TunelabError(f"{where}: the answer has a {THINK_OPEN} block and field '{field}' too; keep one")
        return match.group(1).strip("\n"), content[match.end():]
    return (reasoning.strip("\n") if reasoning is not None else None), content


def answer_of(generated: str) -> tuple[str | None, str]:
    """(reasoning, answer) of generated text: what comes before `</think>` is reasoning (the `<think>` may have been
    in the prompt, as DeepSeek-R1 and Qwen3 write it); an unclosed block is all reasoning and no answer yet."""
    close = generated.rfind(THINK_CLOSE)
    if close < 0:
        opened = generated.lstrip().startswith(THINK_OPEN)
        return (generated.lstrip()[len(THINK_OPEN):].strip(), "") if opened else (None, generated)
    reasoning = generated[:close].strip()
    return reasoning.removeprefix(THINK_OPEN).strip(), generated[close + len(THINK_CLOSE):].strip()


def has_reasoning(messages: list[dict]) -> bool:
    return any(message.get(REASONING) for message in messages)


def without_reasoning(messages: list[dict]) -> list[dict]:
    return [{k: v for k, v in message.items() if k != REASONING} for message in messages]


def inline_reasoning(message: dict) -> dict:
    """The message with its reasoning as a think block at the start of the content (for templates that do not read
    `reasoning_content`): `<think>\\nR\\n</think>\\n\\nanswer`, as reasoning models write it."""
    reasoning = message.get(REASONING)
    rest = {k: v for k, v in message.items() if k != REASONING}
    if not reasoning:
        return rest
    return {**rest, "content": f"{THINK_OPEN}\n{reasoning}\n{THINK_CLOSE}\n\n{message.get('content') or ''}"}


def think_region(text: str, start: int, end: int) -> tuple[int, int, bool, bool] | None:
    """The think block of the answer text[start:end] as (start, end, empty, opened by the prompt): one that opens the
    answer, or one the prompt before `start` opened (DeepSeek-R1 and Qwen3 open `<think>` in the generation prompt).
    The region runs to the close marker and the whitespace after it; None without a block."""
    before = text[:start]
    opened = before.rfind(THINK_OPEN) > before.rfind(THINK_CLOSE)
    head = text[start:end]
    if not opened and not head.lstrip().startswith(THINK_OPEN):
        return None
    close = text.find(THINK_CLOSE, start, end)
    if close < 0:
        return None
    stop = close + len(THINK_CLOSE)
    while stop < end and text[stop].isspace():
        stop += 1
    inner = text[start:close] if opened else text[start:close].replace(THINK_OPEN, "", 1)
    return start, stop, not inner.strip(), opened


def trained_spans(text: str, spans: list[tuple[int, int]], thinking: Thinking,
                  switch: bool = True) -> list[tuple[int, int]]:
    """`spans` with each answer's think block taken out of training when it is empty, or when reasoning is not
    trained (`data.train_thinking: false`); the answer after it stays trained. One exception: an empty block the
    generation prompt opened in a template without a thinking switch (`switch` False: DeepSeek-R1) stays trained,
    since nothing else can close it at inference (lint (d) warns that the model then learns to skip reasoning)."""
    kept = []
    for start, end in spans:
        region = think_region(text, start, end)
        if region is not None:
            _, stop, empty, opened = region
            if (empty and not (opened and not switch)) or (not empty and not thinking.train):
                start = stop
        if start < end:
            kept.append((start, end))
    return kept


def with_thinking_default(template: str | None, enabled: bool | None) -> str | None:
    """`template` whose `enable_thinking` switch defaults to `enabled` (an explicit value passed at rendering still
    wins). Saved with the run's tokenizer, so generate, chat, serve and any tool reading the template (vLLM,
    llama.cpp) render prompts the way training did. Templates without the switch are returned unchanged."""
    if template is None:
        return None
    if template.startswith(_ENABLE_PREFIX):
        template = template.split("\n", 1)[1]
    if enabled is None or "enable_thinking" not in template:
        return template
    value = "true" if enabled else "false"
    return (f"{_ENABLE_PREFIX}{{%- if enable_thinking is not defined %}}{{%- set enable_thinking = {value} %}}"
            f"{{%- endif %}}\n{template}")


def thinking_default(template: str | None) -> bool | None:
    """The `enable_thinking` default a saved template carries (see `with_thinking_default`), None without one."""
    if not template or not template.startswith(_ENABLE_PREFIX):
        return None
    return "set enable_thinking = true" in template.split("\n", 1)[0]

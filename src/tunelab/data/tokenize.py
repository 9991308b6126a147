"""Conversations and texts -> token ids and labels.

A conversation trains each assistant answer the way generation sees it (`conversation_texts`): usually the
whole conversation as one text, else one text per answer the template renders differently once later turns follow.

Labels are built by *position*: the character spans of assistant turns in the rendered text are
mapped to tokens through the tokenizer's offsets. Never by token id — the default model's pad token
is its EOS, and masking by id would stop the model from learning to end its answer.

An assistant message with `weight: 0` (OpenAI's fine-tuning convention) is context, not trained;
`data.train_on: last` gives every answer but the last that weight (`TRAIN_ON`).
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field, fields

from tunelab.data.reasoning import REASONING, THINK_CLOSE, THINK_OPEN, Thinking, trained_spans, without_reasoning
from tunelab.data.templates import render_conversation
from tunelab.errors import TunelabError

IGNORE = -100
WEIGHT = "weight"  # on an assistant message: 0 makes it context only (no labels)


@dataclass
class TokenizeStats:
    kept: int = 0
    truncated: int = 0
    dropped: int = 0
    tokens: int = 0
    trained_tokens: int = 0
    dropped_sources: list[str] = field(default_factory=list)
    empty: int = 0  # skipped before tokenizing: an assistant answer with no text (Stage.skips)
    empty_sources: list[str] = field(default_factory=list)
    mix: dict = field(default_factory=dict)  # data.mix: per source, rows drawn, available and weight

    def summary(self) -> str:
        skipped = f", {self.empty} skipped with an empty answer" if self.empty else ""
        return (
            f"{self.kept} examples kept ({self.tokens} tokens, {self.trained_tokens} trained), "
            f"{self.truncated} truncated, {self.dropped} dropped with no trained tokens left{skipped}"
        )


def combined(parts: list[TokenizeStats]) -> TokenizeStats:
    """The counts of several tokenizations together (the sources of a data.mix, each tokenized and cached apart)."""
    total = TokenizeStats()
    for part in parts:
        for item in fields(TokenizeStats):
            if item.name != "mix":
                setattr(total, item.name, getattr(total, item.name) + getattr(part, item.name))
    return total


def last_answer_only(example: dict) -> dict:
    """The example with every assistant turn but the last made context (`weight: 0`): `data.train_on: last`.
    Examples without messages (text, pairs) are returned as they are."""
    messages = example.get("messages")
    answers = [index for index, message in enumerate(messages or []) if message["role"] == "assistant"]
    if len(answers) < 2:
        return example
    earlier = set(answers[:-1])
    return {**example, "messages": [{**message, WEIGHT: 0} if index in earlier else message
                                    for index, message in enumerate(messages)]}


# data.train_on -> what it does to an example before tokenizing
TRAIN_ON = {"all": lambda example: example, "last": last_answer_only}


def conversation_texts(tokenizer, messages: list[dict], source: str, tools: list | None = None,
                       thinking: Thinking = Thinking()) -> list[tuple[str, list[tuple[int, int]]]]:
    """The texts a conversation trains as, each with the (start, end) char spans of its trained answers.

    Each assistant turn is trained the way generation sees it: after the template's rendering of the turns before
    it with the generation prompt, and written as the template writes a last turn (`_answer`). Where that agrees
    with how the template renders the whole conversation, the conversation is one text (every template that
    renders turn by turn); where it does not — Qwen3 drops the reasoning of earlier turns, DeepSeek-R1 opens
    `<think>` only in the generation prompt — the next answer starts a new text, with the turns before it as context.
    A span starts after the generation prompt and ends after the end-of-turn token, so that token is trained; an
    empty think block (see `trained_spans` for DeepSeek-R1's), or all reasoning under `data.train_thinking: false`, is
    left untrained.
    """
    context = {index for index, message in enumerate(messages) if message.get(WEIGHT, 1) == 0}
    messages = [{k: v for k, v in message.items() if k != WEIGHT} for message in messages]  # not for templates
    if not thinking.keep:
        messages = without_reasoning(messages)
    texts, text, spans = [], "", []
    for index, message in enumerate(messages):
        if message["role"] != "assistant" or index in context:
            continue
        prompt, answer = _answer(tokenizer, messages, index, tools, source)
        if text and not prompt.startswith(text):
            texts.append((text, spans))
            spans = []
        spans.append((len(prompt), len(prompt) + len(answer)))
        text = prompt + answer
    whole = render_conversation(tokenizer, messages, tools=tools)
    if whole.startswith(text):  # what the template writes after the last answer, as it renders the conversation
        text = whole
    texts.append((text, spans))
    switch = "enable_thinking" in (tokenizer.chat_template or "")
    return [(text, trained_spans(text, spans, thinking, switch)) for text, spans in texts]


def _answer(tokenizer, messages: list[dict], index: int, tools, source: str) -> tuple[str, str]:
    """(prompt, answer) of assistant turn `index`: the generation prompt after the turns before it, and the turn as
    the template writes it last. Where the prompt writes more than the rendered turn (DeepSeek-R1 opens `<think>\n`
    and drops the reasoning from written turns; Qwen3's opens `<think>\n\n`), the turn is written after that prompt, its reasoning (or an empty
    one) closing the think block the prompt opened: `R\n</think>\n\n` + answer, as these models write it."""
    prompt = render_conversation(tokenizer, messages[:index], add_generation_prompt=True, tools=tools)
    full = render_conversation(tokenizer, messages[: index + 1], tools=tools).rstrip()
    if full.startswith(prompt) and len(full) > len(prompt):
        return prompt, full[len(prompt):]
    plain = render_conversation(tokenizer, messages[:index], tools=tools) if index else ""
    shared = len(os.path.commonprefix([prompt, full]))
    thinks = prompt.rfind(THINK_OPEN) >= max(len(plain), prompt.rfind(THINK_CLOSE) + 1)  # the prompt opens a think block
    if not (thinks and full.startswith(plain) and len(plain) <= shared < len(full)):
        raise TunelabError(
            f"{source}: the chat template does not render assistant turn {index + 1} after the generation prompt of "
            "the turns before it, so the answer cannot be located; choose another data.template")
    extra, written = prompt[shared:], full[shared:]
    opened = extra.rfind(THINK_OPEN) > extra.rfind(THINK_CLOSE)
    reasoning = messages[index].get(REASONING) or ""
    closing = f"{reasoning}\n{THINK_CLOSE}\n\n" if opened and THINK_CLOSE not in written else ""
    return prompt, closing + written


def conversation_rows(tokenizer, example: dict, max_length: int, stats: TokenizeStats,
                      thinking: Thinking = Thinking()) -> list[dict]:
    """Token ids + labels of a conversation: one row per text it trains as (`conversation_texts`), each cut to
    max_length; rows left with nothing to train are dropped (and counted)."""
    texts = conversation_texts(tokenizer, example["messages"], example.get("source", "?"), example.get("tools"),
                               thinking)
    rows = [_row(tokenizer, text, spans, max_length, stats) for text, spans in texts]
    return [kept for ids, labels in rows if (kept := _keep(ids, labels, example, stats)) is not None]


def tokenize_conversation(tokenizer, example: dict, max_length: int, stats: TokenizeStats,
                          thinking: Thinking = Thinking()) -> dict | None:
    """The one row of a conversation that trains as one text (see `conversation_rows`), or None."""
    rows = conversation_rows(tokenizer, example, max_length, stats, thinking)
    if len(rows) > 1:
        raise ValueError(f"{example.get('source', '?')} trains as {len(rows)} rows; use conversation_rows")
    return rows[0] if rows else None


def _row(tokenizer, text: str, spans: list[tuple[int, int]], max_length: int, stats: TokenizeStats):
    encoded = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    ids, offsets = encoded["input_ids"], encoded["offset_mapping"]
    if len(ids) > max_length:
        stats.truncated += 1
        ids, offsets = _cut(ids, offsets, spans, max_length)
    labels = [
        token if any(start < span_end and end > span_start for span_start, span_end in spans) else IGNORE
        for token, (start, end) in zip(ids, offsets)
    ]
    return _end_turns(tokenizer, ids, labels, max_length)


def _end_turns(tokenizer, ids: list[int], labels: list[int], max_length: int) -> tuple[list[int], list[int]]:
    """Every trained answer must end with a token generation stops on, or the fine-tune never stops talking.
    Templates that write none after an answer (GLM-4: the next turn's `<|user|>` ends it) get the stop token
    that follows trained too, and the last answer of the conversation gets EOS appended (as LLaMA-Factory's
    `efficient_eos` templates do)."""
    stops = cached_stop_ids(tokenizer)
    for end in _turn_ends(labels):
        if ids[end] in stops:
            continue
        if end + 1 < len(ids) and ids[end + 1] in stops:
            labels[end + 1] = ids[end + 1]
        elif end + 1 == len(ids) and tokenizer.eos_token_id is not None and len(ids) < max_length:
            ids, labels = [*ids, tokenizer.eos_token_id], [*labels, tokenizer.eos_token_id]
    return ids, labels


def _turn_ends(labels: list[int]) -> list[int]:
    """Index of the last trained token of each run of trained tokens."""
    return [i for i, label in enumerate(labels)
            if label != IGNORE and (i + 1 == len(labels) or labels[i + 1] == IGNORE)]


_STOPS: dict[tuple, frozenset] = {}


def cached_stop_ids(tokenizer) -> frozenset:
    """`stop_token_ids` once per tokenizer and template (it renders a sample conversation)."""
    from tunelab.data.stops import stop_token_ids

    key = (id(tokenizer), tokenizer.chat_template, len(tokenizer))
    if key not in _STOPS:
        _STOPS[key] = frozenset(stop_token_ids(tokenizer))
    return _STOPS[key]


def _cut(ids: list[int], offsets: list, spans: list[tuple[int, int]], max_length: int):
    """Keep the start; end at the last assistant turn that fits whole, else cut hard at max_length."""
    keep = max_length
    for _, span_end in reversed(spans):
        n_tokens = sum(1 for start, _ in offsets if start < span_end)
        if n_tokens <= max_length:
            keep = n_tokens
            break
    return ids[:keep], offsets[:keep]


def _keep(ids: list[int], labels: list[int], example: dict, stats: TokenizeStats) -> dict | None:
    trained = sum(label != IGNORE for label in labels)
    if trained == 0:
        stats.dropped += 1
        stats.dropped_sources.append(example.get("source", "?"))
        return None
    stats.kept += 1
    stats.tokens += len(ids)
    stats.trained_tokens += trained
    return {"input_ids": ids, "attention_mask": [1] * len(ids), "labels": labels}


def tokenize_text(tokenizer, example: dict, max_length: int, stats: TokenizeStats) -> list[dict]:
    """A document for causal LM on all tokens, ended by EOS and split into max_length blocks."""
    ids = tokenizer(example["text"], add_special_tokens=False)["input_ids"]
    if tokenizer.eos_token_id is not None:
        ids = ids + [tokenizer.eos_token_id]
    if len(ids) > max_length:
        stats.truncated += 1
    blocks = []
    for start in range(0, len(ids), max_length):
        chunk = ids[start : start + max_length]
        if len(chunk) > 1:
            blocks.append(_keep(chunk, list(chunk), example, stats))
    if not blocks:
        stats.dropped += 1
    return blocks

"""Conversations and texts -> token ids and labels.

Labels are built by *position*: the character spans of assistant turns in the rendered text are
mapped to tokens through the tokenizer's offsets. Never by token id — the default model's pad token
is its EOS, and masking by id would stop the model from learning to end its answer.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field

from tunelab.data.templates import render_conversation
from tunelab.errors import TunelabError

IGNORE = -100


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

    def summary(self) -> str:
        skipped = f", {self.empty} skipped with an empty answer" if self.empty else ""
        return (
            f"{self.kept} examples kept ({self.tokens} tokens, {self.trained_tokens} trained), "
            f"{self.truncated} truncated, {self.dropped} dropped with no trained tokens left{skipped}"
        )


def assistant_spans(tokenizer, messages: list[dict], source: str) -> tuple[str, list[tuple[int, int]]]:
    """Render `messages` and return the text plus (start, end) char spans of each assistant turn.

    A turn's span starts after the generation prompt and ends after its end-of-turn token, so the
    EOS/end-of-turn marker is trained. Where the generation prompt writes more than the rendered turn
    (DeepSeek-R1 opens `<think>\n`, and its template drops reasoning from written turns), the text is trained
    with the prompt generation will see, so train and inference agree (see `_prompted`).
    """
    text = render_conversation(tokenizer, messages)
    spans, inserts = [], []
    for index, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        start, insert = _answer_start(tokenizer, messages, index, text)
        upto = render_conversation(tokenizer, messages[: index + 1]).rstrip()
        if start is None or not (text.startswith(upto) and len(upto) > start):
            raise TunelabError(
                f"{source}: the chat template does not render this conversation turn by turn (assistant turn "
                f"{index + 1} is not where the template's rendering of the turns before it ends), so the "
                "assistant turns cannot be located; choose another data.template"
            )
        spans.append((start, len(upto)))
        inserts.append(insert)
    return _prompted(text, spans, inserts)


THINK_OPEN, THINK_CLOSE = "<think>", "</think>"


def _answer_start(tokenizer, messages: list[dict], index: int, text: str) -> tuple[int | None, tuple[str, str]]:
    """Where assistant turn `index` starts in `text` (after the generation prompt), and what the generation prompt
    adds that the written turn lacks: (prompt part, trained part). A prompt that opens a think block the written
    answer never had gets it closed empty by the answer (`\n</think>\n\n`), as these models write it."""
    before = render_conversation(tokenizer, messages[:index], add_generation_prompt=True)
    if text.startswith(before):
        return len(before), ("", "")
    plain = render_conversation(tokenizer, messages[:index]) if index else ""
    shared = len(os.path.commonprefix([before, text]))
    if not (text.startswith(plain) and shared >= len(plain)):
        return None, ("", "")
    extra = before[shared:]
    opened = extra.rfind(THINK_OPEN) > extra.rfind(THINK_CLOSE)
    return shared, (extra, f"\n{THINK_CLOSE}\n\n" if opened else "")


def _prompted(text: str, spans: list[tuple[int, int]], inserts: list[tuple[str, str]]):
    """`text` with each turn's missing prompt part (untrained) and closing part (trained) put in place."""
    pieces, moved, cursor, shift = [], [], 0, 0
    for (start, end), (prompt, closing) in zip(spans, inserts):
        pieces += [text[cursor:start], prompt, closing]
        cursor = start
        moved.append((start + shift + len(prompt), end + shift + len(prompt) + len(closing)))
        shift += len(prompt) + len(closing)
    return "".join([*pieces, text[cursor:]]), moved


def tokenize_conversation(tokenizer, example: dict, max_length: int, stats: TokenizeStats) -> dict | None:
    """Token ids + labels for one conversation, or None when nothing is left to train."""
    text, spans = assistant_spans(tokenizer, example["messages"], example.get("source", "?"))
    encoded = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    ids, offsets = encoded["input_ids"], encoded["offset_mapping"]
    if len(ids) > max_length:
        stats.truncated += 1
        ids, offsets = _cut(ids, offsets, spans, max_length)
    labels = [
        token if any(start < span_end and end > span_start for span_start, span_end in spans) else IGNORE
        for token, (start, end) in zip(ids, offsets)
    ]
    ids, labels = _end_turns(tokenizer, ids, labels, max_length)
    return _keep(ids, labels, example, stats)


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

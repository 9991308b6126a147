"""Conversations and texts -> token ids and labels.

Labels are built by *position*: the character spans of assistant turns in the rendered text are
mapped to tokens through the tokenizer's offsets. Never by token id — the default model's pad token
is its EOS, and masking by id would stop the model from learning to end its answer.
"""
from __future__ import annotations

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
    EOS/end-of-turn marker is trained.
    """
    text = render_conversation(tokenizer, messages)
    spans = []
    for index, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        before = render_conversation(tokenizer, messages[:index], add_generation_prompt=True)
        upto = render_conversation(tokenizer, messages[: index + 1]).rstrip()
        if not (text.startswith(before) and text.startswith(upto) and len(upto) > len(before)):
            raise TunelabError(
                f"{source}: the chat template does not render this conversation turn by turn, so the "
                "assistant turns cannot be located; choose another data.template"
            )
        spans.append((len(before), len(upto)))
    return text, spans


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
    return _keep(ids, labels, example, stats)


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

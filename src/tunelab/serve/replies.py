"""What the OpenAI-compatible API answers: whole replies and streamed chunks for chat and text completions,
with one choice per answer (`n`), tool calls, usage and log-probabilities in OpenAI's shapes."""
from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field

from tunelab.serve.engine import Completion, TokenLogprob
from tunelab.serve.requests import ToolUse
from tunelab.serve.toolcalls import openai_calls


class TokenText:
    """A token id as the text OpenAI reports for it (decoded alone; cached, as the same tokens recur)."""

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer
        self._known: dict[int, str] = {}

    def __call__(self, token_id: int) -> str:
        if token_id not in self._known:
            self._known[token_id] = self.tokenizer.decode([token_id])
        return self._known[token_id]

    def entry(self, token_id: int, logprob: float) -> dict:
        text = self(token_id)
        return {"token": text, "logprob": logprob, "bytes": list(text.encode("utf-8"))}


def chat_logprobs(entries: list[TokenLogprob], text: TokenText) -> dict:
    content = [{**text.entry(e.token_id, e.logprob), "top_logprobs": [text.entry(i, lp) for i, lp in e.top]}
               for e in entries]
    return {"content": content, "refusal": None}


def legacy_logprobs(entries: list[TokenLogprob], text: TokenText, offset: int) -> dict:
    """The text completions API's older shape; `offset`: where the first token's text starts."""
    tokens = [text(e.token_id) for e in entries]
    offsets = []
    for token in tokens:
        offsets.append(offset)
        offset += len(token)
    return {"tokens": tokens, "token_logprobs": [e.logprob for e in entries],
            "top_logprobs": [{text(i): lp for i, lp in e.top} for e in entries], "text_offset": offsets}


@dataclass
class ChatShape:
    """Chat answers: a `message` in full, `delta`s when streamed (the first names the role); with tools, calls
    the model wrote become `tool_calls` (finish_reason "tool_calls")."""
    token_text: TokenText
    tool_use: ToolUse | None = None
    object, chunk_object, id_prefix = "chat.completion", "chat.completion.chunk", "chatcmpl"
    strips_start = True   # templates may leave a space or newline before the answer

    def choice(self, completion: Completion) -> dict:
        parsed = self.tool_use.parse(completion.text) if self.tool_use else None
        logprobs = self.logprobs(completion.logprobs)
        if parsed is None:
            text = (self.tool_use.prefill if self.tool_use else "") + completion.text
            message = {"role": "assistant", "content": text}
            return {"index": completion.index, "message": message, "logprobs": logprobs,
                    "finish_reason": completion.finish_reason}
        content, calls = parsed
        message = {"role": "assistant", "content": content, "tool_calls": openai_calls(calls)}
        return {"index": completion.index, "message": message, "logprobs": logprobs, "finish_reason": "tool_calls"}

    def logprobs(self, entries: list[TokenLogprob] | None, offset: int = 0) -> dict | None:
        return None if entries is None else chat_logprobs(entries, self.token_text)

    def call_deltas(self, index: int, calls: list[dict]) -> dict:
        delta = {"tool_calls": [{"index": number, **call} for number, call in enumerate(openai_calls(calls))]}
        return {"index": index, "delta": delta, "logprobs": None, "finish_reason": None}

    def delta(self, index: int, text: str | None = None, finish: str | None = None, opening: bool = False,
              logprobs: dict | None = None) -> dict:
        delta = {"role": "assistant", "content": ""} if opening else ({} if text is None else {"content": text})
        return {"index": index, "delta": delta, "logprobs": logprobs, "finish_reason": finish}


@dataclass
class TextShape:
    """Plain text completions: the same `text` choice in full and in chunks, no role."""
    token_text: TokenText
    prompt_chars: int = 0   # the legacy logprobs' text_offset counts from the prompt's start
    tool_use = None
    object, chunk_object, id_prefix = "text_completion", "text_completion", "cmpl"
    strips_start = False  # a completion continues the prompt exactly

    def choice(self, completion: Completion) -> dict:
        return {"index": completion.index, "text": completion.text, "logprobs": self.logprobs(completion.logprobs),
                "finish_reason": completion.finish_reason}

    def logprobs(self, entries: list[TokenLogprob] | None, offset: int = 0) -> dict | None:
        return None if entries is None else legacy_logprobs(entries, self.token_text, self.prompt_chars + offset)

    def delta(self, index: int, text: str | None = None, finish: str | None = None, opening: bool = False,
              logprobs: dict | None = None) -> dict | None:
        if opening:
            return None
        return {"index": index, "text": text or "", "logprobs": logprobs, "finish_reason": finish}


@dataclass
class Reply:
    """The envelope every answer and chunk of one request shares (same id, creation time and model)."""
    shape: ChatShape | TextShape
    model: str
    created: int = field(default_factory=lambda: int(time.time()))
    id: str = field(default_factory=lambda: uuid.uuid4().hex)

    def full(self, completions: list[Completion]) -> dict:
        return {**self._head(self.shape.object), "choices": [self.shape.choice(c) for c in completions],
                "usage": usage(completions)}

    def chunk(self, choice: dict | None, completions: list[Completion] | None = None) -> dict:
        extra = {"usage": usage(completions)} if completions else {}
        return {**self._head(self.shape.chunk_object), "choices": [choice] if choice else [], **extra}

    def _head(self, kind: str) -> dict:
        return {"id": f"{self.shape.id_prefix}-{self.id}", "object": kind, "created": self.created,
                "model": self.model}


def usage(completions: list[Completion]) -> dict:
    """One prompt, read once, and every answer's tokens."""
    prompt = completions[0].prompt_tokens
    answers = sum(completion.completion_tokens for completion in completions)
    return {"prompt_tokens": prompt, "completion_tokens": answers, "total_tokens": prompt + answers}

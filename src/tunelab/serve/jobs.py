"""What the batching engine decodes: a request (`Job`: one prompt answered n times, on a `Lane`) and each of its
answers (`Row`: tokens so far, text, stop strings, random generator, grammar, log-probabilities)."""
from __future__ import annotations

import threading
import time
from concurrent.futures import Future
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from typing import Callable, Sequence

import torch

from tunelab.serve.engine import ChatEngine, Completion, GenerationSettings, TextWatcher, TokenLogprob
from tunelab.serve.sampling import adjusts, generator_for, penalize


class RequestTimeout(Exception):
    """The request's deadline passed before its answers were complete."""


@dataclass(frozen=True)
class Lane:
    """Where a request's rows decode: an engine's model with one adapter setting. Equal lanes batch together."""
    engine: ChatEngine
    adapter: str | None = None   # peft adapter to switch on; None: the model as loaded
    base: bool = False           # the model with its adapters switched off

    @property
    def key(self) -> tuple:
        return id(self.engine.model), self.adapter, self.base

    def active(self) -> AbstractContextManager:
        """The context in which this lane's forward passes run."""
        if self.adapter is not None and self.engine.model.active_adapter != self.adapter:
            self.engine.model.set_adapter(self.adapter)
        return self.engine.base_model() if self.base else nullcontext()

    def batchable(self) -> bool:
        """Prompt-learning adapters (prefix, prompt, P-tuning) prepend virtual tokens inside peft's own
        `generate`; they take the plain path, one request at a time."""
        configs = getattr(self.engine.model, "peft_config", None)
        if not configs:
            return True
        name = self.adapter or getattr(self.engine.model, "active_adapter", None)
        config = configs.get(name) if isinstance(name, str) else None
        return not getattr(config, "is_prompt_learning", False)


@dataclass
class Job:
    """One request: a prompt answered `n` times."""
    lane: Lane
    prompt: list[int]
    settings: GenerationSettings
    n: int = 1
    stops: Sequence[str] = ()
    strip_start: bool = False
    # (answer index, text piece, log-probabilities of the tokens it completes), called on the decoding thread
    on_text: Callable[[int, str, list[TokenLogprob]], None] | None = None
    cancelled: threading.Event = field(default_factory=threading.Event)
    deadline: float | None = None           # time.monotonic() after which it is abandoned
    result: Future = field(default_factory=Future)   # -> list[Completion] by index; None if cancelled
    answers: dict[int, Completion] = field(default_factory=dict)

    def expired(self) -> bool:
        return self.deadline is not None and time.monotonic() > self.deadline

    def finish(self, completion: Completion) -> None:
        self.answers[completion.index] = completion
        if len(self.answers) == self.n and not self.result.done():
            self.result.set_result([self.answers[index] for index in range(self.n)])

    def abandon(self) -> None:
        if self.result.done():
            return
        if self.cancelled.is_set():
            self.result.set_result(None)
        else:
            self.result.set_exception(RequestTimeout("the request timed out"))


class Row:
    """One answer being decoded: its tokens so far, its text watcher and random generator."""

    def __init__(self, job: Job, index: int):
        self.job, self.index = job, index
        self.generator = generator_for(job.settings, index)
        self.tokens: list[int] = []
        self.logprobs: list[TokenLogprob] = []
        self.unsent: list[TokenLogprob] = []
        on_text = None if job.on_text is None else self._send
        self.watcher = TextWatcher(job.lane.engine.tokenizer, 0, job.stops, on_text, None, job.strip_start)
        self.length = len(job.prompt)   # tokens of this row in the cache
        self.finish_reason: str | None = None
        self.text = ""                  # the answer's text, decoded incrementally (see `_decode`)
        self.constraint = None
        if job.settings.grammar is not None:
            from tunelab.serve.constrained import Constraint, guidance_tokenizer

            self.constraint = Constraint(guidance_tokenizer(job.lane.engine), job.settings.grammar)
        self._prefix, self._read = 0, 0

    def _decode(self, final: bool = False) -> str:
        """The answer's text so far, decoding only its last tokens each step (a whole long answer each step costs
        ~0.4 ms per 2,000 tokens per row). The newest tokens are decoded together with the few before them and only
        the difference is kept, so a character spanning tokens, or a tokenizer that drops a window's leading
        space, reads as in one decode of the whole answer (vLLM's prefix/read offsets)."""
        decode = self.job.lane.engine.tokenizer.decode
        before = decode(self.tokens[self._prefix:self._read], skip_special_tokens=True)
        now = decode(self.tokens[self._prefix:], skip_special_tokens=True)
        if len(now) > len(before) and (final or not now.endswith("\ufffd")):  # at the end, bytes that never
            # completed a character stay as U+FFFD, as in one decode of the whole answer
            self.text += now[len(before):]
            self._prefix, self._read = self._read, len(self.tokens)
        return self.text

    def shape_logits(self, logits: torch.Tensor) -> None:
        """Biases and penalties, then the grammar's mask, on this row's [1, vocab] logits."""
        penalize(logits, self.job.settings, self.tokens)
        if self.constraint is not None:
            self.constraint.mask(logits)

    def accept(self, token: int, logprob: TokenLogprob | None) -> bool:
        """Takes the next token; True when the answer is complete."""
        self.tokens.append(token)
        engine = self.job.lane.engine
        if logprob is not None and token not in engine.special_ids:  # as the text, which drops them
            self.logprobs.append(logprob)
            self.unsent.append(logprob)
        stopped_by_text = self.watcher.see_text(self._decode())  # a stop id that is no special token is text
        complete = self.constraint is not None and self.constraint.advance(token)   # the JSON is whole
        if token in engine.stop_ids or stopped_by_text or complete:
            self.finish_reason = "stop"
        elif len(self.tokens) >= self.job.settings.max_new_tokens:
            self.finish_reason = "length"
        return self.finish_reason is not None

    def gone(self) -> bool:
        return self.job.cancelled.is_set() or self.job.expired()

    def complete(self) -> None:
        self.watcher.see_text(self._decode(final=True))
        self.watcher.flush()
        if self.unsent and self.job.on_text is not None:  # tokens whose text was empty: their log-probabilities
            self._send("")
        logprobs = self.logprobs if self.job.settings.top_logprobs is not None else None
        if logprobs is not None and self.watcher.stopped:
            logprobs = self._within_text(logprobs)
        self.job.finish(Completion(self.watcher.text, len(self.job.prompt), len(self.tokens), self.finish_reason,
                                   logprobs, self.index, list(self.tokens)))

    def _within_text(self, logprobs: list[TokenLogprob]) -> list[TokenLogprob]:
        """Drops the tokens a stop string cut off."""
        tokenizer, kept = self.job.lane.engine.tokenizer, []
        for count, logprob in enumerate(logprobs):
            if len(tokenizer.decode([lp.token_id for lp in logprobs[:count]], skip_special_tokens=True)) >= \
                    len(self.watcher.text):
                break
            kept.append(logprob)
        return kept

    def _send(self, text: str) -> None:
        sent, self.unsent = self.unsent, []
        self.job.on_text(self.index, text, sent)


def masks(rows: list[Row]) -> list | None:
    """Per row, what changes its logits before the choice (None where nothing does); None when no row has any."""
    found = [row.shape_logits if row.constraint is not None or adjusts(row.job.settings) else None for row in rows]
    return found if any(found) else None

"""Batched and streaming generation over any loaded model, rendered with the run's own template."""
from __future__ import annotations

import threading
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Callable, Sequence

import torch

from tunelab.data.stops import stop_token_ids
from tunelab.data.templates import render_conversation
from tunelab.runs.loading import LoadedModel
from tunelab.serve.toolcalls import ToolFormat, held_back, model_tool_format


@dataclass
class GenerationSettings:
    max_new_tokens: int = 256
    temperature: float = 0.0     # 0 means greedy
    top_p: float = 1.0
    seed: int | None = None              # sampling: the same seed gives the same answer (batched engine)
    top_logprobs: int | None = None      # report each token's log-probability and this many alternatives
    grammar: str | None = None           # llguidance grammar the answer must follow (JSON answers; batched engine)
    # OpenAI's penalties on tokens the answer already has, and biases by token id (batched engine)
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    logit_bias: dict[int, float] | None = None

    def kwargs(self) -> dict:
        if self.temperature <= 0:
            return {"do_sample": False, "max_new_tokens": self.max_new_tokens}
        return {"do_sample": True, "temperature": self.temperature, "top_p": self.top_p,
                "max_new_tokens": self.max_new_tokens}


@dataclass
class Completion:
    """One answer and what an OpenAI-style API reports about it."""
    text: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str   # "stop": an end token or a stop string; "length": max_new_tokens reached
    logprobs: list[TokenLogprob] | None = None   # per answer token, when the settings asked for them
    index: int = 0       # which of a request's n answers
    token_ids: list[int] | None = None   # the answer's tokens (batched engine)


@dataclass
class TokenLogprob:
    """One generated token with its log-probability under the model (before temperature and top-p) and the
    most likely alternatives at that step."""
    token_id: int
    logprob: float
    top: list[tuple[int, float]]


class ChatEngine:
    def __init__(self, loaded: LoadedModel, device: str = "cpu"):
        self.loaded = loaded
        self.tokenizer = loaded.tokenizer
        self.model = loaded.model.to(device).eval()
        self.device = device
        self.stop_ids = stop_token_ids(self.tokenizer, getattr(self.model, "generation_config", None))
        self.special_ids = frozenset(self.tokenizer.all_special_ids)   # their text is dropped from answers
        output = self.model.get_output_embeddings() if hasattr(self.model, "get_output_embeddings") else None
        self.vocabulary = output.weight.shape[0] if output is not None else len(self.tokenizer)  # logits' width

    def base_model(self):
        """A context in which answers come from the base model (adapters disabled, no second copy)."""
        method = self.loaded.method
        return method.disable(self.model) if method else nullcontext()

    def _encode(self, conversations: list[list[dict]]) -> dict:
        texts = [render_conversation(self.tokenizer, m, add_generation_prompt=True) for m in conversations]
        self.tokenizer.padding_side = "left"  # decoder-only batches must end where generation starts
        batch = self.tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False)
        return {k: v.to(self.device) for k, v in batch.items()}

    @torch.inference_mode()
    def generate(self, conversations: list[list[dict]], settings: GenerationSettings) -> list[str]:
        batch = self._encode(conversations)
        out = self.model.generate(**batch, **settings.kwargs(), eos_token_id=self.stop_ids,
                                  pad_token_id=self.tokenizer.pad_token_id)
        new = out[:, batch["input_ids"].shape[1]:]
        return [text.strip() for text in self.tokenizer.batch_decode(new, skip_special_tokens=True)]

    @torch.inference_mode()
    def generate_ids(self, prompts: list[list[int]], settings: GenerationSettings) -> list[str]:
        """Answers to already tokenized prompts (e.g. training rows cut before their answer)."""
        batch = self.tokenizer.pad({"input_ids": prompts}, padding_side="left", return_tensors="pt").to(self.device)
        out = self.model.generate(**batch, **settings.kwargs(), eos_token_id=self.stop_ids,
                                  pad_token_id=self.tokenizer.pad_token_id)
        new = out[:, batch["input_ids"].shape[1]:]
        return [text.strip() for text in self.tokenizer.batch_decode(new, skip_special_tokens=True)]

    def chat_prompt(self, messages: list[dict], tools: list[dict] | None = None, prefill: str = "") -> list[int]:
        """Token ids of a conversation rendered for the assistant's next turn (the template adds any BOS), with the
        tools the template renders and `prefill` already written as the start of the answer."""
        text = render_conversation(self.tokenizer, messages, add_generation_prompt=True, tools=tools)
        return self.tokenizer(text + prefill, add_special_tokens=False)["input_ids"]

    def tool_format(self) -> ToolFormat:
        """How this model writes tool calls (tunelab.serve.toolcalls.model_tool_format)."""
        from tunelab.data.families import model_family
        from tunelab.data.templates import template_support

        return model_tool_format(model_family(self.model, self.tokenizer), template_support(self.tokenizer).tools)

    def text_prompt(self, text: str) -> list[int]:
        """Token ids of plain text, with the special tokens the tokenizer adds to raw text (e.g. BOS)."""
        return self.tokenizer(text)["input_ids"]

    @torch.inference_mode()
    def complete(self, prompt: list[int], settings: GenerationSettings, stops: Sequence[str] = (),
                 on_text: Callable[[str], None] | None = None, cancelled: threading.Event | None = None,
                 strip_start: bool = False) -> Completion:
        """One answer to one tokenized prompt, cut before the first stop string. `on_text` receives the text
        piece by piece as it is generated; setting `cancelled` stops generation at the next token."""
        from transformers import StoppingCriteriaList

        watcher = TextWatcher(self.tokenizer, len(prompt), stops, on_text, cancelled, strip_start)
        ids = torch.tensor([prompt], device=self.device)
        out = self.model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), **settings.kwargs(),
                                  eos_token_id=self.stop_ids, pad_token_id=self.tokenizer.pad_token_id,
                                  stopping_criteria=StoppingCriteriaList([watcher]))
        new = out[0, len(prompt):].tolist()
        watcher.flush()
        ended = watcher.stopped or len(new) < settings.max_new_tokens or new[-1] in self.stop_ids
        return Completion(watcher.text, len(prompt), len(new), "stop" if ended else "length")


class TextWatcher:
    """A stopping criterion for `generate`, called after every token: it decodes the answer, hands on the
    text that can no longer become part of a stop string, and ends generation at a stop string or on
    cancellation.

    It decodes the whole answer each step (not token by token) because a character may span tokens."""

    def __init__(self, tokenizer, prompt_length: int, stops: Sequence[str], on_text: Callable[[str], None] | None,
                 cancelled: threading.Event | None, strip_start: bool):
        self.tokenizer, self.prompt_length = tokenizer, prompt_length
        self.stops = [stop for stop in stops if stop]
        self.on_text, self.cancelled, self.strip_start = on_text, cancelled, strip_start
        self.text = ""         # the answer so far, cut before a stop string once one appeared
        self.sent = 0          # characters of `text` already handed to on_text
        self.stopped = False   # a stop string appeared

    def __call__(self, input_ids: torch.LongTensor, scores, **kwargs) -> torch.BoolTensor:
        self.see(input_ids[0, self.prompt_length:])
        done = self.stopped or (self.cancelled is not None and self.cancelled.is_set())
        return torch.full((input_ids.shape[0],), done, dtype=torch.bool, device=input_ids.device)

    def see(self, answer_ids) -> bool:
        """Takes the answer's token ids so far; True once a stop string has appeared."""
        if not self.stopped:
            self._update(self.tokenizer.decode(answer_ids, skip_special_tokens=True))
        return self.stopped

    def see_text(self, text: str) -> bool:
        """Takes the answer's text so far (decoded by the caller); True once a stop string has appeared."""
        if not self.stopped:
            self._update(text)
        return self.stopped

    def _update(self, text: str) -> None:
        text = text.lstrip() if self.strip_start else text
        cuts = [index for index in (text.find(stop) for stop in self.stops) if index >= 0]
        if cuts:
            self.text, self.stopped = text[:min(cuts)], True
            self._send(len(self.text))
            return
        self.text = text
        # U+FFFD: the last token ended inside a multi-byte character; the next one completes it.
        held = 1 if text.endswith("\ufffd") else held_back(text, self.stops)
        self._send(len(text) - held)

    def flush(self) -> None:
        """Hand on what was held back: generation is over, so nothing can complete a stop string any more."""
        self._send(len(self.text))

    def _send(self, end: int) -> None:
        if end > self.sent and self.on_text is not None:
            self.on_text(self.text[self.sent:end])
        self.sent = max(self.sent, end)

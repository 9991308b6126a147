"""Batched and streaming generation over any loaded model, rendered with the run's own template."""
from __future__ import annotations

import threading
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Iterator

import torch

from tunelab.data.templates import render_conversation, stop_token_ids
from tunelab.runs.loading import LoadedModel


@dataclass
class GenerationSettings:
    max_new_tokens: int = 256
    temperature: float = 0.0     # 0 means greedy
    top_p: float = 1.0

    def kwargs(self) -> dict:
        if self.temperature <= 0:
            return {"do_sample": False, "max_new_tokens": self.max_new_tokens}
        return {"do_sample": True, "temperature": self.temperature, "top_p": self.top_p,
                "max_new_tokens": self.max_new_tokens}


class ChatEngine:
    def __init__(self, loaded: LoadedModel, device: str = "cpu"):
        self.loaded = loaded
        self.tokenizer = loaded.tokenizer
        self.model = loaded.model.to(device).eval()
        self.device = device
        self.stop_ids = stop_token_ids(self.tokenizer)

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

    def stream(self, messages: list[dict], settings: GenerationSettings) -> Iterator[str]:
        from transformers import TextIteratorStreamer

        batch = self._encode([messages])
        streamer = TextIteratorStreamer(self.tokenizer, skip_prompt=True, skip_special_tokens=True)
        kwargs = dict(**batch, **settings.kwargs(), eos_token_id=self.stop_ids,
                      pad_token_id=self.tokenizer.pad_token_id, streamer=streamer)
        worker = threading.Thread(target=self._generate_quietly, kwargs=kwargs, daemon=True)
        worker.start()
        yield from streamer
        worker.join()

    @torch.inference_mode()
    def _generate_quietly(self, **kwargs) -> None:
        self.model.generate(**kwargs)

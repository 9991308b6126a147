"""The Chat tab's model: the serving engine of `tunelab chat` and `tunelab serve` (ChatEngine), loaded in the
UI process so answers stream token by token. One model is kept loaded at a time; its base is the same model
with the adapter switched off (a full fine-tune loads its starting model beside it), as in `tunelab eval`.

A lock makes one answer at a time: switching the adapter off for the base answer must not happen while
another answer is being generated with it on.
"""
from __future__ import annotations

import threading
from typing import Iterator

from tunelab.serve import GenerationSettings


class ChatModels:
    def __init__(self):
        self._lock = threading.Lock()
        self._name: str | None = None
        self._subject = None

    def _load(self, name: str):
        if self._name != name:
            from tunelab.eval.subject import Subject
            from tunelab.models import detect_device, inference_dtype
            from tunelab.runs import load_any

            device = detect_device()
            self._subject, self._name = None, None  # the old model is freed before the new one loads
            self._subject = Subject(load_any(name, inference_dtype("auto", device)), device)
            self._name = name
        return self._subject

    def stream(self, name: str, messages: list[dict], settings: GenerationSettings, base: bool = False) -> Iterator[str]:
        """The answer so far, growing piece by piece, from the tuned model or (base=True) its base."""
        with self._lock:
            subject = self._load(name)
            if not base:
                yield from _grow(subject.engine.stream(messages, settings))
                return
            with subject.as_base() as as_base:
                yield from _grow(as_base.engine.stream(messages, settings))


def _grow(pieces: Iterator[str]) -> Iterator[str]:
    text = ""
    for piece in pieces:
        text += piece
        yield text.strip()

"""The Chat tab's model: the serving engine of `tunelab chat` and `tunelab serve` (ChatEngine), loaded in the
UI process so answers stream token by token. One model is kept loaded at a time; its base is the same model
with the adapter switched off (a full fine-tune loads its starting model beside it), as in `tunelab eval`.

A lock makes one answer at a time: switching the adapter off for the base answer must not happen while
another answer is being generated with it on.
"""
from __future__ import annotations

import queue
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
                yield from _answer(subject.engine, messages, settings)
                return
            with subject.as_base() as as_base:
                yield from _answer(as_base.engine, messages, settings)


def _answer(engine, messages: list[dict], settings: GenerationSettings) -> Iterator[str]:
    """Generation in a worker thread, its text handed over as it comes (the engine's `complete`, as `tunelab
    serve` streams). A page that goes away closes this generator: generation stops at the next token, and the
    worker has ended before the lock (and the adapter switch) is released."""
    pieces: queue.Queue = queue.Queue()
    cancelled, failure = threading.Event(), []

    def work() -> None:
        try:
            engine.complete(engine.chat_prompt(messages), settings, on_text=pieces.put, cancelled=cancelled,
                            strip_start=True)
        except BaseException as exc:  # handed to the page's thread, which raises it
            failure.append(exc)
        finally:
            pieces.put(None)

    worker = threading.Thread(target=work, daemon=True)
    worker.start()
    text = ""
    try:
        while (piece := pieces.get()) is not None:
            text += piece
            yield text.strip()
    finally:
        cancelled.set()
        worker.join()
    if failure:
        raise failure[0]

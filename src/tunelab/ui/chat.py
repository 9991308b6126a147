"""The Chat tab's model: answered by the batching engine of `tunelab serve` (tunelab.serve.batching), so answers
for several open pages decode together and stream token by token. One model is kept loaded at a time; its base
is the same model with the adapter switched off (a full fine-tune loads its starting model beside it), as in
`tunelab eval`. The tuned and the base answers are separate lanes: the adapter is switched per decoding step.

Models load on the decoding thread, where they run.
"""
from __future__ import annotations

import queue
import threading
from typing import Iterator

from tunelab.serve import GenerationSettings
from tunelab.serve.batching import Batcher
from tunelab.serve.jobs import Job, Lane


class ChatModels:
    def __init__(self, max_batch: int = 8):
        self._lock = threading.Lock()    # one model switch at a time
        self._name: str | None = None
        self._subject = None
        self.batcher = Batcher(max_batch)

    def _load(self, name: str):
        if self._name != name:
            from tunelab.eval.subject import Subject
            from tunelab.models import detect_device, inference_dtype
            from tunelab.runs import load_any

            device = detect_device()
            self._subject, self._name = None, None  # the old model is freed (once its answers end) before the new one
            self._subject = self.batcher.call(lambda: Subject(load_any(name, inference_dtype("auto", device)),
                                                              device))
            self._name = name
        return self._subject

    def _lane(self, name: str, base: bool) -> Lane:
        with self._lock:
            subject = self._load(name)
            if not base:
                return Lane(subject.engine)
            if subject.loaded.method is not None:
                return Lane(subject.engine, base=True)
            return Lane(self.batcher.call(subject.separate_base).engine)

    def stream(self, name: str, messages: list[dict], settings: GenerationSettings, base: bool = False) -> Iterator[str]:
        """The answer so far, growing piece by piece, from the tuned model or (base=True) its base. A page that goes
        away closes this generator: its answer leaves the batch at the next token."""
        lane = self._lane(name, base)
        pieces: queue.Queue = queue.Queue()
        job = Job(lane, lane.engine.chat_prompt(messages), settings, strip_start=True,
                  on_text=lambda index, text, logprobs: pieces.put(text))
        job.result.add_done_callback(lambda _: pieces.put(None))
        self.batcher.submit(job)
        text = ""
        try:
            while (piece := pieces.get()) is not None:
                text += piece
                yield text.strip()
        finally:
            job.cancelled.set()
        if job.result.exception() is not None:
            raise job.result.exception()

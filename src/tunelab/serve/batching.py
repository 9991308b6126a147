"""Continuous batching: requests that arrive while others decode join the running batch between two decoding
steps, and leave it as soon as they finish, each with its own sampling settings, stop strings and length.

Decoding one sequence at a time reads every weight once per token; a batch of 8 reads them once for 8 tokens.
transformers 5.23 ships a continuous batching manager (`generate_batch`, `init_continuous_batching`); measured
on a 2-core CPU with the default model it decoded 8 prompts at 15 tokens/s against 26 for one-at-a-time
`generate` (it is built around paged attention and CUDA graphs), takes one `do_sample` for the whole batch (no
greedy request beside a sampled one), has no per-request seed or top log-probabilities, and knows nothing of
adapters. So this scheduler works over the model's own KV cache (`DynamicCache`) instead:

- a *lane* is one model with one adapter setting; its rows decode together, one token per row per step, their
  caches left-padded to one length and masked (the attention mask), each row with its own position ids;
- a new request is prefilled alone (no padding inside a prompt), its cache copied n times for `n` answers, and
  left-padded into the lane's cache; finished, cancelled or timed-out rows are dropped from the cache, and
  columns that only padding still uses are cut off;
- lanes take turns a step at a time, so adapter runs of one base are batched per adapter.

The cache is built without the model's config, so every layer keeps its whole history; sliding-window layers
still see only their window, through the attention mask transformers derives from the config.

One thread runs every model (an adapter switch changes a shared model), started on first use.
"""
from __future__ import annotations

import logging
import threading
from collections import deque
from concurrent.futures import Future
from typing import Callable

import torch

from tunelab.serve.jobs import Job, Lane, Row, masks
from tunelab.serve.sampling import next_tokens

log = logging.getLogger("tunelab")


class LaneBatch:
    """The rows of one lane decoding together and their shared, left-padded cache."""

    def __init__(self, lane: Lane):
        self.lane = lane
        self.rows: list[Row] = []
        self.cache = None                    # DynamicCache: [rows, heads, length, head_dim] per layer
        self.mask: torch.Tensor | None = None   # [rows, length]: 1 for a real token, 0 for left padding

    def join(self, rows: list[Row], cache, length: int) -> None:
        device = self.lane.engine.device
        mask = torch.ones(len(rows), length, dtype=torch.long, device=device)
        if not self.rows:
            self.rows, self.cache, self.mask = rows, cache, mask
            return
        from transformers import DynamicCache

        width = max(length, self.mask.shape[1])
        layers = [(torch.cat([_pad_left(old.keys, width), _pad_left(new.keys, width)]),
                   torch.cat([_pad_left(old.values, width), _pad_left(new.values, width)]))
                  for old, new in zip(self.cache.layers, cache.layers)]
        self.cache = DynamicCache(ddp_cache_data=layers)
        self.mask = torch.cat([_pad_left(self.mask, width), _pad_left(mask, width)])
        self.rows = self.rows + rows

    def keep(self, keep: list[int]) -> None:
        """Keeps only these rows, then cuts the cache columns that are padding in every remaining row."""
        if len(keep) == len(self.rows):
            return
        self.rows = [self.rows[index] for index in keep]
        if not self.rows:
            self.cache = self.mask = None
            return
        index = torch.tensor(keep, device=self.mask.device)
        self.mask = self.mask[index]
        start = int((self.mask.sum(0) > 0).int().argmax())   # the first column some row uses
        self.mask = self.mask[:, start:]
        for layer in self.cache.layers:
            layer.keys = layer.keys[index, :, start:]
            layer.values = layer.values[index, :, start:]

    def step(self) -> list[Row]:
        """One token for every row; returns the rows that finished."""
        engine, rows = self.lane.engine, self.rows
        device = engine.device
        ids = torch.tensor([[row.tokens[-1]] for row in rows], device=device)
        positions = torch.tensor([[row.length] for row in rows], device=device)
        mask = torch.cat([self.mask, torch.ones(len(rows), 1, dtype=torch.long, device=device)], dim=1)
        with self.lane.active():
            out = engine.model(input_ids=ids, position_ids=positions, attention_mask=mask,
                               past_key_values=self.cache, use_cache=True, logits_to_keep=1)
        self.mask = mask
        for row in rows:
            row.length += 1
        tokens, logprobs = next_tokens(out.logits[:, -1], [row.job.settings for row in rows],
                                       [row.generator for row in rows], masks(rows))
        return [row for row, token, logprob in zip(rows, tokens, logprobs) if row.accept(token, logprob)]


def _pad_left(tensor: torch.Tensor, width: int) -> torch.Tensor:
    """Zeros before the sequence dimension's start (dim 2 of a cache tensor, dim 1 of a mask)."""
    dim = 2 if tensor.dim() == 4 else 1
    missing = width - tensor.shape[dim]
    if missing == 0:
        return tensor
    shape = list(tensor.shape)
    shape[dim] = missing
    return torch.cat([tensor.new_zeros(shape), tensor], dim=dim)


class Batcher:
    """The decoding thread: admits waiting jobs while the batch has room, then steps the lanes in turn."""

    def __init__(self, max_batch: int = 32, on_step: Callable[[int], None] | None = None, own_thread: bool = True):
        self.max_batch = max_batch
        self.on_step = on_step      # called with the batch size of each step (metrics)
        self._own_thread = own_thread   # False: the caller decodes, with `run` (or `step_once`, in tests)
        self._waiting: deque[Job] = deque()
        self._calls: deque[tuple[Callable[[], object], Future]] = deque()
        self._lanes: dict[tuple, LaneBatch] = {}
        self._turn = 0
        self._wake = threading.Condition()
        self._thread: threading.Thread | None = None    # our own decoding thread, once started
        self._decoder: threading.Thread | None = None   # the caller's thread that `run` decodes on
        self._closed = False

    # --- the callers' side ---------------------------------------------------------------------------
    def submit(self, job: Job) -> Future:
        self._enqueue(self._waiting, job)
        return job.result

    def call(self, work: Callable[[], object]):
        """Runs `work` on the decoding thread between two steps and returns its result (e.g. loading a model
        there, where it will run: see `run` on OpenMP's per-thread pools)."""
        if threading.current_thread() in (self._thread, self._decoder):
            return work()
        done: Future = Future()
        self._enqueue(self._calls, (work, done))
        return done.result()

    def _enqueue(self, queue: deque, item) -> None:
        with self._wake:
            if self._closed:
                raise RuntimeError("the batcher is closed")
            queue.append(item)
            if self._own_thread and self._thread is None:
                self._thread = threading.Thread(target=self._run, name="tunelab-decode", daemon=True)
                self._thread.start()
            self._wake.notify()

    @property
    def waiting(self) -> int:
        return len(self._waiting)

    @property
    def decoding(self) -> int:
        return sum(len(batch.rows) for batch in list(self._lanes.values()))

    def close(self) -> None:
        """Stops decoding; what is waiting or decoding is abandoned (its results say cancelled)."""
        with self._wake:
            self._closed = True
            self._wake.notify()
            thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=30)

    def run(self) -> None:
        """Decodes on the calling thread until `close`. `tunelab serve` decodes on its main thread, where the
        models were loaded: torch's OpenMP keeps one pool of worker threads per calling thread, and on a small CPU
        a second pool makes GNU OpenMP throttle its spin-waiting (more threads than cores), which measured 35 ->
        56 ms per decoding step on 2 cores."""
        with self._wake:
            if self._thread is not None:
                raise RuntimeError("the batcher already decodes on its own thread")
            self._own_thread, self._decoder = False, threading.current_thread()
        self._run()

    # --- the decoding thread -------------------------------------------------------------------------
    def _run(self) -> None:
        try:
            while True:
                with self._wake:
                    while not self._closed and not self._waiting and not self._calls and not self.decoding:
                        self._wake.wait()
                    if self._closed:
                        return
                self.step_once()
        finally:
            self._abandon_all()

    def step_once(self) -> None:
        """Admits what fits, then one decoding step of the next lane (the loop's body; tests drive it by hand to
        make requests arrive at chosen steps)."""
        self._run_calls()
        self._admit()
        batch = self._next_batch()
        if batch is not None:
            self._step(batch)

    def _run_calls(self) -> None:
        while self._calls:
            with self._wake:
                work, done = self._calls.popleft()
            try:
                done.set_result(work())
            except BaseException as exc:  # handed to the caller, who raises it
                done.set_exception(exc)

    def _abandon_all(self) -> None:
        with self._wake:
            self._closed = True
            jobs = [*self._waiting, *(row.job for batch in self._lanes.values() for row in batch.rows)]
            self._waiting.clear()
            calls, self._calls = list(self._calls), deque()
        for _, done in calls:
            done.set_exception(RuntimeError("the batcher is closed"))
        self._lanes.clear()
        for job in jobs:
            job.cancelled.set()
            job.abandon()

    def _admit(self) -> None:
        with self._wake:  # requests whose client left, or whose time ran out, while they waited
            gone = [job for job in self._waiting if job.cancelled.is_set() or job.expired()]
            for job in gone:
                self._waiting.remove(job)
        for job in gone:
            job.abandon()
        while True:
            with self._wake:
                if not self._waiting:
                    return
                job = self._waiting[0]
                busy = self.decoding
                if busy and busy + job.n > self.max_batch:
                    return
                self._waiting.popleft()
            try:
                self._start(job)
            except Exception as exc:  # the job fails, the thread and the other jobs live on
                log.exception("generation failed")
                job.result.set_exception(exc)

    @torch.inference_mode()
    def _start(self, job: Job) -> None:
        if not job.lane.batchable():
            self._plain(job)
            return
        from transformers import DynamicCache

        engine = job.lane.engine
        cache = DynamicCache()
        with job.lane.active():
            out = engine.model(input_ids=torch.tensor([job.prompt], device=engine.device), past_key_values=cache,
                               use_cache=True, logits_to_keep=1)
        rows = [Row(job, index) for index in range(job.n)]
        logits = out.logits[:, -1].expand(job.n, -1)
        tokens, logprobs = next_tokens(logits, [job.settings] * job.n, [row.generator for row in rows], masks(rows))
        going = [index for index, row in enumerate(rows) if not row.accept(tokens[index], logprobs[index])]
        for index, row in enumerate(rows):
            if index not in going:
                row.complete()
        if not going:
            return
        if len(going) > 1:  # one prompt, read once: its cache copied for each answer still going
            cache.batch_select_indices(torch.zeros(len(going), dtype=torch.long, device=engine.device))
        batch = self._lanes.setdefault(job.lane.key, LaneBatch(job.lane))
        batch.join([rows[index] for index in going], cache, len(job.prompt))

    def _plain(self, job: Job) -> None:
        """A request the batch cannot take, answered alone with transformers' generate (logged)."""
        log.info("a prompt-learning adapter: answering one request at a time")
        engine = job.lane.engine
        for index in range(job.n):
            on_text = None if job.on_text is None else (lambda text, index=index: job.on_text(index, text, []))
            with job.lane.active():
                answer = engine.complete(job.prompt, job.settings, stops=job.stops, on_text=on_text,
                                         cancelled=job.cancelled, strip_start=job.strip_start)
            answer.index = index
            job.finish(answer)

    def _next_batch(self) -> LaneBatch | None:
        batches = [batch for batch in self._lanes.values() if batch.rows]
        if not batches:
            return None
        self._turn = (self._turn + 1) % len(batches)
        return batches[self._turn]

    @torch.inference_mode()
    def _step(self, batch: LaneBatch) -> None:
        for row in batch.rows:
            if row.gone():
                row.job.abandon()
        batch.keep([index for index, row in enumerate(batch.rows) if not row.gone()])
        if not batch.rows:
            return
        if self.on_step is not None:
            self.on_step(len(batch.rows))
        try:
            finished = batch.step()
        except Exception as exc:
            log.exception("generation failed")
            for row in batch.rows:
                if not row.job.result.done():
                    row.job.result.set_exception(exc)
            batch.keep([])
            return
        for row in finished:
            row.complete()
        done = {id(row) for row in finished}
        batch.keep([index for index, row in enumerate(batch.rows) if id(row) not in done])

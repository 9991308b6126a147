"""`tunelab plan`: before a long run, what it will cost — parameters, memory, tokens, time.

Everything is taken from the real pipeline (the same `prepare` as `train`): the data is tokenized and
packed as training would, and a short warm-up of real training steps measures both the speed and
the activation memory saved per token. Nothing is written outside a temporary directory.
"""
from __future__ import annotations

import contextlib
import itertools
import math
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from transformers import TrainerCallback

from tunelab.config import RunConfig
from tunelab.data.packing import piece_tokens
from tunelab.methods import count_parameters
from tunelab.models import detect_device
from tunelab.training import memory
from tunelab.training.loss import CHUNK
from tunelab.training.pieces import auto_tokens

WARMUP_STEPS = 3
STREAM_SAMPLE = 2048   # examples read from the start of a stream to size its steps


@dataclass
class Plan:
    total_params: int
    trainable_params: int
    examples: int
    tokens_per_epoch: int
    steps_per_epoch: int
    total_steps: int
    packing: bool
    peak_step_tokens: int
    peak_forward_tokens: int
    weights_bytes: int
    gradients_bytes: int
    optimizer_bytes: int
    activation_bytes_per_token: float
    activations_bytes: int
    loss_bytes: int
    runtime_bytes: int
    other_bytes: int
    estimated_peak_bytes: int
    available_bytes: int | None
    warmup_tokens_per_s: float
    epoch_seconds: float
    total_seconds: float

    @property
    def fits(self) -> bool:
        return self.available_bytes is None or self.estimated_peak_bytes <= self.available_bytes

    def to_dict(self) -> dict:
        return {**asdict(self), "fits": self.fits}


class _StepTimer(TrainerCallback):
    def __init__(self):
        self.marks: list[tuple[float, int]] = []

    def on_step_end(self, args, state, control, **kwargs):
        self.marks.append((time.perf_counter(), state.num_input_tokens_seen))

    def tokens_per_s(self) -> float:
        """Rate over the steps after the first (the first pays one-off costs)."""
        if len(self.marks) < 2:
            return 0.0
        (t0, n0), (t1, n1) = self.marks[0], self.marks[-1]
        return (n1 - n0) / (t1 - t0) if t1 > t0 else 0.0


def _warmup_config(config: RunConfig, steps: int) -> RunConfig:
    train = config.train.model_copy(update={
        "max_steps": steps, "report_to": "none", "eval_steps": 0, "early_stopping_patience": 0, "save_steps": 0,
    })
    return config.model_copy(update={"train": train})


def plan(config: RunConfig, warmup_steps: int = WARMUP_STEPS) -> Plan:
    from tunelab.train import prepare  # train imports the whole stack; plan is imported by the CLI

    device = detect_device()
    runtime = memory.process_rss() if device == "cpu" else 0
    with tempfile.TemporaryDirectory(prefix="tunelab-plan-") as tmp:
        timer = _StepTimer()
        prepared = prepare(_warmup_config(config, warmup_steps), Path(tmp), [timer])
        trainer, model = prepared.trainer, prepared.model
        rows = trainer.train_dataset
        # The Trainer prints its logs on stdout; plan's stdout is the estimate alone (--json pipes).
        with memory.ActivationMeter(model) as meter, contextlib.redirect_stdout(sys.stderr):
            trainer.train()
    measured = memory.peak_memory(device)
    return _estimate(config, model, rows, prepared.packing, meter, timer, runtime, measured, device)


def _estimate(config, model, rows, packing, meter, timer, runtime, measured, device) -> Plan:
    train = config.train
    trainable, total = count_parameters(model)
    if config.data.streaming:  # a stream is sized by max_steps; its lengths are sampled from the start
        rows = itertools.islice(rows, STREAM_SAMPLE)
    lengths = sorted((len(row["input_ids"]) for row in rows), reverse=True)
    examples_per_step = train.batch_size * train.grad_accum
    steps_per_epoch = max(1, math.ceil(len(lengths) / examples_per_step))
    total_steps = train.max_steps or math.ceil(steps_per_epoch * train.epochs)
    longest = lengths[0] if lengths else 0
    peak_tokens = sum(lengths[: train.batch_size]) if packing else train.batch_size * longest
    # A packed batch runs in pieces (see TunelabTrainer.training_step); one example is never cut.
    per_token = meter.bytes_per_token()
    pieces = piece_tokens(train) if packing else 0
    if pieces == "auto":  # what training will choose after its first step, from the same measurements
        pieces = auto_tokens(per_token, memory.available_memory(device), train.max_length)
    forward_tokens = min(peak_tokens, max(pieces, longest)) if pieces else peak_tokens
    vocab = model.get_output_embeddings().weight.shape[0]
    loss = 2 * min(CHUNK, forward_tokens) * vocab * 4   # one chunk of fp32 logits + its log-softmax
    parts = dict(
        weights_bytes=memory.weight_bytes(model), gradients_bytes=memory.gradient_bytes(model),
        optimizer_bytes=memory.optimizer_bytes(model, train.optimizer),
        activations_bytes=int(per_token * forward_tokens), loss_bytes=loss, runtime_bytes=runtime,
    )
    # What the warm-up's own high-water mark shows beyond the parts at its largest forward: gradient
    # buffers during backward, allocator slack, the Trainer's state. Measured, so carried over as is.
    at_warmup = sum(parts.values()) - parts["activations_bytes"] + int(per_token * meter.max_tokens())
    parts["other_bytes"] = max(0, measured - at_warmup)
    tokens_per_epoch = sum(lengths)
    rate = timer.tokens_per_s()
    epoch_seconds = tokens_per_epoch / rate if rate else float("nan")
    return Plan(
        total_params=total, trainable_params=trainable, examples=len(lengths), tokens_per_epoch=tokens_per_epoch,
        steps_per_epoch=steps_per_epoch, total_steps=total_steps, packing=packing, peak_step_tokens=peak_tokens,
        peak_forward_tokens=forward_tokens,
        activation_bytes_per_token=per_token, estimated_peak_bytes=sum(parts.values()),
        available_bytes=memory.available_memory(device), warmup_tokens_per_s=rate,
        epoch_seconds=epoch_seconds, total_seconds=epoch_seconds * total_steps / steps_per_epoch, **parts,
    )

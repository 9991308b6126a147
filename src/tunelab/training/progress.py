"""One readable progress line per logging step, in place of the Trainer's raw dict of strings.

transformers' PrinterCallback/ProgressCallback print every log as `{'loss': '2.872', 'grad_norm': ...}`;
the full records go to metrics.jsonl anyway (MetricsFileCallback), so the terminal gets what a person
reads: step/total, loss, eval loss, reward, learning rate, tokens/s and the time left.
"""
from __future__ import annotations

import logging
import time

from transformers import PrinterCallback, ProgressCallback, TrainerCallback

log = logging.getLogger("tunelab")


class ProgressLines(TrainerCallback):
    def __init__(self):
        self.start = time.perf_counter()
        self.first_step = 0

    def on_train_begin(self, args, state, control, **kwargs):
        self.start, self.first_step = time.perf_counter(), state.global_step  # a resumed run counts from there

    def on_log(self, args, state, control, logs=None, **kwargs):
        if state.is_world_process_zero and logs and "train_loss" not in logs:  # the end: tunelab says "finished"
            log.info("%s", progress_line(state.global_step, state.max_steps, logs, self._left(state)))

    def _left(self, state) -> float | None:
        done = state.global_step - self.first_step
        if done <= 0 or not state.max_steps:
            return None
        return (time.perf_counter() - self.start) / done * (state.max_steps - state.global_step)


def progress_line(step: int, total: int, logs: dict, seconds_left: float | None) -> str:
    parts = [f"step {step}/{total}" if total else f"step {step}"]
    for key, label in (("loss", "loss"), ("eval_loss", "eval loss"), ("reward", "reward")):
        if isinstance(logs.get(key), (int, float)):
            parts.append(f"{label} {logs[key]:.4f}")
    if isinstance(logs.get("learning_rate"), (int, float)):
        parts.append(f"lr {logs['learning_rate']:.3g}")
    if isinstance(logs.get("train_tokens_per_second"), (int, float)):
        parts.append(f"{logs['train_tokens_per_second']:,.0f} tokens/s")
    if seconds_left is not None:
        parts.append(f"ETA {_clock(seconds_left)}")
    return " · ".join(parts)


def _clock(seconds: float) -> str:
    minutes, secs = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def use_progress_lines(trainer) -> None:
    """Swap the Trainer's printing callbacks (whichever of the two it chose) for ProgressLines."""
    for callback in (PrinterCallback, ProgressCallback):
        trainer.remove_callback(callback)
    trainer.add_callback(ProgressLines())

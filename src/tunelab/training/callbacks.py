"""Callbacks: metrics.jsonl, TensorBoard under RUN/tensorboard, SwanLab, early stopping."""
from __future__ import annotations

import json
import os
import time

from transformers import EarlyStoppingCallback, TrainerCallback

from tunelab.config import RunConfig
from tunelab.runs.rundir import RunDir


class MetricsFileCallback(TrainerCallback):
    """One JSON line per logging step: step, loss, lr, tokens (non-padding so far), elapsed_s.
    Evaluation lines carry eval_* metrics instead of loss."""

    def __init__(self, run: RunDir):
        self.path = run.metrics
        self.start = time.perf_counter()

    def on_train_begin(self, args, state, control, **kwargs):
        self.start = time.perf_counter()

    def on_log(self, args, state, control, logs=None, **kwargs):
        logs = logs or {}
        if "train_loss" in logs or not state.is_world_process_zero:  # the final summary goes to summary.json
            return
        line = {"step": state.global_step, "epoch": round(state.epoch or 0, 4)}
        if "loss" in logs:
            line.update(loss=logs["loss"], lr=logs.get("learning_rate"), grad_norm=logs.get("grad_norm"))
        line.update({k: v for k, v in logs.items() if k.startswith("eval_") or "/" in k})  # TRL: rewards/margins...
        line.update(tokens=state.num_input_tokens_seen, elapsed_s=round(time.perf_counter() - self.start, 3))
        with self.path.open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(line) + "\n")


def build_callbacks(config: RunConfig, run: RunDir, main: bool = True) -> list[TrainerCallback]:
    """`main`: this is rank 0, the one that writes files (a SummaryWriter creates its file when made)."""
    callbacks: list[TrainerCallback] = [MetricsFileCallback(run)]
    if config.train.report_to == "tensorboard" and main:
        from torch.utils.tensorboard import SummaryWriter
        from transformers.integrations import TensorBoardCallback

        board = TensorBoardCallback(SummaryWriter(log_dir=str(run.path / "tensorboard")))
        # It closes its writer when training ends and opens a new one for the final evaluation's logs, by
        # default in RUN/runs/<date>: keep that one in RUN/tensorboard too.
        board.logging_dir = str(run.path / "tensorboard")
        callbacks.append(board)
    if config.train.report_to == "swanlab" and main:
        callbacks.append(swanlab_callback(run))
    if config.train.early_stopping_patience and config.data.val_size > 0:
        callbacks.append(EarlyStoppingCallback(early_stopping_patience=config.train.early_stopping_patience))
    return callbacks


def swanlab_callback(run: RunDir) -> TrainerCallback:
    """SwanLab's own callback for transformers: the one transformers 5.23 ships (report_to="swanlab") asks
    `swanlab.get_run()` for None, which swanlab 0.10 answers with an error. Offline and local logs go to RUN/swanlog
    unless SWANLAB_LOG_DIR says otherwise; SWANLAB_MODE picks the mode (online needs SWANLAB_API_KEY or a login)."""
    from swanlab.integration.transformers import SwanLabCallback

    return SwanLabCallback(log_dir=os.environ.get("SWANLAB_LOG_DIR") or str(run.path / "swanlog"))

"""Callbacks that keep a run recoverable: complete checkpoints, a clean stop on SIGINT/SIGTERM, and
skipping updates whose gradients are not finite.

They work through the Trainer's callback events only, so every stage (our Trainer and TRL's) gets them.
"""
from __future__ import annotations

import logging
import signal
import threading
from pathlib import Path

import torch
from transformers import TrainerCallback

from tunelab.runs.checkpoints import PREFIX, mark_complete, prune

log = logging.getLogger("tunelab")

SIGNAL_NAMES = {signal.SIGINT: "SIGINT", signal.SIGTERM: "SIGTERM"}


class CompleteCheckpoints(TrainerCallback):
    """Marks each checkpoint complete once the Trainer has written it, then prunes older ones.

    The Trainer's own pruning is off (save_total_limit=None in its arguments): it would delete the previous
    checkpoint before the new one is known to be whole. Also asks for a checkpoint at the last step, so a run
    that dies while saving its model can resume without repeating any step."""

    def __init__(self, run_path: Path, limit: int | None):
        self.run_path, self.limit = Path(run_path), limit

    def on_step_end(self, args, state, control, **kwargs):
        if state.max_steps and state.global_step >= state.max_steps:
            control.should_save = True

    def on_save(self, args, state, control, **kwargs):
        if not state.is_world_process_zero:
            return
        folder = self.run_path / f"{PREFIX}{state.global_step}"
        if folder.is_dir():
            mark_complete(folder, state.global_step)
            best = Path(state.best_model_checkpoint) if state.best_model_checkpoint else None
            prune(self.run_path, self.limit, keep=best)


class StopOnSignal(TrainerCallback):
    """SIGINT/SIGTERM during the training loop: finish the current step, save a checkpoint, stop.

    A second signal is not caught (the handlers are restored after the first): Ctrl-C twice stops at once."""

    def __init__(self, world_size: int = 1):
        self.received: int | None = None
        self.world_size = world_size
        self._previous: dict = {}

    def on_train_begin(self, args, state, control, **kwargs):
        if threading.current_thread() is not threading.main_thread():  # signals reach the main thread only
            return
        for signum in SIGNAL_NAMES:
            self._previous[signum] = signal.signal(signum, self._handle)

    def on_step_end(self, args, state, control, **kwargs):
        if self._anyone_received():
            control.should_save = True
            control.should_training_stop = True

    def _anyone_received(self) -> bool:
        """With several ranks all must stop after the same step (one stopping alone would hang the others in
        their next gradient exchange), so the flag is shared: one tiny all-reduce per step."""
        if self.world_size == 1:
            return self.received is not None
        import torch.distributed as dist
        from accelerate import PartialState

        flag = torch.tensor([0 if self.received is None else int(self.received)], device=PartialState().device)
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        if flag.item() and self.received is None:
            self.received = int(flag.item())  # another rank got the signal
        return bool(flag.item())

    def on_train_end(self, args, state, control, **kwargs):
        self.restore()

    def restore(self) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous = {}

    @property
    def name(self) -> str:
        return SIGNAL_NAMES.get(self.received, str(self.received))

    def _handle(self, signum, frame):
        self.received = signum
        log.info("%s received: stopping after this step and saving a checkpoint (send it again to stop now)",
                 SIGNAL_NAMES[signum])
        self.restore()


class SkipBadSteps(TrainerCallback):
    """Before each optimizer step: when any gradient is NaN/Inf, drop all gradients so the optimizer leaves
    every weight (and its own state) as it was. `limit` such steps in a row stop training (`failed`).

    With fp16 the Trainer's GradScaler already skips overflowing steps and lowers its scale — that is
    normal there, so this guard is not installed for fp16."""

    def __init__(self, limit: int):
        self.limit = limit
        self.skipped = 0
        self.in_a_row = 0
        self.failed_at: int | None = None

    def on_pre_optimizer_step(self, args, state, control, model=None, **kwargs):
        grads = [p.grad for p in model.parameters() if p.grad is not None] if model is not None else []
        if not grads or _finite(grads):
            self.in_a_row = 0
            return
        for param in model.parameters():
            param.grad = None
        self.skipped += 1
        self.in_a_row += 1
        step = state.global_step + 1
        log.warning("step %d: non-finite loss or gradients; update skipped (%d in a row, %d in all)",
                    step, self.in_a_row, self.skipped)
        if self.in_a_row >= self.limit:
            self.failed_at = step
            control.should_training_stop = True

    def on_step_end(self, args, state, control, **kwargs):
        if self.failed_at is not None:  # no checkpoint of a run that is being given up
            control.should_save = False
            control.should_training_stop = True


def _finite(grads: list[torch.Tensor]) -> bool:
    norms = torch._foreach_norm(grads)  # one fused pass; NaN or Inf anywhere shows in the norms
    device = norms[0].device
    return bool(torch.isfinite(torch.stack([n.float().to(device) for n in norms])).all())  # one sync


class Guards:
    """The three guards of one run, and what their state means once the Trainer returns."""

    def __init__(self, config, run_path: Path, resumable: bool, world=None):
        from tunelab.models import detect_device, resolve_precision

        self.run_path = Path(run_path)
        self.checkpoints = CompleteCheckpoints(run_path, config.train.save_total_limit)
        # A stage that cannot resume gets no graceful stop: Ctrl-C stops it at once, as before.
        self.signals = StopOnSignal(world.size if world is not None else 1) if resumable else None
        fp16 = resolve_precision(config.train.precision, detect_device()) == "fp16"
        self.bad_steps = None if fp16 else SkipBadSteps(config.train.max_bad_steps)

    @property
    def callbacks(self) -> list[TrainerCallback]:
        found = [self.checkpoints, self.signals, self.bad_steps]  # bad_steps last: it can veto the save
        return [callback for callback in found if callback is not None]

    def summary(self) -> dict:
        return {"skipped_steps": self.bad_steps.skipped} if self.bad_steps is not None else {}

    def check(self, step: int) -> None:
        """After `trainer.train()` returned: raise when it stopped for a bad-step run or a signal."""
        from tunelab.errors import Interrupted, TunelabError
        from tunelab.runs.checkpoints import latest_complete

        latest = latest_complete(self.run_path)
        if self.bad_steps is not None and self.bad_steps.failed_at is not None:
            raise TunelabError(
                f"train.max_bad_steps: {self.bad_steps.in_a_row} steps in a row (up to step "
                f"{self.bad_steps.failed_at}) had non-finite loss or gradients; training stopped. Last good "
                f"checkpoint: {latest.name if latest else 'none'}. Try a lower train.lr, train.precision=fp32 or "
                "a smaller train.max_grad_norm")
        if self.signals is not None and self.signals.received is not None:
            self.signals.restore()
            raise Interrupted(
                f"{self.signals.name} at step {step}: saved {latest.name if latest else 'no checkpoint'}; resume "
                f"with: tunelab train {self.run_path / 'config.yaml'} train.resume=true", self.signals.received)

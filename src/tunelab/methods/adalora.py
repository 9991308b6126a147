"""AdaLoRA through peft: LoRA in SVD form (P·diag(E)·Q) whose rank budget moves, during training, from
method.adalora_init_r per layer down to an average of method.r, kept where the importance scores say
the update matters.

The schedule needs the run's total step count, which only the Trainer knows once the data is ready:
a callback sets it at the start of training and calls peft's `update_and_allocate` after every
optimizer step (while the gradients are still there). The orthogonality penalty is added in peft's
own forward, so this method runs the model's forward rather than the fused loss.
"""
from __future__ import annotations

from torch import nn
from transformers import TrainerCallback

from tunelab.errors import TunelabError
from tunelab.methods.base import register
from tunelab.methods.peft_base import PeftMethod

PLACEHOLDER_STEPS = 1000  # peft validates total_step when the config is built; the callback sets the real one


class AdaLoraSchedule(TrainerCallback):
    """Set the step schedule from the Trainer's own step count, then reallocate ranks after each step."""

    def __init__(self, model: nn.Module):
        self.model = model

    def on_train_begin(self, args, state, control, **kwargs):
        config = self.model.peft_config["default"]
        total = max(state.max_steps, 1)
        config.total_step = total
        # steps at the end with the final ranks; the allocation at step total - tfinal needs at least one earlier
        # step of importance scores, so a one-step run keeps adalora_init_r (tfinal 0 never reaches it)
        config.tfinal = min(max(1, total // 5), total - 1)
        config.tinit = min(total // 10, max(total - config.tfinal - 1, 0))  # warm-up at the full budget

    def on_optimizer_step(self, args, state, control, **kwargs):
        self.model.base_model.update_and_allocate(state.global_step)


@register("adalora")
class AdaLoraMethod(PeftMethod):
    def peft_config(self):
        from peft import AdaLoraConfig, TaskType

        cfg = self.config
        if cfg.r > cfg.adalora_init_r:
            raise TunelabError(f"method.r: the final average rank {cfg.r} is above method.adalora_init_r "
                               f"({cfg.adalora_init_r}); AdaLoRA only removes rank")
        return AdaLoraConfig(
            task_type=TaskType.CAUSAL_LM, init_r=cfg.adalora_init_r, target_r=cfg.r, lora_alpha=cfg.alpha,
            lora_dropout=cfg.dropout, target_modules=cfg.target_modules, orth_reg_weight=cfg.adalora_orth_weight,
            total_step=PLACEHOLDER_STEPS,
        )

    def callbacks(self, model: nn.Module) -> list:
        return [AdaLoraSchedule(model)]

    def summary(self, model: nn.Module) -> dict:
        """The ranks each layer kept (once the schedule has allocated them)."""
        pattern = model.peft_config["default"].rank_pattern or {}
        ranks = {name: int(sum(1 for keep in mask if keep)) for name, mask in pattern.items()}
        return {"adalora_ranks": ranks} if ranks else {}

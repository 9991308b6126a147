"""What a method adds to any Trainer — tunelab's own or one of TRL's: extra loss terms (MoE balance,
forgetting regularizers), per-parameter learning-rate scales (LoRA+), and the method's own checkpoint
format. One mixin, so every stage gets them the same way."""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn
from transformers import TrainerCallback
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

from tunelab.compat import TrainerPrivateHooks


def method_hooks(method, model: nn.Module) -> dict:
    """The MethodHooks keyword arguments a method asks for."""
    return {"loss_terms": method.loss_terms(model), "lr_scale": method.lr_scale,
            "save_weights": method.save if method.saves_checkpoints else None,
            "save_trainable": not method.checkpoint_resumes}


class MethodHooks(TrainerPrivateHooks):
    """Mix in before a transformers/TRL Trainer class."""

    def __init__(self, *args, loss_terms=(), lr_scale=None, save_weights=None, save_trainable=False, **kwargs):
        # Set before the Trainer's __init__: some (TRL's PPO) build their optimizer inside it.
        self.loss_terms = list(loss_terms)
        self.lr_scale = lr_scale          # parameter name -> learning-rate multiplier (LoRA+), or None
        self.save_weights = save_weights  # (model, dir) -> None: a method's own format for checkpoints too
        self.term_values: dict[str, list[float]] = {}  # named terms' values since the last log line
        if save_trainable:  # checkpoints also keep TRAINABLE_STATE, which resume reads; written before any other
            # callback's on_save, so the checkpoint's completion marker (training.guards) comes after it
            kwargs["callbacks"] = [SaveTrainable(), *(kwargs.get("callbacks") or [])]
        super().__init__(*args, **kwargs)

    def add_loss_terms(self, loss, model, inputs, outputs):
        """Training only: eval_loss stays the stage's own loss, comparable across methods and penalties."""
        if not model.training:
            return loss
        share = getattr(self, "term_share", 1.0)  # this call's share of the optimizer step (TunelabTrainer)
        for term in self.loss_terms:
            if hasattr(term, "share"):  # a term drawing its own rows takes this call's share of them
                term.share = share
            value = term(model, inputs, outputs)
            name = getattr(term, "name", None)
            if name:
                self.term_values.setdefault(name, []).append(float(value.detach()))
            loss = loss + (value * share if share != 1.0 else value)
        return loss

    def log(self, logs: dict, *args, **kwargs):
        """Each named loss term's mean since the last line goes beside the loss, as `loss/<name>`."""
        if "loss" in logs and self.term_values:
            logs = {**logs, **{f"loss/{name}": sum(v) / len(v) for name, v in self.term_values.items() if v}}
            self.term_values = {}
        return super().log(logs, *args, **kwargs)

    def create_optimizer(self, model=None):
        optimizer = super().create_optimizer(model)
        if self.lr_scale is not None:
            scale_learning_rates(optimizer, self.model, self.lr_scale)
        return optimizer

    def saved_model(self, folder: Path) -> None:
        if self.save_weights is not None:
            self.save_weights(self.model, folder)

    def load_checkpoint(self, folder: Path, model) -> bool:
        state = folder / TRAINABLE_STATE
        if state.is_file():
            load_trainable(model, state)
        return state.is_file()


class SaveTrainable(TrainerCallback):
    """Each checkpoint also keeps every trainable tensor as it is (TRAINABLE_STATE), written after the Trainer's
    own files; rank 0 writes it."""

    def on_save(self, args, state, control, model=None, **kwargs):
        if args.should_save:
            folder = Path(args.output_dir) / f"{PREFIX_CHECKPOINT_DIR}-{state.global_step}"
            save_trainable(model, folder / TRAINABLE_STATE)


# A method's saved format is for loading the result, and some cannot restart training: PiSSA's is converted to
# plain LoRA, prefix/P-tuning save the encoder's output instead of the encoder, AdaLoRA's is cut to the kept
# ranks. Their checkpoints also hold every trainable tensor as it is, and resume loads that instead.
TRAINABLE_STATE = "tunelab_trainable.safetensors"


def save_trainable(model: nn.Module, path: Path) -> None:
    from safetensors.torch import save_file

    save_file({name: p.detach().contiguous().cpu() for name, p in model.named_parameters() if p.requires_grad},
              str(path))


def load_trainable(model: nn.Module, path: Path) -> None:
    from safetensors.torch import load_file

    from tunelab.errors import TunelabError

    saved = load_file(str(path))
    params = {name: p for name, p in model.named_parameters() if p.requires_grad}
    if saved.keys() != params.keys() or any(saved[n].shape != params[n].shape for n in saved):
        raise TunelabError(f"{path}: its trainable tensors do not match this run's model (another method.* "
                           "setting?); resume with the run's own config")
    with torch.no_grad():
        for name, param in params.items():
            param.copy_(saved[name])


class TrlLossTerms(MethodHooks):
    """For TRL trainers, whose compute_loss computes the whole preference/RL loss: terms added on top."""

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        result = super().compute_loss(model, inputs, return_outputs=return_outputs,
                                      num_items_in_batch=num_items_in_batch)
        if not self.loss_terms:
            return result
        # Some TRL trainers (GRPO) cannot return outputs: the terms then get None, as tunelab's fused loss gives
        # them no logits either; the MoE balance and the regularizers read the model, not the outputs.
        loss, outputs = result if return_outputs else (result, None)
        loss = self.add_loss_terms(loss, model, inputs, outputs)
        return (loss, outputs) if return_outputs else loss


def scale_learning_rates(optimizer, model: nn.Module, lr_scale) -> None:
    """Move parameters whose `lr_scale(name)` is not 1 into their own groups with lr x scale (before any step)."""
    names = {id(p): name for name, p in model.named_parameters()}
    for group in list(optimizer.param_groups):
        by_scale: dict[float, list] = {}
        for param in group["params"]:
            by_scale.setdefault(float(lr_scale(names.get(id(param), ""))), []).append(param)
        group["params"] = by_scale.pop(1.0, [])
        for scale, params in by_scale.items():
            optimizer.add_param_group({**{k: v for k, v in group.items() if k != "params"},
                                       "params": params, "lr": group["lr"] * scale})
    optimizer.param_groups[:] = [group for group in optimizer.param_groups if group["params"]]

"""Elastic weight consolidation (Kirkpatrick et al., 2017): weight/2 * sum F * (theta - theta_old)^2, where F
is the diagonal Fisher information of the trainable parameters on the old data, estimated from per-example
gradients of the LM loss (the empirical Fisher).

F is scaled to mean 1 over all its entries before use, so `continual.weight` means the same for a LoRA
adapter and a full model (raw Fisher values are tiny and depend on the model's size); the raw values are
what is saved. After training, the Fisher of this task's own data at the trained weights is added and the
sum is written to RUN/fisher.safetensors: the next task of a sequence (or any run with
`continual.fisher: RUN`) protects both the reference data and this task.
"""
from __future__ import annotations

import logging
from pathlib import Path

import torch
from tqdm.auto import tqdm

from tunelab.continual.base import ContinualMethod, LossTerm, Setting, anchor, register, trainable
from tunelab.continual.l2sp import Pull
from tunelab.errors import TunelabError

log = logging.getLogger("tunelab")
FISHER = "fisher.safetensors"


def estimate_fisher(model: torch.nn.Module, rows: list[dict], desc: str = "fisher") -> dict[str, torch.Tensor]:
    """Mean over rows of the squared gradient of each row's LM loss, for every trainable parameter."""
    params = trainable(model)
    fisher = {name: torch.zeros_like(p, dtype=torch.float32) for name, p in params.items()}
    was_training = model.training
    model.eval()  # no dropout: the Fisher of the model itself
    device = next(iter(params.values())).device
    try:
        for row in tqdm(rows, desc=desc, unit="ex"):
            model.zero_grad(set_to_none=True)
            batch = {key: torch.tensor([row[key]], device=device) for key in ("input_ids", "attention_mask", "labels")}
            model(**batch).loss.backward()
            for name, p in params.items():
                if p.grad is not None:
                    fisher[name] += p.grad.detach().float().pow(2)
    finally:
        model.zero_grad(set_to_none=True)
        model.train(was_training)
    return {name: value / len(rows) for name, value in fisher.items()}


def normalized(fisher: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    total = sum(float(value.sum()) for value in fisher.values())
    count = sum(value.numel() for value in fisher.values())
    scale = count / total if total > 0 else 1.0
    return {name: value * scale for name, value in fisher.items()}


def read_fisher(where: str) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    path = Path(where).expanduser()
    path = path / FISHER if path.is_dir() else path
    if not path.is_file():
        raise TunelabError(f"continual.fisher {where}: no {FISHER} there (it is written by runs with continual "
                           "method ewc)")
    return load_file(str(path))


def add_matching(total: dict[str, torch.Tensor], extra: dict[str, torch.Tensor], source: str) -> None:
    """Add `extra` where a parameter of the same name and shape trains here; say what did not match."""
    matched = [name for name in extra if name in total and total[name].shape == extra[name].shape]
    for name in matched:
        total[name] += extra[name].to(total[name].device)
    if len(matched) < len(total):
        log.warning("continual.fisher %s: %d of %d trainable tensors have no earlier Fisher (other method or "
                    "shapes); they are protected by the reference data only", source, len(total) - len(matched),
                    len(total))


@register("ewc")
class EWC(ContinualMethod):
    # With the Fisher at mean 1, weight/2 * sum F d^2 is about weight * 80 at the end of an unregularised identity
    # LoRA run (sum of B^2 there ~80): 0.01 makes the pull comparable to the LM loss, not dominant.

    fisher: dict[str, torch.Tensor] | None = None

    def loss_term(self, setting: Setting) -> LossTerm:
        rows = setting.reference()[: self.config.fisher_samples]
        fisher = estimate_fisher(setting.model, rows, "fisher (reference data)")
        if self.config.fisher:
            add_matching(fisher, read_fisher(self.config.fisher), self.config.fisher)
        self.fisher = fisher
        return Pull("ewc", self.weight, anchor(setting.model), normalized(fisher)).bind(trainable(setting.model))

    def finish(self, setting: Setting, task_rows: list[dict]) -> None:
        """Add this task's Fisher at the trained weights and save the sum for the next task."""
        from safetensors.torch import save_file

        total = dict(self.fisher or {})
        if task_rows:
            add_matching(total, estimate_fisher(setting.model, task_rows, "fisher (this task)"), "this task")
        save_file({name: value.contiguous().cpu() for name, value in total.items()},
                  str(setting.output_dir / FISHER))

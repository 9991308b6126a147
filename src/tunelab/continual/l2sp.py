"""L2-SP: a plain pull toward the starting point, weight/2 * sum (theta - theta_0)^2 over what trains.
(Li et al., 2018.) With LoRA the starting point is the zero update; with full/freeze the pre-trained weights."""
from __future__ import annotations

import torch

from tunelab.continual.base import ContinualMethod, LossTerm, Setting, anchor, register


class Pull(LossTerm):
    """weight/2 * sum importance * (theta - anchor)^2; importance None means 1 everywhere."""

    def __init__(self, name: str, weight: float, anchors: dict, importance: dict | None = None):
        self.name, self.weight, self.anchors, self.importance = name, weight, anchors, importance
        self.params: dict = {}

    def bind(self, params: dict) -> "Pull":
        self.params = {name: params[name] for name in self.anchors}
        return self

    def __call__(self, model, inputs, outputs) -> torch.Tensor:
        total = None
        for name, param in self.params.items():
            delta = (param - self.anchors[name].to(param.device, param.dtype)).pow(2)
            if self.importance is not None:
                delta = delta * self.importance[name].to(param.device, param.dtype)
            total = delta.sum() if total is None else total + delta.sum()
        return 0.5 * self.weight * total


@register("l2sp")
class L2SP(ContinualMethod):
    def loss_term(self, setting: Setting) -> LossTerm:
        from tunelab.continual.base import trainable

        return Pull("l2sp", self.weight, anchor(setting.model)).bind(trainable(setting.model))

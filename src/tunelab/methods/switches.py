"""How methods that train the model's own parameters (full, freeze, bitfit) offer the base model for a while
(`Method.disable`): the starting values of what trains are kept, and swapped in. Methods that add modules
switch them off instead (tunelab.switch.switched)."""
from __future__ import annotations

import contextlib

import torch
from torch import nn

from tunelab.errors import TunelabError

ORIGINALS = "_tunelab_originals"


def keep_starting_values(model: nn.Module) -> nn.Module:
    """Copy the parameters that train (only those), for `starting_values`."""
    setattr(model, ORIGINALS, {name: p.detach().clone() for name, p in model.named_parameters() if p.requires_grad})
    return model


@contextlib.contextmanager
def starting_values(model: nn.Module, method: str):
    """Inside the block the trained parameters hold their starting values; the trained ones come back after."""
    originals = getattr(model, ORIGINALS, None)
    if originals is None:
        raise TunelabError(f"method {method}: this model was loaded without its starting weights; "
                           "load the base model itself")
    params = dict(model.named_parameters())
    trained = {name: params[name].detach().clone() for name in originals}
    _copy_into(params, originals)
    try:
        yield model
    finally:
        _copy_into(params, trained)


def _copy_into(params: dict, values: dict) -> None:
    with torch.no_grad():
        for name, value in values.items():
            params[name].copy_(value)

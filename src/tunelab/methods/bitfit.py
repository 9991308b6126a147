"""BitFit: only bias terms train.

Models without biases (the Llama family) get zero-initialised bias vectors on the targeted linear
layers, so the function is unchanged at step 0. Only the biases are saved (`bitfit.safetensors`),
and the base model is available without a second copy: `disable` swaps the original biases back in.
Written here because peft has no BitFit.
"""
from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from tunelab.errors import TunelabError
from tunelab.methods.base import Method, register, task_heads
from tunelab.methods.switches import keep_starting_values, starting_values

WEIGHTS = "bitfit.safetensors"


def _targets(model: nn.Module, target_modules) -> list[nn.Linear]:
    """Bias-free candidates: nn.Linear layers (GPT-2's Conv1D layers carry biases already)."""
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    return [
        module for name, module in model.named_modules()
        if isinstance(module, nn.Linear) and module is not head
        and (target_modules == "all-linear" or name.rsplit(".", 1)[-1] in target_modules)
    ]


@register("bitfit")
class BitFitMethod(Method):
    def apply(self, model: nn.Module) -> nn.Module:
        model.requires_grad_(False)
        for module in _targets(model, self.config.target_modules):
            if module.bias is None:
                weight = module.weight
                module.bias = nn.Parameter(torch.zeros(module.out_features, dtype=weight.dtype, device=weight.device))
        biases = {name: p for name, p in model.named_parameters() if name.endswith(".bias")}
        if not biases:
            raise TunelabError(f"method.target_modules: {self.config.target_modules!r} matches no linear layer and "
                               "the model has no bias terms of its own")
        for parameter in biases.values():
            parameter.requires_grad_(True)
        train_whole_modules(model, [*self.config.modules_to_save, *task_heads(model)])
        return keep_starting_values(model)  # of all that trains (biases, modules_to_save): what `disable` swaps in

    def save(self, model: nn.Module, out_dir: Path) -> None:
        Path(out_dir).mkdir(parents=True, exist_ok=True)
        state = {name: p.detach().contiguous() for name, p in model.named_parameters() if p.requires_grad}
        save_file(state, str(Path(out_dir) / WEIGHTS))

    def load(self, base: nn.Module, weights_dir: Path, trainable: bool = False) -> nn.Module:
        model = self.apply(base)
        state = _bias_state(Path(weights_dir), {name for name, p in model.named_parameters() if p.requires_grad})
        missing = set(state) - {name for name, _ in model.named_parameters()}
        if missing:
            raise TunelabError(f"{weights_dir}: biases for modules this model does not have: {sorted(missing)[:3]}")
        with torch.no_grad():
            for name, parameter in model.named_parameters():
                if name in state:
                    parameter.copy_(state[name].to(parameter.dtype))
        if not trainable:
            model.requires_grad_(False)
        return model

    def merge(self, model: nn.Module) -> nn.Module:
        """The biases already are part of the layers; what is left is to make the saved config say so
        (Llama-style configs build biases only when `attention_bias` / `mlp_bias` are set)."""
        config = model.config
        for flag, part in (("attention_bias", "attn"), ("mlp_bias", "mlp")):
            layers = [m for name, m in model.named_modules()  # linear layers whose parent is the attention/MLP
                      if isinstance(m, nn.Linear) and "." in name and part in name.split(".")[-2]]
            if getattr(config, flag, True) is False and any(layer.bias is not None for layer in layers):
                for layer in layers:  # the flag gives every layer of that part a bias: zeros keep the function
                    if layer.bias is None:
                        layer.bias = nn.Parameter(torch.zeros(layer.out_features, dtype=layer.weight.dtype,
                                                              device=layer.weight.device))
                setattr(config, flag, True)
        _check_config_builds_the_biases(model)
        return model

    def disable(self, model: nn.Module):
        return starting_values(model, self.name)


def _check_config_builds_the_biases(model: nn.Module) -> None:
    """A saved merged model must reload with its biases: build the architecture from the config (no memory)."""
    with torch.device("meta"):
        fresh = type(model)(model.config)
    expected = set(fresh.state_dict())
    lost = [name for name, _ in model.named_parameters() if name.endswith(".bias") and name not in expected]
    if lost:
        raise TunelabError(f"method bitfit: {type(model).__name__}'s config cannot describe the added biases "
                           f"({lost[0]}, ...); keep the run as base + bitfit.safetensors instead of merging")


def train_whole_modules(model: nn.Module, names: list[str]) -> None:
    """method.modules_to_save: these modules train in full and are saved with the biases."""
    for wanted in names:
        matched = [p for name, p in model.named_parameters() if wanted in name.split(".")]
        if not matched:
            raise TunelabError(f"method.modules_to_save: no module named {wanted!r} in the model")
        for parameter in matched:
            parameter.requires_grad_(True)


def _bias_state(folder: Path, trained: set[str]) -> dict:
    """The trained tensors: bitfit.safetensors in model/, or those entries of a Trainer checkpoint."""
    if (folder / WEIGHTS).is_file():
        return load_file(str(folder / WEIGHTS))
    if (folder / "model.safetensors").is_file():
        return {k: v for k, v in load_file(str(folder / "model.safetensors")).items() if k in trained}
    raise TunelabError(f"{folder}: no {WEIGHTS} (and no model.safetensors) to load the BitFit biases from")

"""Bottleneck adapters (Houlsby et al., 2019): a small trained MLP after each sub-layer of every block.

Each adapter computes `h + up(act(down(h)))` on the output of a block's attention module and of its
MLP, before the block's residual add. `up` starts at zero, so at step 0 the model computes exactly what
the base does. Written here because peft has no Houlsby adapter.

The adapters are attached with forward hooks and live in a `tunelab_adapter` ModuleDict on each block,
so the base model's parameter names are unchanged (the base loads as it is, and the Trainer's own
checkpoints hold the adapter keys beside the base ones). The hooks sit inside the decoder, so they fire
when the Trainer runs `model.get_decoder()` itself (fused loss) and with a KV cache in generation. They
act per token, so packed rows are fine too. A non-linearity sits between the two projections, so an
adapter cannot be folded into the base weights (`mergeable = False`); `disable` switches the adapters
off instead of keeping a second copy of the model.
"""
from __future__ import annotations

import contextlib
import json
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from tunelab.errors import TunelabError
from tunelab.methods.base import Method, register
from tunelab.methods.full import decoder_blocks
from tunelab.switch import switched

WEIGHTS = "adapter.safetensors"
SETTINGS = "tunelab_adapter.json"
ATTRIBUTE = "tunelab_adapter"  # the ModuleDict on each block; its name is in every adapter key
ATTENTION_NAMES = ("self_attn", "attn", "attention", "self_attention")
MLP_NAMES = ("mlp", "feed_forward", "ffn")
ACTIVATIONS: dict[str, type[nn.Module]] = {"gelu": nn.GELU, "relu": nn.ReLU, "silu": nn.SiLU, "tanh": nn.Tanh}


class BottleneckAdapter(nn.Module):
    """`h + up(act(down(h)))`, with `up` zero-initialised so the adapter starts as the identity.

    `enabled` is the switch `disable` uses: off, the hook leaves the sub-layer's output untouched, so the
    model computes the base exactly without a second copy of anything."""

    def __init__(self, hidden: int, size: int, activation: str, dtype: torch.dtype, device: torch.device):
        super().__init__()
        self.activation = activation
        self.down = nn.Linear(hidden, size, dtype=dtype, device=device)
        self.act = ACTIVATIONS[activation]()
        self.up = nn.Linear(size, hidden, dtype=dtype, device=device)
        nn.init.zeros_(self.up.weight)
        nn.init.zeros_(self.up.bias)
        self.enabled = True

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        # The casts are no-ops when the adapter has the base's dtype; they keep a float32 adapter usable on
        # a half-precision base (and under autocast the Linear layers pick their own dtype anyway).
        delta = self.up(self.act(self.down(hidden.to(self.up.weight.dtype))))
        return hidden + delta.to(hidden.dtype)

    def after(self, module: nn.Module, args, output):
        """Forward hook on a sub-layer: adapt its output (the first element of an attention tuple)."""
        if not self.enabled:
            return None
        if isinstance(output, torch.Tensor):
            return self(output)
        if isinstance(output, tuple) and output and isinstance(output[0], torch.Tensor):
            return (self(output[0]), *output[1:])
        raise TunelabError(f"method adapter: {type(module).__name__} returns {type(output).__name__}, "
                           "not a tensor or a tuple starting with one, so no adapter can follow it")

    def extra_repr(self) -> str:
        return f"activation={self.activation}, enabled={self.enabled}"


@register("adapter")
class AdapterMethod(Method):
    def apply(self, model: nn.Module) -> nn.Module:
        return _attach(model, self.config.adapter_size, self.config.adapter_activation)

    def save(self, model: nn.Module, out_dir: Path) -> None:
        adapters = _adapters(model)
        folder = Path(out_dir)
        folder.mkdir(parents=True, exist_ok=True)
        save_file(_adapter_state(model), str(folder / WEIGHTS), metadata={"format": "pt"})
        settings = {"adapter_size": adapters[0].down.out_features, "activation": adapters[0].activation,
                    "count": len(adapters)}
        (folder / SETTINGS).write_text(json.dumps(settings, indent=2) + "\n", encoding="utf-8")

    def load(self, base: nn.Module, weights_dir: Path, trainable: bool = False) -> nn.Module:
        folder = Path(weights_dir)
        settings = _read_settings(folder, self.config.adapter_size, self.config.adapter_activation)
        state = _saved_state(folder)
        _check_count(base, settings.get("count"), folder)  # the checks that need no adapters run before any exist
        model = _attach(base, settings["adapter_size"], settings["activation"])
        _copy_weights(model, state, folder)
        if not trainable:
            model.requires_grad_(False)
        return model

    def merge(self, model: nn.Module) -> nn.Module:
        # Also reached when another method is to train on top of an adapter run (train.py merges first).
        raise TunelabError("method adapter: an adapter has a non-linearity between its two projections, so it cannot "
                           "be folded into the base weights; load the run itself (base + adapter), or keep "
                           "training it with method adapter")

    @contextlib.contextmanager
    def disable(self, model: nn.Module):
        with switched(_adapters(model), "enabled", False):
            yield model


def _attach(model: nn.Module, size: int, activation: str) -> nn.Module:
    """Freeze the base and hook an adapter after the attention and the MLP of every block."""
    hidden = _hidden_size(model)
    sites = [(block, _sites(block)) for block in _blocks(model)]  # every check first: an error changes nothing
    model.requires_grad_(False)
    for block, modules in sites:
        dtype, device = _weights_dtype_device(block)
        adapters = nn.ModuleDict({key: BottleneckAdapter(hidden, size, activation, dtype, device) for key in modules})
        block.add_module(ATTRIBUTE, adapters)
        for key, module in modules.items():
            # A bound method as the hook: copying the model copies the hook with its own adapter.
            module.register_forward_hook(adapters[key].after)
    return model


def _sites(block: nn.Module) -> dict[str, nn.Module]:
    """The two sub-layers of a block whose outputs get an adapter."""
    if hasattr(block, ATTRIBUTE):
        raise TunelabError(f"method adapter: {type(block).__name__} already has adapters; apply the method once")
    _weights_dtype_device(block)
    return {"attn": _child(block, ATTENTION_NAMES, "attention"), "mlp": _child(block, MLP_NAMES, "MLP")}


def _blocks(model: nn.Module) -> nn.ModuleList:
    return decoder_blocks(model, "adapter")


def _hidden_size(model: nn.Module) -> int:
    hidden = getattr(getattr(model, "config", None), "hidden_size", None)
    if not isinstance(hidden, int):
        raise TunelabError(f"method adapter: {type(model).__name__}'s config has no hidden_size to size adapters by")
    return hidden


def _child(block: nn.Module, names: tuple[str, ...], kind: str) -> nn.Module:
    """The block's sub-layer named one of `names` (model families name them differently)."""
    children = dict(block.named_children())
    for name in names:
        if name in children:
            return children[name]
    raise TunelabError(f"method adapter: {type(block).__name__} has no {kind} sub-layer (a child named "
                       f"{', '.join(names)}); its children are {', '.join(children) or 'none'}")


def _weights_dtype_device(block: nn.Module) -> tuple[torch.dtype, torch.device]:
    """Dtype and device of the block's floating-point weights (a quantized base has integer ones too)."""
    for parameter in block.parameters():
        if parameter.is_floating_point():
            return parameter.dtype, parameter.device
    raise TunelabError(f"method adapter: {type(block).__name__} has no floating-point weights to match")


def _adapters(model: nn.Module) -> list[BottleneckAdapter]:
    adapters = [module for module in model.modules() if isinstance(module, BottleneckAdapter)]
    if not adapters:
        raise TunelabError(f"method adapter: {type(model).__name__} carries no adapters (apply the method first)")
    return adapters


def _is_adapter_key(name: str) -> bool:
    return f".{ATTRIBUTE}." in f".{name}"


def _adapter_state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {name: p.detach().contiguous() for name, p in model.named_parameters() if _is_adapter_key(name)}


def _read_settings(folder: Path, size: int, activation: str) -> dict:
    """Size and activation the weights were saved with (tunelab_adapter.json), else the config's.

    The saved file wins: the weights' shapes follow it, whatever the loading config says."""
    path = folder / SETTINGS
    if not path.is_file():
        return {"adapter_size": size, "activation": activation}
    try:
        settings = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise TunelabError(f"{path}: not readable JSON ({exc})") from None
    if not isinstance(settings, dict):
        raise TunelabError(f"{path}: expected a JSON object with adapter_size and activation")
    size = settings.get("adapter_size")
    if isinstance(size, bool) or not isinstance(size, int) or size <= 0:
        raise TunelabError(f"{path}: adapter_size must be a positive integer, not {size!r}")
    if settings.get("activation") not in ACTIVATIONS:
        raise TunelabError(f"{path}: activation must be one of {', '.join(ACTIVATIONS)}, "
                           f"not {settings.get('activation')!r}")
    return settings


def _saved_state(folder: Path) -> dict[str, torch.Tensor]:
    """The adapter weights: adapter.safetensors, or the adapter entries of a Trainer checkpoint."""
    if (folder / WEIGHTS).is_file():
        return load_file(str(folder / WEIGHTS))
    if (folder / "model.safetensors").is_file():
        state = {k: v for k, v in load_file(str(folder / "model.safetensors")).items() if _is_adapter_key(k)}
        if not state:
            raise TunelabError(f"{folder}: model.safetensors holds no adapter weights (no '{ATTRIBUTE}' keys)")
        return state
    raise TunelabError(f"{folder}: no {WEIGHTS} (and no model.safetensors) to load the adapters from")


def _check_count(base: nn.Module, count, folder: Path) -> None:
    built = 2 * len(_blocks(base))
    if count is not None and count != built:
        raise TunelabError(f"{folder / SETTINGS}: saved for {count} adapters, but this model has {built} "
                           f"(2 per block): a different base model?")


def _copy_weights(model: nn.Module, state: dict[str, torch.Tensor], folder: Path) -> None:
    """Copy the saved weights in, refusing missing, extra or differently shaped ones."""
    params = {name: p for name, p in model.named_parameters() if _is_adapter_key(name)}
    missing, extra = sorted(set(params) - set(state)), sorted(set(state) - set(params))
    if missing or extra:
        raise TunelabError(f"{folder}: the saved adapters do not match this model "
                           f"(missing: {missing[:3]}, not in the model: {extra[:3]})")
    for name, parameter in params.items():
        if state[name].shape != parameter.shape:
            raise TunelabError(f"{folder}: sizes disagree: {name} is {tuple(state[name].shape)} in the folder, "
                               f"{tuple(parameter.shape)} in the model (adapter_size or base model differ)")
    with torch.no_grad():
        for name, parameter in params.items():
            parameter.copy_(state[name].to(parameter.dtype))

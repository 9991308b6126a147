"""MoE-LoRA: a mixture of LoRA experts per targeted linear layer, chosen per token by a learned top-k router.

Each targeted layer keeps its frozen base and gains E low-rank experts (A_e [r, in], B_e [out, r]) and
a router Linear(in, E). A token goes to its top-k experts; the output is
`base(x) + alpha/r * sum_k gate_k * B_k A_k x`. B starts at zero, so step 0 computes exactly the base.
With one expert and top_k 1 the gate is exactly 1 and the layer is plain LoRA.

Written here because peft has no token-routed mixture that trains from scratch: X-LoRA mixes
adapters that are already trained, through its own classifier over the hidden states, and
Poly / MHR route per task (a task id per example), not per token.

Choices, and why:
- The experts are computed densely: all E experts for every token, weighted by a gate matrix that is
  zero outside each token's top-k. With A stacked as [E, r, in] this is two matmuls of rank E*r (as
  cheap as one LoRA of that rank for the small E this is meant for) and has no gather/scatter of
  tokens; every parameter is in every step's graph (no unused-parameter search under DDP). A sparse
  dispatch would only pay off for many, large experts.
- Gates: the top-k probabilities renormalised over the chosen experts when top_k > 1. With top_k 1 the
  raw probability is kept (renormalising would make it a constant 1 and the router would get no
  gradient from the task loss); with one expert that probability is exactly 1.
- Load balancing: the Switch Transformer loss E * sum_e f_e * P_e per layer (f_e: share of routings
  to expert e, P_e: mean router probability), computed in training-mode forwards and collected by the
  method's loss term. A linear layer never sees the attention mask, so padded positions count too
  (packed rows have little padding).
- Everything lives inside the decoder's own modules, so packing, the Trainer's fused loss (which calls
  the decoder directly) and generation with a KV cache work unchanged. Routing depends on the input,
  so the experts cannot be merged into the base weights.
"""
from __future__ import annotations

import contextlib
import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn
from transformers.pytorch_utils import Conv1D

from tunelab.errors import TunelabError
from tunelab.methods.base import Method, register
from tunelab.switch import switched

WEIGHTS = "moe_lora.safetensors"
SETTINGS = "moe_lora.json"
ADAPTER_KEYS = ("router.weight", "expert_A", "expert_B")  # the trained tensors of one MoeLoraLinear
SETTINGS_KEYS = ("r", "alpha", "dropout", "num_experts", "top_k", "target_modules")


@dataclass(frozen=True)
class MoeLoraSettings:
    """What shapes the wrapped model: from the config when training, from moe_lora.json when loading."""
    r: int
    alpha: float
    dropout: float
    num_experts: int
    top_k: int
    target_modules: str | list[str]

    @classmethod
    def from_config(cls, config) -> "MoeLoraSettings":
        return cls(**{key: getattr(config, key) for key in SETTINGS_KEYS})


def _in_backward() -> bool:
    """True while autograd runs a backward pass, where a checkpointed block re-runs its forward: a loss
    kept from that re-run would never be used and would hold its block's activations alive."""
    task_id = getattr(torch._C, "_current_graph_task_id", None)
    return task_id is not None and task_id() != -1


def _features(layer: nn.Module) -> tuple[int, int]:
    """(in, out) of an nn.Linear or of GPT-2's Conv1D, whose weight is stored as [in, out]."""
    if isinstance(layer, Conv1D):
        return layer.weight.shape[0], layer.weight.shape[1]
    return layer.in_features, layer.out_features


class MoeLoraLinear(nn.Module):
    """A frozen linear layer plus E LoRA experts mixed per token by a top-k router."""

    def __init__(self, base_layer: nn.Module, settings: MoeLoraSettings):
        super().__init__()
        in_features, out_features = _features(base_layer)
        weight = base_layer.weight
        # the base's device and float dtype (a quantized base stores integers; the experts train in fp32)
        place = {"device": weight.device, "dtype": weight.dtype if weight.is_floating_point() else torch.float32}
        experts, r = settings.num_experts, settings.r
        self.base_layer = base_layer
        self.num_experts, self.top_k, self.r = experts, settings.top_k, r
        self.scaling = settings.alpha / r
        self.router = nn.Linear(in_features, experts, bias=False, **place)
        self.expert_A = nn.Parameter(torch.empty(experts, r, in_features, **place))
        self.expert_B = nn.Parameter(torch.zeros(experts, out_features, r, **place))
        for expert in self.expert_A:  # per expert: kaiming on the 3-D stack would use r * in as fan-in
            nn.init.kaiming_uniform_(expert, a=math.sqrt(5))  # as peft initialises LoRA A
        self.dropout = nn.Dropout(settings.dropout) if settings.dropout > 0 else nn.Identity()
        self.enabled = True  # False: compute exactly the base layer (the method's disable switch)
        self.aux_loss: torch.Tensor | None = None  # the last training forward's balance loss, until collected
        self.register_buffer("routing_counts", torch.zeros(experts, dtype=torch.long, device=weight.device),
                             persistent=False)

    def extra_repr(self) -> str:
        return f"experts={self.num_experts}, top_k={self.top_k}, r={self.r}, scaling={self.scaling:g}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        result = self.base_layer(x)
        if not self.enabled:
            return result
        dtype = self.expert_A.dtype
        x = x.to(dtype)
        gates = self._gates(x)                                                       # [..., E]
        hidden = torch.einsum("...i,eri->...er", self.dropout(x), self.expert_A)    # every expert's A x
        delta = torch.einsum("...er,eor->...o", hidden * gates.unsqueeze(-1), self.expert_B)
        return result + (self.scaling * delta).to(result.dtype)

    def _gates(self, x: torch.Tensor) -> torch.Tensor:
        """[..., E]: each token's gate per expert, zero outside its top-k."""
        probs = self.router(x).float().softmax(dim=-1)
        top_probs, top_experts = probs.topk(self.top_k, dim=-1)
        if self.top_k > 1:
            top_probs = top_probs / top_probs.sum(dim=-1, keepdim=True)
        if self.training:
            self._record(probs, top_experts)
        return torch.zeros_like(probs).scatter(-1, top_experts, top_probs).to(x.dtype)

    def _record(self, probs: torch.Tensor, top_experts: torch.Tensor) -> None:
        """Add this forward's routings to the counts and keep its Switch balance loss for the loss term.
        A checkpointed block's re-run inside backward computes the same (the checkpoint insists on
        identical saved tensors) but is not new data: it neither counts nor keeps its loss."""
        chosen = top_experts.reshape(-1)
        counts = torch.bincount(chosen, minlength=self.num_experts)
        fraction = counts.float() / max(chosen.numel(), 1)          # f_e: no gradient (a count)
        mean_prob = probs.reshape(-1, self.num_experts).mean(dim=0)  # P_e: the router's gradient path
        aux_loss = self.num_experts * (fraction * mean_prob).sum()
        if _in_backward():
            return
        with torch.no_grad():
            self.routing_counts += counts
        self.aux_loss = aux_loss

    def adapter_state(self) -> dict[str, torch.Tensor]:
        """The trained tensors, by name inside this layer (see ADAPTER_KEYS)."""
        return {"router.weight": self.router.weight, "expert_A": self.expert_A, "expert_B": self.expert_B}


def moe_layers(model: nn.Module) -> dict[str, MoeLoraLinear]:
    """Every MoeLoraLinear of `model`, by module name."""
    return {name: module for name, module in model.named_modules() if isinstance(module, MoeLoraLinear)}


def routing_histogram(model: nn.Module) -> dict[str, list[int]]:
    """Tokens routed to each expert, per layer, counted over training-mode forwards since apply/load."""
    return {name: layer.routing_counts.tolist() for name, layer in moe_layers(model).items()}


def _search_root(model: nn.Module) -> nn.Module:
    """The decoder: with the fused loss the Trainer runs only it, so layers outside it would never train."""
    get_decoder = getattr(model, "get_decoder", None)
    decoder = get_decoder() if callable(get_decoder) else None
    return decoder if isinstance(decoder, nn.Module) else model


def _target_names(model: nn.Module, target_modules) -> list[str]:
    """Names of the layers to wrap: all linear/Conv1D layers of the decoder, or those whose last name
    component is listed; never the output head (the fused loss reads its weight directly), nor the
    base layers and routers of layers wrapped already."""
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    inside = {id(module) for module in _search_root(model).modules()}
    wrapped = {id(module) for layer in moe_layers(model).values() for module in layer.modules()}
    return [
        name for name, module in model.named_modules()
        if isinstance(module, (nn.Linear, Conv1D)) and module is not head
        and id(module) in inside and id(module) not in wrapped
        and (target_modules == "all-linear" or name.rsplit(".", 1)[-1] in target_modules)
    ]


def wrap_model(model: nn.Module, settings: MoeLoraSettings) -> nn.Module:
    """Freeze `model` and replace each targeted layer by a MoeLoraLinear whose router and experts train."""
    if settings.top_k > settings.num_experts:
        raise TunelabError(f"method.top_k: {settings.top_k} is more than method.num_experts ({settings.num_experts})")
    names = _target_names(model, settings.target_modules)
    if not names:
        raise TunelabError(f"method.target_modules: {settings.target_modules!r} matches no linear layer of "
                           f"{type(model).__name__}'s decoder")
    model.requires_grad_(False)
    for name in names:
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name)
        setattr(parent, child, MoeLoraLinear(getattr(parent, child), settings))
    model._tunelab_moe_lora = settings  # save() writes the settings the model was built with
    return model


def _read_settings(folder: Path, fallback: MoeLoraSettings) -> MoeLoraSettings:
    """moe_lora.json of `folder`; a Trainer checkpoint without one was built from the run's own config."""
    path = folder / SETTINGS
    if not path.is_file():
        return fallback
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
        return MoeLoraSettings(**{key: raw[key] for key in SETTINGS_KEYS})
    except (ValueError, KeyError, TypeError) as exc:
        raise TunelabError(f"{path}: not a moe-lora settings file ({exc!r}); expected keys {list(SETTINGS_KEYS)}")


def _read_state(folder: Path) -> dict[str, torch.Tensor]:
    """The trained tensors: moe_lora.safetensors, or the adapter entries of a Trainer checkpoint."""
    if (folder / WEIGHTS).is_file():
        return load_file(str(folder / WEIGHTS))
    if (folder / "model.safetensors").is_file():
        state = load_file(str(folder / "model.safetensors"))
        return {k: v for k, v in state.items() if k.endswith(tuple(f".{key}" for key in ADAPTER_KEYS))}
    raise TunelabError(f"{folder}: no {WEIGHTS} (and no model.safetensors) to load the moe-lora experts from")


def _copy_state(model: nn.Module, state: dict[str, torch.Tensor], folder: Path) -> None:
    """Copy `state` into the model's experts and routers, refusing anything that does not fit exactly."""
    targets = {f"{name}.{key}": tensor for name, layer in moe_layers(model).items()
               for key, tensor in layer.adapter_state().items()}
    missing, unexpected = sorted(set(targets) - set(state)), sorted(set(state) - set(targets))
    if missing or unexpected:
        raise TunelabError(f"{folder}: the saved moe-lora experts do not fit this model "
                           f"(missing {missing[:3]}, unexpected {unexpected[:3]})")
    wrong = [f"{key} {tuple(state[key].shape)} != {tuple(tensor.shape)}"
             for key, tensor in targets.items() if state[key].shape != tensor.shape]
    if wrong:
        raise TunelabError(f"{folder}: moe-lora tensors of another shape than this model's: {wrong[:3]}")
    with torch.no_grad():
        for key, tensor in targets.items():
            tensor.copy_(state[key].to(tensor.dtype))


def _balance_term(weight: float):
    """The loss term: `weight` x the mean balance loss of the layers the last forward routed in.
    Collecting clears them, so an evaluation forward (no routing recorded) adds zero, not a stale value."""

    def term(model: nn.Module, inputs, outputs) -> torch.Tensor:
        layers = list(moe_layers(model).values())
        losses = [layer.aux_loss for layer in layers if layer.aux_loss is not None]
        for layer in layers:
            layer.aux_loss = None
        if not losses:
            device = layers[0].router.weight.device if layers else None
            return torch.zeros((), device=device)
        return weight * torch.stack(losses).mean()

    term.name = "moe_balance"  # logged as loss/moe_balance
    return term


@register("moe-lora")
class MoeLoraMethod(Method):
    def apply(self, model: nn.Module) -> nn.Module:
        return wrap_model(model, MoeLoraSettings.from_config(self.config))

    def loss_terms(self, model: nn.Module) -> list:
        return [_balance_term(self.config.router_aux_weight)]

    def summary(self, model: nn.Module) -> dict:
        counts = [sum(column) for column in zip(*routing_histogram(model).values())]
        total = sum(counts)
        settings = getattr(model, "_tunelab_moe_lora", None) or MoeLoraSettings.from_config(self.config)
        return {"moe_routing": {
            "experts": settings.num_experts, "top_k": settings.top_k, "counts": counts,
            "share": [count / total if total else 0.0 for count in counts],
        }}

    def save(self, model: nn.Module, out_dir: Path) -> None:
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        layers = moe_layers(model)
        state = {f"{name}.{key}": tensor.detach().contiguous()
                 for name, layer in layers.items() for key, tensor in layer.adapter_state().items()}
        save_file(state, str(out_dir / WEIGHTS))
        settings = getattr(model, "_tunelab_moe_lora", None) or MoeLoraSettings.from_config(self.config)
        (out_dir / SETTINGS).write_text(json.dumps({**asdict(settings), "layers": list(layers)}, indent=2),
                                        encoding="utf-8")

    def load(self, base: nn.Module, weights_dir: Path, trainable: bool = False) -> nn.Module:
        folder = Path(weights_dir)
        state = _read_state(folder)
        model = wrap_model(base, _read_settings(folder, MoeLoraSettings.from_config(self.config)))
        _copy_state(model, state, folder)
        if not trainable:
            model.requires_grad_(False)
        return model

    def merge(self, model: nn.Module) -> nn.Module:
        raise TunelabError(f"method {self.name}: the experts cannot be folded into the weights, because which "
                           "expert a token uses depends on the input; use the run as it is")

    @contextlib.contextmanager
    def disable(self, model: nn.Module):
        with switched(list(moe_layers(model).values()), "enabled", False):
            yield model

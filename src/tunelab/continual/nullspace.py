"""Null-space LoRA: the adapter's updates kept out of the directions the reference data's layer inputs use.

A LoRA layer adds scale * B A x to a frozen layer's output. If every row of A is orthogonal to the inputs x the
layer sees on the old data, A x = 0 there and the layer computes on the old data exactly what the base did, whatever
B becomes. So before training the reference rows run once through the base; for every adapted layer the
uncentered covariance of its inputs, sum x x^T, gives (eigenvectors, largest first) the subspace U holding
`continual.nullspace_energy` (default 99%) of the inputs' energy; A starts projected out of it and is projected
again after every optimizer step: A <- A - (A U) U^T. The task learns in the directions the old data leaves
nearly unused. The same idea as Adam-NSCL (Wang et al., 2021) for full weights and LoRA-Null (2025) for the
start of an adapter; here it holds for the whole run, on the A matrices only, so it costs one small matmul pair
per layer and step.

Exact only for adapters that start as the base and whose whole change is B A (LoRA, rsLoRA, LoRA+, QLoRA,
AdaLoRA: their spec's `update_is_ba_from_zero`): a method that starts elsewhere (PiSSA), rescales outputs
(DoRA's magnitudes) or has no A (full, IA3, prompts) is refused when the config is read, and so are FSDP and
DeepSpeed. Layers deeper than the first see inputs that earlier layers' changes move a little, so the
old data's outputs are kept closely, not bit for bit; measured on the forgetting bench (docs/training.md).

Why by hand: peft has CorDA and EVA, which pick an adapter's *starting* subspace from activations; neither keeps
the updates out of a subspace while training.
"""
from __future__ import annotations

import logging
import time

import torch
from torch import nn
from tqdm.auto import tqdm
from transformers import TrainerCallback

from tunelab.continual.base import ContinualMethod, Setting, register
from tunelab.errors import TunelabError
from tunelab.models.tokens import pad_id

log = logging.getLogger("tunelab")
ADAPTER = "default"
BATCH = 8


def lora_a(module: nn.Module) -> nn.Parameter | None:
    """The trainable [r, in] A of the active adapter: a Linear's weight (LoRA) or a bare parameter (AdaLoRA)."""
    adapters = getattr(module, "lora_A", None)
    if not isinstance(adapters, (nn.ModuleDict, nn.ParameterDict)) or ADAPTER not in adapters:
        return None
    a = adapters[ADAPTER]
    weight = a.weight if isinstance(a, nn.Linear) else a if isinstance(a, nn.Parameter) else None
    return weight if weight is not None and weight.dim() == 2 and weight.requires_grad else None


def lora_layers(model: nn.Module) -> dict[str, nn.Module]:
    """The modules with a trainable LoRA A of the active adapter over a base layer, by name."""
    return {name: module for name, module in model.named_modules()
            if hasattr(module, "base_layer") and lora_a(module) is not None}


def check_adapters(method_name: str, layers: dict[str, nn.Module]) -> None:
    """What the config cannot see (the method and engine are checked when it is read, tunelab.specs.support): an
    adapter that trains no A here, or one that does not start at zero (continued from a trained adapter)."""
    head = f"continual.method nullspace with method {method_name!r}"
    if not layers:
        raise TunelabError(f"{head}: no layer trains a LoRA A here, so there is nothing to keep out of the old "
                           "data's input directions")
    for name, module in layers.items():
        delta = module.get_delta_weight(ADAPTER) if hasattr(module, "get_delta_weight") else None
        if delta is None or bool(delta.detach().abs().max() > 0):
            raise TunelabError(f"{head}: the adapter of {name} does not start as the base (B A != 0, e.g. continued "
                               "from a trained adapter), so keeping A orthogonal to the old data would change the "
                               "model before training")


@torch.no_grad()
def input_covariances(model: nn.Module, layers: dict[str, nn.Module], rows: list[dict], pad_id: int,
                      autocast) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """sum x x^T (fp64) of each layer's input over the rows' real tokens; layers fed the same tensor (q, k, v;
    gate, up) share one entry: `owner[name]` is the layer whose entry it is."""
    from tunelab.eval.perplexity import pad_batch

    sums: dict[str, torch.Tensor] = {}
    owner: dict[str, str] = {}
    state: dict = {}

    def hook(name):
        def collect(module, args, output):
            x = args[0]
            # the tensor is held in `seen` until the batch ends, so its address cannot be reused by another one
            key = (x.data_ptr(), tuple(x.shape), x.dtype)
            first = state["seen"].setdefault(key, (name, x))[0]
            owner.setdefault(name, first)
            if first != name:
                return
            flat = x.detach().reshape(-1, x.shape[-1])[state["real"]].float()
            sums[name] = sums.get(name, 0) + (flat.T @ flat).double()
        return collect

    hooks = [module.base_layer.register_forward_hook(hook(name)) for name, module in layers.items()]
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    try:
        for start in tqdm(range(0, len(rows), BATCH), desc="nullspace: reference inputs", unit="batch"):
            batch = pad_batch(rows[start : start + BATCH], pad_id)
            state["seen"], state["real"] = {}, batch["attention_mask"].reshape(-1).bool().to(device)
            with autocast():
                model(input_ids=batch["input_ids"].to(device), attention_mask=batch["attention_mask"].to(device))
    finally:
        for handle in hooks:
            handle.remove()
        model.train(was_training)
    return sums, owner


def principal_subspace(covariance: torch.Tensor, energy: float) -> torch.Tensor:
    """The fewest leading eigenvectors [d, k] of a covariance whose eigenvalues sum to `energy` of the trace."""
    values, vectors = torch.linalg.eigh(covariance / covariance.trace().clamp_min(1e-300))
    values, vectors = values.flip(0).clamp_min(0), vectors.flip(1)
    share = values.cumsum(0) / values.sum().clamp_min(1e-300)
    k = min(int((share < energy).sum()) + 1, len(values))
    return vectors[:, :k].float().contiguous()


class Projection(TrainerCallback):
    """A <- A - (A U) U^T for every adapted layer: at the start of training and after every optimizer step."""

    def __init__(self, pairs: list[tuple[nn.Parameter, torch.Tensor]]):
        on_device: dict = {}  # once, not every step; layers sharing an input share one copy
        self.pairs = [(weight, on_device.setdefault((id(basis), weight.device), basis.to(weight.device)))
                      for weight, basis in pairs]

    @torch.no_grad()
    def project(self) -> None:
        for weight, basis in self.pairs:
            weight.sub_(((weight.float() @ basis) @ basis.T).to(weight.dtype))

    def on_train_begin(self, args, state, control, **kwargs):
        self.project()

    def on_optimizer_step(self, args, state, control, **kwargs):
        self.project()


def _say_unconstrained(model: nn.Module, projected: set[int]) -> None:
    """Trainable tensors other than LoRA's (a classifier head, modules_to_save, new token rows) are not kept out of
    anything: say so once, naming a few."""
    free = [name for name, p in model.named_parameters()
            if p.requires_grad and id(p) not in projected and not any(k in name for k in ("lora_B", "lora_E"))]
    if free:
        log.warning("nullspace: %d trainable tensors besides LoRA's train unconstrained (%s%s)", len(free),
                    ", ".join(free[:3]), ", ..." if len(free) > 3 else "")


@register("nullspace")
class NullSpace(ContinualMethod):
    """No weight (None in summaries): `continual.nullspace_energy` sets how much of the old inputs is kept out of
    reach."""

    def __init__(self, weight: float | None, config):
        super().__init__(weight, config)
        self.weight = None

    def callback(self, setting: Setting) -> TrainerCallback:
        started = time.perf_counter()
        layers = lora_layers(setting.model)
        check_adapters(setting.config.method.name, layers)
        pad = pad_id(setting.tokenizer)
        sums, owner = input_covariances(setting.model, layers, setting.reference(), pad, setting.autocast)
        energy = self.config.nullspace_energy
        bases = {name: principal_subspace(total, energy) for name, total in sums.items()}
        pairs = [(lora_a(module), bases[owner[name]]) for name, module in layers.items() if name in owner]
        kept = [basis.shape[1] for basis in bases.values()]
        self.facts = {"layers": len(pairs), "inputs": len(bases), "energy": energy,
                      "directions_min": min(kept), "directions_mean": round(sum(kept) / len(kept), 1),
                      "directions_max": max(kept), "seconds": round(time.perf_counter() - started, 1)}
        facts = self.facts
        log.info("nullspace: %d LoRA layers (%d distinct inputs) kept out of %.4g of the reference inputs' energy: "
                 "%d..%d directions per input (mean %.0f), %.1f s", facts["layers"], facts["inputs"], energy,
                 facts["directions_min"], facts["directions_max"], facts["directions_mean"], facts["seconds"])
        _say_unconstrained(setting.model, {id(weight) for weight, _ in pairs})
        return Projection(pairs)

    def summary(self) -> dict:
        return {"nullspace": getattr(self, "facts", {})}

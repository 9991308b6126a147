"""A leaner forward for plain LoRA layers while tunelab trains them.

Why by hand: peft's `lora.Linear.forward` is written for every case (several adapters, dropout, variants,
mixed batches). For the common training case — one adapter, no dropout, no variant (DoRA...) — under autocast
it costs, per layer and step: the input cast to the compute dtype twice (once for the base weight, once for
A), and for inputs already in the compute dtype (o_proj, down_proj) a cast to fp32 and back; then `* scaling`
and `+ result` as two passes over the [tokens x out] output. Here:

- the input is cast once and the cast is shared by every layer that reads the same tensor (q/k/v, gate/up
  read one normed hidden state: 1 cast instead of 6 and 4). autocast would round it to exactly the same
  values; only the gradients of the shared cast are summed in the compute dtype before their one cast back;
- over a frozen base, the layer is one autograd node (`_FrozenLora`): `result + scaling * (A x) B^T` is one
  in-place `addmm_` (no copy of the output, no separate scale and add passes), and in backward the A part of x's
  gradient is added in place into the W part. The sum is rounded once instead of twice, so the gradients differ
  from peft's path in the last bits (tests bound the difference); on the demo over seeds 42/1/2/3 the general
  probes kept were 42 of 48 either way, the identity 10/10 in every run. A base that trains (bias included) or
  has hooks goes through the module and autograd's own graph.

Anything else (several or disabled adapters, dropout, variants, merged weights, a quantized base, extra
arguments) goes through peft's own forward. Switched on only for the length of training.
"""
from __future__ import annotations

import types

import torch
import torch.nn.functional as F
from torch import nn

_LAST: list = [None, None, None]  # (input, its version, its cast): the one cast shared by consecutive layers


def _cast_once(x: torch.Tensor) -> torch.Tensor:
    device = x.device.type
    if not torch.is_autocast_enabled(device):
        return x
    dtype = torch.get_autocast_dtype(device)
    if x.dtype == dtype or not x.is_floating_point():
        return x
    if _LAST[0] is x and _LAST[1] == x._version:
        return _LAST[2]
    cast = x.to(dtype)
    _LAST[:] = [x, x._version, cast]
    return cast


def _plain(layer) -> bool:
    """A peft LoRA Linear over a plain nn.Linear, with one adapter and nothing the fast forward leaves out."""
    from peft.tuners.lora import Linear as LoraLinear

    if type(layer) is not LoraLinear or type(layer.base_layer) is not nn.Linear:
        return False
    return (not getattr(layer, "fan_in_fan_out", False)
            and all(isinstance(d, nn.Identity) for d in layer.lora_dropout.values())
            and all(b.bias is None for b in layer.lora_B.values())
            and not layer.lora_variant)


def _forward(self, x: torch.Tensor, *args, **kwargs) -> torch.Tensor:
    adapters = self.active_adapters
    if args or kwargs or self.disable_adapters or self.merged or len(adapters) != 1 or adapters[0] not in self.lora_A:
        return type(self).forward(self, x, *args, **kwargs)
    name = adapters[0]
    x = _cast_once(x)
    base, weight, scaling = self.base_layer, self.lora_B[name].weight, self.scaling[name]
    trains_base = base.weight.requires_grad or (base.bias is not None and base.bias.requires_grad)
    if _hooked(base) or trains_base:
        result = base(x)
        low = self.lora_A[name](x)
        return torch.addmm(result.reshape(-1, result.shape[-1]), low.reshape(-1, low.shape[-1]), weight.t(),
                           alpha=scaling).view(result.shape)
    out = _FrozenLora.apply(x.reshape(-1, x.shape[-1]), base.weight, base.bias, self.lora_A[name].weight, weight,
                            scaling)
    return out.view(*x.shape[:-1], out.shape[-1])


class _FrozenLora(torch.autograd.Function):
    """`x W^T (+ bias) + scaling * (x A^T) B^T` over a frozen W, as one autograd node, in x's dtype.

    Why by hand: through autograd's own graph the layer is ~8 nodes (two matmuls, the low-rank product added
    onto the base output, views, the casts of A and B), and x's gradient arrives in two parts (through W and
    through A) that the engine sums in one more pass over [tokens x in]. Here the base output is made in 2-D
    and B's product added into it in place (`addmm_`), and in backward the A part is added in place into the
    W part (`addmm_` again): no copy of the output, no separate sum. The same products as peft's forward,
    in the dtype autocast would have used (x arrives cast; A, B and a W not yet stored in it are cast here).
    """

    @staticmethod
    def forward(ctx, x, w, bias, a, b, scaling):
        dtype = x.dtype
        w_, a_, b_ = w.to(dtype), a.to(dtype), b.to(dtype)
        out = F.linear(x, w_, None if bias is None else bias.to(dtype))
        low = x @ a_.t()
        out.addmm_(low, b_.t(), alpha=scaling)
        ctx.save_for_backward(x, w_, a_, b_, low)
        ctx.scaling, ctx.dtypes = scaling, (a.dtype, b.dtype)
        return out

    @staticmethod
    def backward(ctx, grad):
        x, w, a, b, low = ctx.saved_tensors
        grad = grad.to(x.dtype)
        grad_low = (grad @ b).mul_(ctx.scaling)
        grad_x = grad_a = grad_b = None
        if ctx.needs_input_grad[0]:
            grad_x = (grad @ w).addmm_(grad_low, a)
        if ctx.needs_input_grad[3]:
            grad_a = (grad_low.t() @ x).to(ctx.dtypes[0])
        if ctx.needs_input_grad[4]:
            grad_b = (low.t() @ grad).mul_(ctx.scaling).t().to(ctx.dtypes[1])
        return grad_x, None, None, grad_a, grad_b, None

def _hooked(module: nn.Module) -> bool:
    """Whether calling the module runs more than its forward (hooks of its own or global ones)."""
    from torch.nn.modules import module as nn_module

    return bool(module._forward_hooks or module._forward_pre_hooks or "forward" in module.__dict__
                or nn_module._global_forward_hooks or nn_module._global_forward_pre_hooks)


class FastLora:
    """Context manager: plain LoRA layers of `model` use `_forward` inside it."""

    def __init__(self, model: nn.Module, enabled: bool = True):
        self.layers = [m for m in model.modules() if _plain(m)] if enabled else []

    def __enter__(self):
        for layer in self.layers:
            layer.forward = types.MethodType(_forward, layer)
        return self

    def __exit__(self, *exc):
        for layer in self.layers:
            layer.__dict__.pop("forward", None)
        _LAST[:] = [None, None, None]
        return False

"""Blocked causal attention (bf16 on CPU): equal to fp32 attention within bf16 tolerance, gradients included,
for every head layout and block split; strictly causal; used only where it is meant to be."""
import pytest
import torch
import torch.nn.functional as F

from tunelab.models import blocked_attention
from tunelab.models.blocked_attention import causal_attention, usable

BF16_EPS = 2.0 ** -8  # bf16 keeps 8 significant bits: one rounding is at most this, relative
# q/k/v, scores, probabilities and the output are each rounded to bf16 once; their errors partly cancel
# (measured at most 1.5 eps over these tests), so three roundings' worth is the bound
TOLERANCE = 3 * BF16_EPS


def _rel(got, expected):
    return ((got.float() - expected).norm() / expected.norm()).item()


def _inputs(batch, heads, kv_heads, tokens, dim, seed, dtype=torch.float32):
    """q/k/v as the decoder hands them over: [B, H, T, D] views of [B, T, H, D] tensors."""
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(batch, tokens, h, dim, generator=g).to(dtype).transpose(1, 2).requires_grad_()
            for h in (heads, kv_heads, kv_heads)]


def _reference(q, k, v, grad_out):
    leaves = [x.detach().float().requires_grad_() for x in (q, k, v)]
    out = F.scaled_dot_product_attention(*leaves, is_causal=True, enable_gqa=q.shape[1] != k.shape[1])
    out.backward(grad_out.float())
    return out, [x.grad for x in leaves]


@pytest.mark.parametrize("heads,kv_heads", [(4, 4), (6, 2), (4, 1)])
@pytest.mark.parametrize("block", [8, 16, 64])
def test_equal_to_fp32_attention_with_gradients_under_autocast(heads, kv_heads, block, monkeypatch):
    """fp32 q/k/v under bf16 autocast (what RoPE hands over): output in bf16, gradients back in fp32, all
    within bf16 tolerance of fp32 attention. 37 tokens: several blocks and a ragged last one."""
    monkeypatch.setattr(blocked_attention, "BLOCK", block)
    q, k, v = _inputs(2, heads, kv_heads, 37, 16, seed=heads + block)
    grad_out = torch.randn(2, heads, 37, 16)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert usable(q, 0.0)
        out = causal_attention(q, k, v, None)
    out.backward(grad_out.bfloat16())
    expected, grads = _reference(q, k, v, grad_out)
    assert out.dtype == torch.bfloat16 and out.shape == expected.shape
    assert _rel(out, expected) < TOLERANCE
    for leaf, grad in zip((q, k, v), grads):
        assert leaf.grad.dtype == torch.float32 and leaf.grad.shape == leaf.shape
        assert _rel(leaf.grad, grad) < TOLERANCE


def test_bf16_inputs_without_autocast_and_an_explicit_scale(monkeypatch):
    monkeypatch.setattr(blocked_attention, "BLOCK", 16)
    q, k, v = _inputs(1, 6, 3, 50, 8, seed=3, dtype=torch.bfloat16)
    grad_out = torch.randn(1, 6, 50, 8).bfloat16()
    assert usable(q, 0.0)
    out = causal_attention(q, k, v, 0.2)
    out.backward(grad_out)
    leaves = [x.detach().float().requires_grad_() for x in (q, k, v)]
    expected = F.scaled_dot_product_attention(*leaves, is_causal=True, scale=0.2, enable_gqa=True)
    expected.backward(grad_out.float())
    assert _rel(out, expected) < TOLERANCE
    for leaf, ref in zip((q, k, v), leaves):
        assert leaf.grad.dtype == torch.bfloat16 and _rel(leaf.grad, ref.grad) < TOLERANCE


def test_output_is_laid_out_for_the_decoders_reshape():
    q, k, v = _inputs(2, 4, 2, 20, 8, seed=1, dtype=torch.bfloat16)
    out = causal_attention(q, k, v, None)
    assert out.transpose(1, 2).is_contiguous()


def test_later_keys_never_reach_earlier_queries(monkeypatch):
    """Changing the keys and values of the last positions leaves every earlier output bitwise equal, and
    their gradients with respect to the earlier outputs are exactly zero."""
    monkeypatch.setattr(blocked_attention, "BLOCK", 8)
    q, k, v = _inputs(1, 4, 2, 30, 8, seed=5, dtype=torch.bfloat16)
    base = causal_attention(q, k, v, None)
    k2, v2 = k.detach().clone(), v.detach().clone()
    k2[:, :, 21:] += 3.0
    v2[:, :, 21:] -= 2.0
    changed = causal_attention(q, k2, v2, None)
    assert torch.equal(base[:, :, :21], changed[:, :, :21])
    assert not torch.equal(base[:, :, 21:], changed[:, :, 21:])
    grad_out = torch.zeros_like(base)
    grad_out[:, :, :21] = 1.0
    base.backward(grad_out)
    assert k.grad[:, :, 21:].abs().max().item() == 0 and v.grad[:, :, 21:].abs().max().item() == 0


def test_used_only_for_bf16_on_cpu_without_dropout_up_to_max_tokens():
    q = torch.randn(1, 4, 10, 8)
    assert not usable(q, 0.0)  # fp32 compute
    assert usable(q.bfloat16(), 0.0)
    assert not usable(q.bfloat16(), 0.1)  # dropout: SDPA
    assert not usable(q.half(), 0.0)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert usable(q, 0.0)
        assert not usable(torch.randn(1, 4, blocked_attention.MAX_TOKENS + 1, 8), 0.0)
    assert not usable(torch.empty(1, 4, 10, 8, dtype=torch.bfloat16, device="meta"), 0.0)

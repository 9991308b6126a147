"""Rotary tables in the autocast dtype while a bf16 run trains: the rotation runs in bf16, as in a model loaded
in bf16, the LoRA gradients stay within bf16 rounding of the fp32 path, and nothing changes outside autocast."""
import pytest
import torch
from transformers import (GemmaConfig, GemmaForCausalLM, LlamaConfig, LlamaForCausalLM, Phi3Config,
                          Phi3ForCausalLM, Qwen2Config, Qwen2ForCausalLM)

from lora_helpers import run, with_lora
from tunelab.training.rotary import RotaryInComputeDtype, rotary_modules

BF16_EPS = torch.finfo(torch.bfloat16).eps  # 2**-7
SMALL = dict(vocab_size=256, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
             num_key_value_heads=2, initializer_range=0.02)
ARCHITECTURES = {
    "llama": lambda: LlamaForCausalLM(LlamaConfig(**SMALL)),
    "qwen2": lambda: Qwen2ForCausalLM(Qwen2Config(**SMALL)),
    "gemma": lambda: GemmaForCausalLM(GemmaConfig(**SMALL, head_dim=16)),
    "phi3": lambda: Phi3ForCausalLM(Phi3Config(**SMALL, partial_rotary_factor=0.5, pad_token_id=0)),
}


def _lora(build):
    torch.manual_seed(0)
    return with_lora(build())


def _grads(model, ids, autocast: bool):
    out, grads = run(model, ids, autocast)
    return out.loss.item(), grads


def test_the_tables_leave_in_bf16_under_autocast_only_and_the_hooks_go_with_the_block():
    model = LlamaForCausalLM(LlamaConfig(**SMALL))
    (rotary,) = rotary_modules(model)
    x, positions = torch.randn(1, 5, 64), torch.arange(5)[None]
    with RotaryInComputeDtype(model):
        assert all(t.dtype == torch.float32 for t in rotary(x, positions))  # no autocast: as it was
        with torch.autocast("cpu", dtype=torch.bfloat16):
            assert all(t.dtype == torch.bfloat16 for t in rotary(x, positions))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert all(t.dtype == torch.float32 for t in rotary(x, positions))
    assert not rotary._forward_hooks


@pytest.mark.parametrize("arch", sorted(ARCHITECTURES))
def test_lora_gradients_stay_within_bf16_rounding_of_the_fp32_path(arch):
    model = _lora(ARCHITECTURES[arch])
    assert rotary_modules(model)
    ids = torch.randint(0, 256, (2, 24))
    fp32_loss, fp32 = _grads(model, ids, autocast=False)
    _, autocast = _grads(model, ids, autocast=True)
    with RotaryInComputeDtype(model):
        loss, rotated = _grads(model, ids, autocast=True)
    assert loss == pytest.approx(fp32_loss, rel=BF16_EPS)
    changed = 0
    for name, grad in fp32.items():
        changed += not torch.equal(rotated[name], autocast[name])
        # the same bound as bf16-stored frozen weights against fp32 (tests/training/test_frozen.py): within 4 eps,
        # and no further from fp32 than plain autocast is, give or take one eps
        error = (rotated[name] - grad).norm() / grad.norm()
        plain = (autocast[name] - grad).norm() / grad.norm()
        assert error <= 4 * BF16_EPS and error <= plain + BF16_EPS, (name, error.item(), plain.item())
    assert changed  # the rotation really ran in bf16

"""The lean LoRA forward used while training: the same outputs and LoRA gradients as peft's forward (fp32: to
float rounding; bf16 autocast: within bf16 rounding, measured against the fp32 path exactly as peft's own bf16
path is), one input cast shared by the layers reading one tensor, and peft's forward for every case it leaves out."""
import pytest
import torch
from peft import LoraConfig, get_peft_model
from transformers import LlamaConfig, LlamaForCausalLM

from lora_helpers import run, with_lora
from tunelab.training import fast_lora
from tunelab.training.fast_lora import FastLora

BF16_EPS = torch.finfo(torch.bfloat16).eps


def _model(**lora):
    torch.manual_seed(0)
    return with_lora(LlamaForCausalLM(LlamaConfig(vocab_size=256, hidden_size=64, intermediate_size=128,
                                                  num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                                                  initializer_range=0.02)), **lora)


def _run(model, ids, autocast: bool):
    out, grads = run(model, ids, autocast)
    return out.logits.float().detach(), grads


def _relative(a, b):
    return ((a - b).norm() / b.norm()).item()


def test_fp32_outputs_and_gradients_equal_pefts_to_float_rounding():
    model, ids = _model(), torch.randint(0, 256, (2, 24))
    logits, grads = _run(model, ids, autocast=False)
    with FastLora(model) as fast:
        assert len(fast.layers) == 14  # 7 projections x 2 layers
        fast_logits, fast_grads = _run(model, ids, autocast=False)
    assert torch.allclose(fast_logits, logits, atol=1e-5, rtol=1e-5)
    for name, grad in grads.items():
        assert _relative(fast_grads[name], grad) < 1e-5, name


def test_bf16_gradients_are_as_close_to_fp32_as_pefts_own_bf16_path():
    model, ids = _model(), torch.randint(0, 256, (2, 24))
    _, fp32 = _run(model, ids, autocast=False)
    _, peft_bf16 = _run(model, ids, autocast=True)
    with FastLora(model):
        _, fast_bf16 = _run(model, ids, autocast=True)
    for name, grad in fp32.items():
        # the same bf16 operands as autocast's; only a shared cast's gradients are summed in bf16 (one more
        # rounding of a few eps) and the adapter's product is accumulated in the matmul (one rounding fewer)
        assert _relative(fast_bf16[name], grad) <= 4 * BF16_EPS, name
        assert _relative(fast_bf16[name], grad) <= 2 * _relative(peft_bf16[name], grad) + BF16_EPS, name


def test_one_cast_is_shared_by_the_layers_reading_one_tensor_and_redone_after_a_change():
    x = torch.randn(3, 8)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        first = fast_lora._cast_once(x)
        assert first.dtype == torch.bfloat16 and fast_lora._cast_once(x) is first
        x.add_(1.0)  # changed in place: a new cast
        again = fast_lora._cast_once(x)
        assert again is not first and torch.equal(again, x.to(torch.bfloat16))
    assert fast_lora._cast_once(x) is x  # no autocast, no cast


@pytest.mark.parametrize("lora", [{"lora_dropout": 0.1}, {"use_dora": True}, {"lora_bias": True}])
def test_layers_the_lean_forward_leaves_out_keep_pefts(lora):
    assert FastLora(_model(**lora)).layers == []


def test_a_disabled_adapter_and_the_end_of_training_go_back_to_peft():
    model, ids = _model(), torch.randint(0, 256, (1, 12))
    with torch.no_grad():
        with model.disable_adapter():
            base = model(input_ids=ids).logits
        with FastLora(model) as fast, model.disable_adapter():
            assert torch.equal(model(input_ids=ids).logits, base)
    assert all("forward" not in layer.__dict__ for layer in fast.layers)


def test_a_hooked_base_layer_is_still_called_and_gives_the_same_outputs():
    """The lean forward computes the base output itself (so B's product is added in place); a base layer with a
    hook of its own (accelerate's device hooks, a user's probe) is called as a module instead."""
    model, ids = _model(), torch.randint(0, 256, (2, 24))
    logits, grads = _run(model, ids, autocast=False)
    seen = []
    layer = model.base_model.model.model.layers[0].mlp.up_proj
    handle = layer.base_layer.register_forward_hook(lambda module, args, out: seen.append(out.shape))
    try:
        with FastLora(model):
            fast_logits, fast_grads = _run(model, ids, autocast=False)
    finally:
        handle.remove()
    assert seen == [torch.Size([2, 24, 128])]
    assert torch.allclose(fast_logits, logits, atol=1e-5, rtol=1e-5)
    for name, grad in grads.items():
        assert _relative(fast_grads[name], grad) < 1e-5, name


def test_a_base_that_trains_gets_its_gradient_through_autograds_own_graph():
    """The one-node layer is for a frozen base; a trainable base bias (lora_bias, BitFit-style runs) keeps the
    module call, so its gradient is there and equals peft's."""
    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(vocab_size=256, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                                         num_attention_heads=4, num_key_value_heads=2, mlp_bias=True))
    model = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules="all-linear", lora_dropout=0.0))
    ids = torch.randint(0, 256, (2, 16))
    bias = model.base_model.model.model.layers[0].mlp.up_proj.base_layer.bias
    bias.requires_grad_(True)
    _, grads = _run(model, ids, autocast=False)
    with FastLora(model) as fast:
        assert model.base_model.model.model.layers[0].mlp.up_proj in fast.layers
        _, fast_grads = _run(model, ids, autocast=False)
    name = next(n for n, p in model.named_parameters() if p is bias)
    assert name in fast_grads and _relative(fast_grads[name], grads[name]) < 1e-5

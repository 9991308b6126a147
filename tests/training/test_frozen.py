"""Frozen Linear weights stored in the compute dtype while a bf16 run trains: the same gradients autocast
would give, close to the fp32 path within what bf16 rounding allows, and the original weights afterwards."""
import pytest
import torch
from peft import LoraConfig, get_peft_model
from transformers import AutoModelForCausalLM, TrainingArguments

from tunelab.config import load_config
from tunelab.train import train
from tunelab.training.frozen import FrozenInDtype, frozen_linear_weights, run_compute_dtype

BF16_EPS = torch.finfo(torch.bfloat16).eps  # 2**-7


def _lora_model(model_dir, seed=0):
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    with torch.no_grad():  # values bf16 cannot hold, so rounding really happens
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 1e-3)
    model = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules="all-linear", lora_dropout=0.0))
    with torch.no_grad():  # B starts at zero: give it values so A's gradient is not zero too
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.02)
    return model


def _lora_grads(model, ids, autocast: bool) -> dict[str, torch.Tensor]:
    model.zero_grad()
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
        loss = model(input_ids=ids, labels=ids).loss
    loss.backward()
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}


def _state(model):
    return {n: p.detach().clone() for n, p in model.named_parameters()}


def test_only_frozen_linear_weights_change_dtype_and_all_come_back_bit_for_bit(tiny_model_dir):
    model = _lora_model(tiny_model_dir)
    before = _state(model)
    frozen = FrozenInDtype(model, torch.bfloat16)
    with frozen:
        with frozen:  # evaluate() inside train(): the inner block changes nothing
            pass
        dtypes = {n: p.dtype for n, p in model.named_parameters()}
        assert dtypes["base_model.model.model.layers.0.self_attn.q_proj.base_layer.weight"] == torch.bfloat16
        assert all(dtype == torch.float32 for n, dtype in dtypes.items() if "lora_" in n)
        assert dtypes["base_model.model.model.embed_tokens.weight"] == torch.float32  # feeds the residual stream
        assert all(dtype == torch.float32 for n, dtype in dtypes.items() if "norm" in n)
        with frozen.original():  # what a checkpoint written mid-run sees
            assert all(torch.equal(p, before[n]) and p.dtype == torch.float32 for n, p in model.named_parameters())
        assert dtypes == {n: p.dtype for n, p in model.named_parameters()}
    assert all(torch.equal(p, before[n]) and p.dtype == torch.float32 for n, p in model.named_parameters())


def test_a_base_bf16_can_hold_keeps_no_fp32_copy(tiny_model_dir):
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.bfloat16).float(),
                           LoraConfig(r=4, target_modules="all-linear"))
    frozen = FrozenInDtype(model, torch.bfloat16)
    with frozen:
        assert frozen.originals and all(original is None for _, original in frozen.originals)
    assert all(p.dtype == torch.float32 for p in model.parameters())


def test_lora_gradients_equal_autocasts_and_the_fp32_path_within_bf16_rounding():
    """A model initialised like a real one (std 0.02): the shared tiny model's std 0.5 saturates its softmax,
    which amplifies any rounding ~20x and would say nothing about storing weights in bf16."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(vocab_size=256, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                                         num_attention_heads=4, num_key_value_heads=2, initializer_range=0.02))
    model = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules="all-linear", lora_dropout=0.0))
    with torch.no_grad():  # B starts at zero: give it values so A's gradient is not zero too
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.02)
    ids = torch.randint(0, 256, (2, 24))
    fp32 = _lora_grads(model, ids, autocast=False)
    autocast = _lora_grads(model, ids, autocast=True)
    with FrozenInDtype(model, torch.bfloat16) as frozen:
        assert any(original is not None for _, original in frozen.originals)  # rounding really happens
        stored = _lora_grads(model, ids, autocast=True)
    for name, grad in fp32.items():
        # autocast rounds the fp32 weight to bf16 before every matmul: storing it rounded is the same arithmetic
        assert torch.equal(stored[name], autocast[name]), name
        # against fp32: each bf16 operand is off by <= eps/2, so a product by ~eps (relative, random-signed
        # errors over a sum); through two layers' forward and backward a few such errors add: within 4 eps
        error = (stored[name] - grad).norm() / grad.norm()
        assert 0 < error <= 4 * BF16_EPS, (name, error.item())


def test_which_dtype_a_run_stores_in():
    args = dict(output_dir="/tmp/unused", use_cpu=True, report_to=[])
    assert run_compute_dtype(TrainingArguments(bf16=True, **args)) == torch.bfloat16
    assert run_compute_dtype(TrainingArguments(**args)) is None
    assert not FrozenInDtype(torch.nn.Linear(2, 2), None).active


def test_methods_that_read_base_weights_outside_matmuls_opt_out():
    """DoRA divides by the base weight's norm; the LoRA family otherwise only multiplies by it."""
    from tunelab.methods import METHODS

    assert not METHODS["dora"].frozen_in_compute_dtype
    assert all(METHODS[name].frozen_in_compute_dtype for name in ("lora", "rslora", "pissa", "qlora", "freeze"))


def test_tied_head_and_trainable_layers_are_left_alone(tiny_model_dir):
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    model.get_output_embeddings().weight = model.get_input_embeddings().weight
    for p in model.parameters():
        p.requires_grad_(False)
    model.model.layers[0].mlp.up_proj.weight.requires_grad_(True)
    found = {id(w) for w in frozen_linear_weights(model)}
    assert id(model.lm_head.weight) not in found and id(model.model.layers[0].mlp.up_proj.weight) not in found
    assert id(model.model.layers[1].mlp.up_proj.weight) in found


@pytest.mark.parametrize("method, precision, active", [
    ("lora", "bf16", True), ("dora", "bf16", False), ("lora", "fp32", False)])
def test_the_trainer_stores_frozen_weights_in_bf16_only_where_allowed(method, precision, active, tiny_model_dir,
                                                                       chat_file, write_config):
    from tunelab.train import prepare

    config = load_config(write_config(tiny_model_dir, chat_file, f"{method}-{precision}", method={"name": method},
                                      train={"max_steps": 1, "precision": precision}))
    assert prepare(config, config.output.dir).trainer.frozen.active == active


def test_freeze_checkpoints_hold_the_frozen_layers_as_given(tiny_model_dir, chat_file, write_config):
    """freeze saves the whole model: its frozen block must be written with the run's original fp32 values,
    not the bf16 copies training used (a random fp32 base is not representable in bf16, so they differ)."""
    from safetensors.torch import load_file

    config = load_config(write_config(tiny_model_dir, chat_file, "freeze", method={"name": "freeze", "trainable_layers": 1},
                                      train={"max_steps": 2, "precision": "bf16", "save_steps": 1}))
    result = train(config)
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32).state_dict()
    saved = [load_file(str(p)) for p in sorted(result.run_dir.glob("checkpoint-*/model.safetensors"))]
    saved.append(load_file(str(result.run_dir / "model" / "model.safetensors")))
    assert len(saved) >= 3
    for tensors in saved:
        frozen = [k for k in tensors if ".layers.0." in k and k.endswith("proj.weight")]
        assert frozen and all(torch.equal(tensors[k], base[k]) for k in frozen)
        trained = [k for k in tensors if ".layers.1." in k and k.endswith("proj.weight")]
        assert trained and not all(torch.equal(tensors[k], base[k]) for k in trained)

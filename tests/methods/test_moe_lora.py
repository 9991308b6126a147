"""moe-lora: a mixture of LoRA experts routed per token. What must hold: one expert with top_k 1 is
exactly LoRA, the dense computation is the per-token top-k mixture it claims to be, the router learns
(task loss and balance loss), tokens spread over experts, and the usual adapter contract (step 0 and
disable give the base, save -> load gives the trained model, merging is refused)."""
import pytest
import torch
from transformers import AutoModelForCausalLM

from tunelab.config import load_config
from tunelab.config.method import MethodConfig
from tunelab.errors import TunelabError
from tunelab.methods import get_method
from tunelab.methods.moe_lora import MoeLoraLinear, MoeLoraSettings, moe_layers, routing_histogram
from tunelab.models.attention import packed_attention
from tunelab.train import prepare

PROBE = torch.tensor([[5, 17, 42, 8, 99, 3, 64, 21]])


def _logits(model) -> torch.Tensor:
    model.eval()
    with torch.no_grad():
        return model(input_ids=PROBE).logits



@pytest.fixture()
def trained(tiny_model_dir, chat_file, write_config, tmp_path):
    """A prepared E=4, k=2 run (dict: prepared, method, config, base logits); trains only when a test asks."""
    config = load_config(write_config(tiny_model_dir, chat_file, "moe", method={
        "name": "moe-lora", "num_experts": 4, "top_k": 2}, train={"max_steps": 4, "lr": 5e-2}))
    prepared = prepare(config, tmp_path / "out")
    base = _logits(AutoModelForCausalLM.from_pretrained(tiny_model_dir))
    return {"prepared": prepared, "method": get_method(config.method), "config": config, "base": base}


def _first_batch(prepared) -> dict:
    return next(iter(prepared.trainer.get_train_dataloader()))


@pytest.mark.parametrize("family", ["llama", "gpt2"])
def test_one_expert_with_top1_is_exactly_lora(family, request):
    """E=1, k=1: the gate is exactly 1, so the layer must compute what peft's LoRA computes with the
    same A and B (B made non-zero, else both would just be the base)."""
    from peft.tuners.lora import LoraLayer

    folder = request.getfixturevalue("tiny_model_dir" if family == "llama" else "tiny_gpt2_dir")
    settings = {"r": 4, "alpha": 8, "target_modules": "all-linear"}
    lora = get_method(MethodConfig(name="lora", **settings)).apply(AutoModelForCausalLM.from_pretrained(folder))
    moe = get_method(MethodConfig(name="moe-lora", num_experts=1, top_k=1, **settings)).apply(
        AutoModelForCausalLM.from_pretrained(folder))
    experts = moe_layers(moe)
    lora_layers = {name.removeprefix("base_model.model."): layer for name, layer in lora.named_modules()
                   if isinstance(layer, LoraLayer)}
    assert set(lora_layers) == set(experts) and experts
    torch.manual_seed(1)
    with torch.no_grad():
        for name, layer in lora_layers.items():
            layer.lora_B["default"].weight.normal_(std=0.1)
            experts[name].expert_A[0].copy_(layer.lora_A["default"].weight)
            experts[name].expert_B[0].copy_(layer.lora_B["default"].weight)
    lora_logits, moe_logits = _logits(lora), _logits(moe)
    assert not torch.allclose(lora_logits, _logits(AutoModelForCausalLM.from_pretrained(folder)), atol=1e-3)
    assert torch.allclose(moe_logits, lora_logits, atol=1e-5)


@pytest.mark.parametrize("top_k", [1, 2, 3])
def test_dense_mixture_equals_the_per_token_top_k_sum(top_k):
    """The gate-weighted dense computation against the definition, token by token: top-k experts,
    probabilities renormalised when k > 1, the raw probability when k = 1."""
    torch.manual_seed(0)
    base = torch.nn.Linear(6, 5)
    layer = MoeLoraLinear(base, MoeLoraSettings(r=2, alpha=4, dropout=0.0, num_experts=3, top_k=top_k,
                                                target_modules="all-linear"))
    with torch.no_grad():
        layer.expert_B.normal_()
    x = torch.randn(2, 4, 6)
    expected = base(x).clone()
    for b in range(2):
        for t in range(4):
            probs = layer.router(x[b, t]).softmax(-1)
            top, chosen = probs.topk(top_k)
            gates = top / top.sum() if top_k > 1 else top
            for gate, e in zip(gates, chosen):
                expected[b, t] += layer.scaling * gate * (layer.expert_B[e] @ (layer.expert_A[e] @ x[b, t]))
    assert torch.allclose(layer(x), expected, atol=1e-5)


def test_router_learns_and_tokens_spread_over_experts(trained):
    prepared, method = trained["prepared"], trained["method"]
    model, trainer = prepared.model, prepared.trainer
    assert torch.allclose(_logits(model), trained["base"], atol=1e-5), "step 0 must equal the base model"
    trainable = {name for name, p in model.named_parameters() if p.requires_grad}
    assert trainable and all(name.endswith((".router.weight", ".expert_A", ".expert_B")) for name in trainable)

    model.train()
    with packed_attention(model, prepared.packing):
        trainer.compute_loss(model, _first_batch(prepared)).backward()
    routers = [layer.router.weight.grad for layer in moe_layers(model).values()]
    assert all(grad is not None and grad.abs().sum() > 0 for grad in routers)
    model.zero_grad()

    trainer.train()
    model.train()  # now that B is not zero, the task loss alone reaches the routers through the gates
    trainer.loss_terms = []
    with packed_attention(model, prepared.packing):
        trainer.compute_loss(model, _first_batch(prepared)).backward()
    assert all(layer.router.weight.grad.abs().sum() > 0 for layer in moe_layers(model).values())

    histogram = routing_histogram(model)
    assert len(histogram) == 14  # 2 blocks x (q, k, v, o, gate, up, down)
    assert all(sum(count > 0 for count in counts) > 1 for counts in histogram.values()), histogram
    routing = method.summary(model)["moe_routing"]
    assert routing["experts"] == 4 and routing["top_k"] == 2 and len(routing["counts"]) == 4
    assert routing["counts"] == [sum(c[e] for c in histogram.values()) for e in range(4)]
    assert sum(routing["share"]) == pytest.approx(1.0)


def test_balance_loss_is_positive_and_added_to_the_loss(trained):
    prepared, config = trained["prepared"], trained["config"]
    model, trainer = prepared.model, prepared.trainer
    batch = _first_batch(prepared)
    (term,) = prepared.method.loss_terms(model)
    model.train()
    with packed_attention(model, prepared.packing), torch.no_grad():
        trainer.loss_terms, terms = [], trainer.loss_terms
        plain = trainer.compute_loss(model, batch)
        layer_losses = [layer.aux_loss for layer in moe_layers(model).values()]
        value = term(model, batch, None)
        trainer.loss_terms = terms
        with_balance = trainer.compute_loss(model, batch)
    assert all(loss is not None for loss in layer_losses)
    assert torch.isfinite(value) and value > 0
    assert value == pytest.approx(config.method.router_aux_weight * torch.stack(layer_losses).mean().item())
    assert with_balance.item() == pytest.approx(plain.item() + value.item(), rel=1e-6)
    assert with_balance.item() != plain.item()
    model.eval()
    with torch.no_grad():
        model(input_ids=PROBE)
    assert term(model, None, None).item() == 0.0, "an evaluation forward adds no balance loss"


def test_disable_save_load_and_merge(trained, tiny_model_dir, tiny_gpt2_dir, tmp_path):
    prepared, method = trained["prepared"], trained["method"]
    model = prepared.model
    prepared.trainer.train()
    after = _logits(model)
    assert not torch.allclose(after, trained["base"], atol=1e-4)
    with method.disable(model):
        assert torch.allclose(_logits(model), trained["base"], atol=1e-6)
    assert torch.equal(_logits(model), after)

    saved = tmp_path / "saved"
    method.save(model, saved)
    assert sorted(p.name for p in saved.iterdir()) == ["moe_lora.json", "moe_lora.safetensors"]
    reloaded = method.load(AutoModelForCausalLM.from_pretrained(tiny_model_dir), saved)
    assert torch.equal(_logits(reloaded), after)
    assert not any(p.requires_grad for p in reloaded.parameters())

    with pytest.raises(TunelabError, match="routing|depends on the input"):
        method.merge(model)
    with pytest.raises(TunelabError, match=f"{saved}: the saved moe-lora experts do not fit"):
        method.load(AutoModelForCausalLM.from_pretrained(tiny_gpt2_dir), saved)


def test_loads_from_a_trainer_checkpoint_and_generates_with_a_cache(trained, tiny_model_dir, tmp_path):
    """A checkpoint holds the Trainer's model.safetensors next to ours; either one restores the experts."""
    prepared, method = trained["prepared"], trained["method"]
    prepared.trainer.train()
    after = _logits(prepared.model)
    checkpoint = tmp_path / "checkpoint"
    prepared.trainer.save_model(str(checkpoint))
    assert {"model.safetensors", "moe_lora.safetensors", "moe_lora.json"} <= {p.name for p in checkpoint.iterdir()}
    (checkpoint / "moe_lora.safetensors").unlink()
    (checkpoint / "moe_lora.json").unlink()
    reloaded = method.load(AutoModelForCausalLM.from_pretrained(tiny_model_dir), checkpoint, trainable=True)
    assert torch.equal(_logits(reloaded), after)
    assert any(p.requires_grad for p in reloaded.parameters())

    generate = dict(max_new_tokens=6, do_sample=False, pad_token_id=0)
    cached = reloaded.generate(PROBE, use_cache=True, **generate)
    assert torch.equal(cached, reloaded.generate(PROBE, use_cache=False, **generate))


def test_checkpointed_blocks_count_each_token_once(tiny_model_dir):
    """With gradient checkpointing a block's forward runs again inside backward; that re-run must not
    count its tokens twice, nor leave a balance loss behind."""
    model = get_method(MethodConfig(name="moe-lora", r=4, alpha=8)).apply(
        AutoModelForCausalLM.from_pretrained(tiny_model_dir))
    (term,) = get_method(MethodConfig(name="moe-lora")).loss_terms(model)
    model.gradient_checkpointing_enable()
    model.train()
    out = model(input_ids=PROBE, labels=PROBE)
    (out.loss + term(model, None, out)).backward()
    layers = moe_layers(model).values()
    assert all(layer.routing_counts.sum().item() == PROBE.numel() * 2 for layer in layers)
    assert all(layer.aux_loss is None for layer in layers)

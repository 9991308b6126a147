"""One matrix over every registered method: what trains, what stays bit-identical, save -> load and
merge reproduce the logits, and step 0 equals the base model (all methods here start at identity)."""
import pytest
import torch
from transformers import AutoModelForCausalLM

from tunelab.config import load_config
from tunelab.config.model import ModelConfig
from tunelab.methods import METHODS, get_method
from tunelab.models import ResolvedModel
from tunelab.train import prepare

PEFT_WITHOUT_CONV1D = {"loha", "lokr"}
PROBE = torch.tensor([[5, 17, 42, 8, 99, 3, 64, 21]])


def _logits(model):
    model.eval()
    with torch.no_grad():
        return model(input_ids=PROBE).logits


def _close(a, b, rel):
    """Max difference within `rel` of the largest logit (the tiny model's weights are large)."""
    return (a - b).abs().max().item() <= rel * b.abs().max().item()



@pytest.fixture()
def base_logits(tiny_model_dir):
    return _logits(AutoModelForCausalLM.from_pretrained(tiny_model_dir))


@pytest.mark.parametrize("name", sorted(METHODS))
@pytest.mark.parametrize("family", ["llama", "gpt2"])
def test_method_trains_saves_loads_and_merges(name, family, request, chat_file, write_config, tmp_path):
    tiny_model_dir = request.getfixturevalue("tiny_model_dir" if family == "llama" else "tiny_gpt2_dir")
    if family == "gpt2" and name in PEFT_WITHOUT_CONV1D:
        pytest.skip("peft has no LoHa/LoKr for GPT-2's Conv1D layers (test_unsupported_layer_is_a_clear_error)")
    config = load_config(write_config(tiny_model_dir, chat_file, name, method={"name": name, "trainable_layers": 1},
                                      train={"max_steps": 2, "lr": 5e-2}))
    method = get_method(config.method)
    local = ResolvedModel(str(tiny_model_dir), str(tiny_model_dir), "hf_dir")
    base_logits = _logits(method.load_base(local, ModelConfig(path=str(tiny_model_dir))))  # QLoRA's is quantized
    prepared = prepare(config, tmp_path / "out")
    model = prepared.model
    if method.starts_as_base:
        assert torch.allclose(_logits(model), base_logits, atol=1e-5), "step 0 must equal the base model"
    before = {k: p.detach().clone() for k, p in model.named_parameters()}
    trainable = {k for k, p in model.named_parameters() if p.requires_grad}
    assert 0 < len(trainable) and (name == "full" or len(trainable) < len(before))

    prepared.trainer.train()
    assert all(torch.isfinite(torch.tensor(h["loss"])) for h in prepared.trainer.state.log_history if "loss" in h)
    after = dict(model.named_parameters())
    assert all(torch.equal(before[k], after[k]) for k in before if k not in trainable), "a frozen weight moved"
    assert any(not torch.equal(before[k], after[k]) for k in trainable), "nothing trained"

    trained = _logits(model)
    saved = tmp_path / "saved"
    method.save(model, saved)
    if method.is_adapter:
        reloaded = method.load(method.load_base(local, ModelConfig(path=str(tiny_model_dir))), saved)
    else:
        reloaded = AutoModelForCausalLM.from_pretrained(saved)
    # PiSSA's saved adapter is converted to a plain LoRA of rank 2r: equal up to float rounding of that maths.
    assert _close(_logits(reloaded), trained, rel=1e-4 if name == "pissa" else 1e-6)
    if method.mergeable:
        assert torch.allclose(_logits(method.merge(model)), trained, atol=1e-4)


def test_freeze_trains_only_the_last_blocks_and_named_modules(tiny_model_dir, chat_file, write_config, tmp_path):
    config = load_config(write_config(tiny_model_dir, chat_file, "fz", method={
        "name": "freeze", "trainable_layers": 1, "trainable_modules": ["norm"]}))
    model = prepare(config, tmp_path).model
    trainable = sorted(k for k, p in model.named_parameters() if p.requires_grad)
    assert trainable and all(k.startswith("model.layers.1.") or k == "model.norm.weight" for k in trainable)
    assert "model.norm.weight" in trainable


@pytest.mark.parametrize("method, message", [
    ({"name": "freeze", "trainable_layers": 9}, "method.trainable_layers: 9 is more than the model's 2 blocks"),
    ({"name": "freeze", "trainable_modules": ["nope"]}, "method.trainable_modules: no module named 'nope'"),
])
def test_freeze_errors_name_the_key(tiny_model_dir, chat_file, write_config, tmp_path, method, message):
    from tunelab.errors import TunelabError

    config = load_config(write_config(tiny_model_dir, chat_file, "bad", method=method))
    with pytest.raises(TunelabError, match=message):
        prepare(config, tmp_path)


@pytest.mark.parametrize("name", sorted(METHODS))
def test_every_method_run_reloads_and_generates(name, tiny_model_dir, chat_file, write_config):
    from tunelab.runs import load_any
    from tunelab.serve import ChatEngine, GenerationSettings
    from tunelab.train import train

    config = load_config(write_config(tiny_model_dir, chat_file, f"run-{name}",
                                      method={"name": name, "trainable_layers": 1, "num_virtual_tokens": 4}))
    result = train(config)
    assert 0 < result.summary["trainable_params"] <= result.summary["total_params"]
    engine = ChatEngine(load_any(str(result.run_dir)))
    answers = engine.generate([[{"role": "user", "content": "What is your name?"}]], GenerationSettings(max_new_tokens=4))
    assert len(answers) == 1 and isinstance(answers[0], str)


def test_loraplus_gives_b_matrices_their_own_learning_rate(tiny_model_dir, chat_file, write_config, tmp_path):
    config = load_config(write_config(tiny_model_dir, chat_file, "lp", method={"name": "loraplus", "loraplus_ratio": 8},
                                      train={"lr": 1e-3}))
    trainer = prepare(config, tmp_path).trainer
    optimizer = trainer.create_optimizer()
    names = {id(p): n for n, p in trainer.model.named_parameters()}
    by_kind: dict[str, set] = {}
    for group in optimizer.param_groups:
        for param in group["params"]:
            kind = "B" if ".lora_B." in names[id(param)] else "other"
            by_kind.setdefault(kind, set()).add(round(group["lr"], 8))
    assert by_kind == {"B": {0.008}, "other": {0.001}}


def test_bitfit_adds_zero_biases_and_switches_back_to_the_base(tiny_model_dir, chat_file, write_config, tmp_path,
                                                               base_logits):
    config = load_config(write_config(tiny_model_dir, chat_file, "bf", method={"name": "bitfit"},
                                      train={"max_steps": 2, "lr": 5e-2}))
    prepared = prepare(config, tmp_path)
    model, method = prepared.model, get_method(config.method)
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable and all(n.endswith(".bias") for n in trainable)
    prepared.trainer.train()
    trained = _logits(model)
    assert not torch.allclose(trained, base_logits, atol=1e-4)
    with method.disable(model):
        assert torch.allclose(_logits(model), base_logits, atol=1e-6)
    assert torch.equal(_logits(model), trained)
    method.save(model, tmp_path / "saved")
    assert [p.name for p in (tmp_path / "saved").iterdir()] == ["bitfit.safetensors"]


def test_pissa_checkpoints_hold_the_converted_adapter(tiny_model_dir, chat_file, write_config):
    """Saved PiSSA adapters, checkpoints included, are plain LoRA against the original base (other tools
    can load them without redoing the SVD on the base) and give the trained logits."""
    import json

    from tunelab.runs import load_any
    from tunelab.train import train

    config = load_config(write_config(tiny_model_dir, chat_file, "pissa-ckpt", method={"name": "pissa"},
                                      train={"max_steps": 2, "lr": 5e-2}))
    result = train(config)
    final = _logits(load_any(str(result.run_dir)).model)
    checkpoint = _logits(load_any(str(result.run_dir / "checkpoint-2")).model)
    assert _close(checkpoint, final, rel=1e-5)
    for folder in (result.run_dir / "model", result.run_dir / "checkpoint-2"):
        saved = json.loads((folder / "adapter_config.json").read_text())
        assert saved["init_lora_weights"] is True and saved["r"] == 2 * config.method.r, folder


@pytest.mark.parametrize("name", sorted(PEFT_WITHOUT_CONV1D))
def test_unsupported_layer_is_a_clear_error(name, tiny_gpt2_dir, chat_file, write_config, tmp_path):
    from tunelab.errors import TunelabError

    config = load_config(write_config(tiny_gpt2_dir, chat_file, "conv1d", method={"name": name}))
    with pytest.raises(TunelabError, match=rf"method.name '{name}': peft cannot apply it to this model"):
        prepare(config, tmp_path)


@pytest.mark.parametrize("name", ["lora", "ia3", "prompt", "freeze", "bitfit"])
def test_modules_to_save_train_in_full_and_come_back_on_reload(name, tiny_model_dir, chat_file, write_config):
    """A whole extra module (here the final norm; a score head or new embeddings in practice) trains
    with the method and is part of what a reloaded run computes."""
    from tunelab.runs import load_any
    from tunelab.train import train

    config = load_config(write_config(tiny_model_dir, chat_file, f"mts-{name}", method={
        "name": name, "modules_to_save": ["norm"], "trainable_layers": 1, "num_virtual_tokens": 4},
        train={"max_steps": 2, "lr": 5e-2}))
    result = train(config)
    loaded = load_any(str(result.run_dir))
    norms = [p for n, p in loaded.model.named_parameters() if n.endswith("model.norm.weight")
             or n.endswith("model.norm.modules_to_save.default.weight")]
    assert norms and not torch.all(norms[-1] == 1.0), "the trained norm was saved and reloaded"
    method = get_method(config.method)
    with method.disable(loaded.model) if method.is_adapter else torch.no_grad():
        base_like = _logits(loaded.model)
    if method.is_adapter:  # peft swaps the saved module's original back in
        local = ResolvedModel(str(tiny_model_dir), str(tiny_model_dir), "hf_dir")
        assert torch.allclose(base_like, _logits(method.load_base(local, ModelConfig(path=str(tiny_model_dir)))),
                              atol=1e-5)


def test_modules_to_save_must_exist(tiny_model_dir, chat_file, write_config, tmp_path):
    from tunelab.errors import TunelabError

    config = load_config(write_config(tiny_model_dir, chat_file, "mts-bad", method={"modules_to_save": ["score"]}))
    with pytest.raises(TunelabError, match="method.modules_to_save: no module named 'score'"):
        prepare(config, tmp_path)


@pytest.mark.parametrize("name", ["full", "freeze"])
def test_own_weight_methods_offer_the_base_from_the_starting_values(name, tiny_model_dir, chat_file, write_config,
                                                                    tmp_path, base_logits):
    config = load_config(write_config(tiny_model_dir, chat_file, f"dis-{name}", method={"name": name,
                                      "trainable_layers": 1}, train={"max_steps": 2, "lr": 5e-2}))
    prepared = prepare(config, tmp_path)
    prepared.trainer.train()
    model, method = prepared.model, prepared.method
    trained = _logits(model)
    assert not torch.allclose(trained, base_logits, atol=1e-4)
    with method.disable(model):
        assert torch.allclose(_logits(model), base_logits, atol=1e-6)
    assert torch.equal(_logits(model), trained)
    kept = sum(v.numel() for v in model._tunelab_originals.values())
    assert kept == sum(p.numel() for p in model.parameters() if p.requires_grad)  # only what trains


def test_bitfit_merged_llama_reloads_with_its_biases(tiny_model_dir, chat_file, write_config, tmp_path):
    """Llama builds biases only when its config says so: the merged model must say so, or they are dropped."""
    config = load_config(write_config(tiny_model_dir, chat_file, "bf-merge", method={"name": "bitfit"},
                                      train={"max_steps": 2, "lr": 5e-2}))
    prepared = prepare(config, tmp_path / "run")
    prepared.trainer.train()
    trained = _logits(prepared.model)
    merged = prepared.method.merge(prepared.model)
    assert merged.config.attention_bias and merged.config.mlp_bias
    merged.save_pretrained(tmp_path / "merged")
    assert torch.allclose(_logits(AutoModelForCausalLM.from_pretrained(tmp_path / "merged")), trained, atol=1e-5)


@pytest.mark.parametrize("name", ["lora", "qlora", "bitfit", "freeze", "adapter"])
def test_merge_run_writes_a_plain_model(name, tiny_model_dir, chat_file, write_config, tmp_path):
    """merge_run: a directory plain transformers loads, computing what the run computes (or a clear refusal)."""
    from tunelab.errors import TunelabError
    from tunelab.runs import load_any
    from tunelab.runs.merge import merge_run
    from tunelab.train import train

    config = load_config(write_config(tiny_model_dir, chat_file, f"merge-{name}", method={"name": name,
                                      "trainable_layers": 1}, train={"max_steps": 2, "lr": 5e-2}))
    run_dir = train(config).run_dir
    out = tmp_path / "merged"
    if not get_method(config.method).mergeable:
        with pytest.raises(TunelabError, match="cannot be merged"):
            merge_run(run_dir, out)
        assert not out.exists()
        return
    trained = _logits(load_any(str(run_dir)).model)
    merge_run(run_dir, out)
    plain = AutoModelForCausalLM.from_pretrained(out)
    assert not (out / "adapter_config.json").exists() and (out / "tokenizer_config.json").exists()
    assert torch.allclose(_logits(plain), trained, atol=1e-4 * trained.abs().max().item())

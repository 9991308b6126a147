"""The Houlsby adapter method: identity at step 0, only adapters train, a switch back to the exact base,
a self-describing saved folder, Trainer checkpoints, the fused loss through the decoder, and a KV cache."""
import json
import re
import shutil
from types import SimpleNamespace

import pytest
import torch
from torch import nn
from transformers import AutoModelForCausalLM

from tunelab.config import load_config
from tunelab.config.method import MethodConfig
from tunelab.errors import TunelabError
from tunelab.methods import count_parameters, get_method
from tunelab.methods.adapter import ATTRIBUTE, SETTINGS, WEIGHTS
from tunelab.train import prepare

PROBE = torch.tensor([[5, 17, 42, 8, 99, 3, 64, 21]])
HIDDEN, LAYERS = 32, 2  # both tiny models


def _logits(model) -> torch.Tensor:
    model.eval()
    with torch.no_grad():
        return model(input_ids=PROBE).logits



@pytest.fixture(params=["llama", "gpt2"])
def model_dir(request):
    return request.getfixturevalue("tiny_model_dir" if request.param == "llama" else "tiny_gpt2_dir")


def _config(model_dir, chat_file, write_config, name="adapter", train=None, **method):
    return load_config(write_config(model_dir, chat_file, name, method={"name": "adapter", **method},
                                    train={"max_steps": 2, "lr": 5e-2, **(train or {})}))


def _method(**options):
    return get_method(MethodConfig(name="adapter", **options))


def _randomise_adapters(model) -> None:
    """Non-zero adapters without a training run (at init `up` is zero and the adapters do nothing)."""
    torch.manual_seed(1)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if ATTRIBUTE in name:
                parameter.normal_(0, 0.5)


@pytest.fixture()
def trained(tiny_model_dir, chat_file, write_config, tmp_path):
    """A Llama trained two steps with adapters, its method, and its trained logits."""
    config = _config(tiny_model_dir, chat_file, write_config)
    prepared = prepare(config, tmp_path / "out")
    prepared.trainer.train()
    return SimpleNamespace(model=prepared.model, method=get_method(config.method), logits=_logits(prepared.model))


def test_step_zero_is_the_base_and_only_adapters_train(model_dir, chat_file, write_config, tmp_path):
    base = AutoModelForCausalLM.from_pretrained(model_dir)
    base_names = [name for name, _ in base.named_parameters()]
    config = _config(model_dir, chat_file, write_config, adapter_size=8, adapter_activation="tanh")
    prepared = prepare(config, tmp_path)
    model = prepared.model
    assert torch.equal(_logits(model), _logits(base)), "step 0 must equal the base model exactly"
    assert [name for name, _ in model.named_parameters() if ATTRIBUTE not in name] == base_names
    size = 8
    trainable, _ = count_parameters(model)
    assert trainable == 2 * LAYERS * (2 * HIDDEN * size + size + HIDDEN)
    assert all(ATTRIBUTE in name for name, p in model.named_parameters() if p.requires_grad)
    assert prepared.packing and prepared.trainer.fused is not None, "the run must exercise packing and the fused loss"


def test_training_moves_the_logits_and_disable_gives_the_base_back(trained, tiny_model_dir):
    base = _logits(AutoModelForCausalLM.from_pretrained(tiny_model_dir))
    assert not torch.allclose(trained.logits, base, atol=1e-4)
    with trained.method.disable(trained.model):
        assert torch.allclose(_logits(trained.model), base, atol=1e-6)
    assert torch.equal(_logits(trained.model), trained.logits)
    with pytest.raises(RuntimeError, match="inside"):
        with trained.method.disable(trained.model):
            raise RuntimeError("inside")
    assert torch.equal(_logits(trained.model), trained.logits), "the switch must come back after an exception"


def test_saved_folder_holds_only_the_adapter_and_reloads(trained, tiny_model_dir, tmp_path):
    saved = tmp_path / "saved"
    trained.method.save(trained.model, saved)
    assert sorted(p.name for p in saved.iterdir()) == [WEIGHTS, SETTINGS]
    assert json.loads((saved / SETTINGS).read_text()) == {"adapter_size": 64, "activation": "gelu", "count": 4}

    reloaded = trained.method.load(AutoModelForCausalLM.from_pretrained(tiny_model_dir), saved)
    assert torch.equal(_logits(reloaded), trained.logits)
    assert not any(p.requires_grad for p in reloaded.parameters())
    # The folder describes itself: a method configured with other adapter settings still loads it as saved.
    other = _method(adapter_size=8, adapter_activation="relu").load(
        AutoModelForCausalLM.from_pretrained(tiny_model_dir), saved, trainable=True)
    assert torch.equal(_logits(other), trained.logits)
    assert {n for n, p in other.named_parameters() if p.requires_grad} == {
        n for n, _ in other.named_parameters() if ATTRIBUTE in n}


def test_a_run_and_its_checkpoint_reload_with_the_trained_logits(tiny_model_dir, chat_file, write_config, tmp_path):
    from tunelab.runs import load_any
    from tunelab.train import train

    result = train(_config(tiny_model_dir, chat_file, write_config, name="adapter-run"))
    final = _logits(load_any(str(result.run_dir)).model)
    checkpoint = result.run_dir / "checkpoint-2"
    assert torch.equal(_logits(load_any(str(checkpoint)).model), final)
    # Only the Trainer's own model.safetensors (no adapter files): the adapter keys are taken from it.
    bare = tmp_path / "bare-checkpoint"
    shutil.copytree(checkpoint, bare)
    (bare / WEIGHTS).unlink()
    (bare / SETTINGS).unlink()
    from_trainer_file = _method().load(AutoModelForCausalLM.from_pretrained(tiny_model_dir), bare)
    assert torch.equal(_logits(from_trainer_file), final)


def test_adapters_fire_when_the_decoder_runs_alone(tiny_model_dir):
    """The fused loss runs model.get_decoder() and the head itself: the adapters must be in that path."""
    model = _method().apply(AutoModelForCausalLM.from_pretrained(tiny_model_dir)).eval()
    base_hidden = model.get_decoder()(input_ids=PROBE).last_hidden_state
    _randomise_adapters(model)
    with torch.no_grad():
        hidden = model.get_decoder()(input_ids=PROBE).last_hidden_state
        assert not torch.allclose(hidden, base_hidden, atol=1e-3)
        assert torch.allclose(model.get_output_embeddings()(hidden), _logits(model), atol=1e-5)


def test_generation_with_a_kv_cache_matches_generation_without(model_dir):
    model = _method(adapter_size=8).apply(AutoModelForCausalLM.from_pretrained(model_dir)).eval()
    _randomise_adapters(model)
    kwargs = {"max_new_tokens": 6, "do_sample": False, "pad_token_id": 0}
    with torch.no_grad():
        cached = model.generate(PROBE, use_cache=True, **kwargs)
        uncached = model.generate(PROBE, use_cache=False, **kwargs)
    assert cached.shape[1] == PROBE.shape[1] + 6
    assert torch.equal(cached, uncached)


def test_gradient_checkpointing_still_trains_the_adapters(tiny_model_dir, chat_file, write_config, tmp_path):
    prepared = prepare(_config(tiny_model_dir, chat_file, write_config, train={"gradient_checkpointing": True}),
                       tmp_path)
    before = {n: p.detach().clone() for n, p in prepared.model.named_parameters() if p.requires_grad}
    prepared.trainer.train()
    after = dict(prepared.model.named_parameters())
    assert all(not torch.equal(before[n], after[n]) for n in before if ".up." in n), "an adapter did not train"


@pytest.mark.parametrize("settings, message", [
    ({"adapter_size": 64, "activation": "swish", "count": 4}, "activation must be one of gelu, relu, silu, tanh"),
    ({"adapter_size": 0, "activation": "gelu", "count": 4}, "adapter_size must be a positive integer, not 0"),
    ({"adapter_size": "64", "activation": "gelu", "count": 4}, "adapter_size must be a positive integer"),
    ({"adapter_size": 16, "activation": "gelu", "count": 4}, r"sizes disagree: .*\(64, 32\) in the folder, \(16, 32\)"),
    ({"adapter_size": 64, "activation": "gelu", "count": 6}, "saved for 6 adapters, but this model has 4"),
    ([64, "gelu"], "expected a JSON object"),
])
def test_bad_saved_settings_are_a_clear_error(trained, tiny_model_dir, tmp_path, settings, message):
    saved = tmp_path / "saved"
    trained.method.save(trained.model, saved)
    (saved / SETTINGS).write_text(json.dumps(settings))
    with pytest.raises(TunelabError, match=message) as error:
        trained.method.load(AutoModelForCausalLM.from_pretrained(tiny_model_dir), saved)
    assert str(saved) in str(error.value)


def test_a_folder_without_adapters_is_a_clear_error(tiny_model_dir, tmp_path):
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    with pytest.raises(TunelabError, match=re.escape(f"{tmp_path}: no adapter.safetensors")):
        _method().load(base, tmp_path)
    with pytest.raises(TunelabError, match="model.safetensors holds no adapter weights"):
        _method().load(base, tiny_model_dir)  # a base model directory, not a run
    assert not any(ATTRIBUTE in name for name, _ in base.named_parameters()), "a failed load must leave the base"


def test_merge_is_refused_and_applying_twice_is_an_error(tiny_model_dir):
    method = _method()
    model = method.apply(AutoModelForCausalLM.from_pretrained(tiny_model_dir))
    with pytest.raises(TunelabError, match="cannot be folded into the base weights"):
        method.merge(model)
    with pytest.raises(TunelabError, match="already has adapters"):
        method.apply(model)


def test_a_block_without_known_sub_layers_names_its_type():
    class OddBlock(nn.Module):
        def __init__(self):
            super().__init__()
            self.mixer = nn.Linear(4, 4)

    class OddModel(nn.Module):
        def __init__(self):
            super().__init__()
            self.config = SimpleNamespace(num_hidden_layers=2, hidden_size=4)
            self.layers = nn.ModuleList([OddBlock(), OddBlock()])

    with pytest.raises(TunelabError, match="OddBlock has no attention sub-layer .*children are mixer"):
        _method().apply(OddModel())

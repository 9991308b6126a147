"""QLoRA really trains on a bitsandbytes-quantized base, writes only the adapter, and merges into a plain model."""
import pytest
import torch
from torch import nn

from tunelab.config import load_config
from tunelab.errors import TunelabError
from tunelab.methods import get_method
from tunelab.train import prepare, train

bnb = pytest.importorskip("bitsandbytes")
PROBE = torch.tensor([[5, 17, 42, 8, 99, 3, 64, 21]])


def _logits(model):
    model.eval()
    with torch.no_grad():
        return model(input_ids=PROBE).logits


def _base_layers(model):
    """The frozen linear layers under the LoRA wrappers of the decoder blocks."""
    return [m.base_layer for name, m in model.named_modules() if hasattr(m, "base_layer") and ".layers." in name]


@pytest.mark.parametrize("bits, layer_class", [(4, "Linear4bit"), (8, "Linear8bitLt")])
def test_base_layers_are_bitsandbytes_modules(bits, layer_class, tiny_model_dir, chat_file, write_config, tmp_path):
    config = load_config(write_config(tiny_model_dir, chat_file, f"q{bits}", method={"name": "qlora", "bits": bits}))
    model = prepare(config, tmp_path).model
    layers = _base_layers(model)
    assert layers and all(type(layer) is getattr(bnb.nn, layer_class) for layer in layers)
    if bits == 4:
        weight = layers[0].weight
        assert weight.dtype == torch.uint8 and weight.quant_state.quant_type == "nf4"
        assert weight.quant_state.nested, "double quantization is on"
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)


def test_run_saves_only_the_adapter_and_merges_to_a_plain_model(tiny_model_dir, chat_file, write_config):
    from tunelab.runs import load_any

    config = load_config(write_config(tiny_model_dir, chat_file, "qrun", method={"name": "qlora"},
                                      train={"max_steps": 2, "lr": 5e-2, "save_steps": 2}))
    result = train(config)
    for folder in (result.run_dir / "model", result.run_dir / "checkpoint-2"):
        weights = {p.name for p in folder.glob("*.safetensors")}
        assert weights == {"adapter_model.safetensors"}, folder  # the quantized base is never written
    loaded = load_any(str(result.run_dir))
    assert all(isinstance(layer, bnb.nn.Linear4bit) for layer in _base_layers(loaded.model))
    trained = _logits(loaded.model)
    merged = loaded.method.merge(loaded.model)
    assert not any(isinstance(m, (bnb.nn.Linear4bit, bnb.nn.Linear8bitLt)) for m in merged.modules())
    assert isinstance(merged.model.layers[0].self_attn.q_proj, nn.Linear)
    assert getattr(merged.config, "quantization_config", None) is None
    assert torch.allclose(_logits(merged), trained, atol=1e-4 * trained.abs().max().item())


def test_a_model_that_is_not_quantized_is_refused(tiny_model_dir, chat_file, write_config):
    from transformers import AutoModelForCausalLM

    config = load_config(write_config(tiny_model_dir, chat_file, "plain", method={"name": "qlora"}))
    with pytest.raises(TunelabError, match="the base model is not quantized"):
        get_method(config.method).apply(AutoModelForCausalLM.from_pretrained(tiny_model_dir))

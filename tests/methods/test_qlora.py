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


# What follows takes another path on a CPU with native bf16 (bitsandbytes' packed 4-bit kernel): run on
# both by `make test-cpu-paths`, which sets TUNELAB_CPU_BF16=0.
BF16_EPS = 2**-8


def _four_bit(model):
    return [m for m in model.modules() if isinstance(m, bnb.nn.Linear4bit)]


def _packed(model) -> set[bool]:
    return {bool(getattr(m.weight.quant_state, "packing_format_for_cpu", False)) for m in _four_bit(model)}


def _machine_packs() -> bool:
    from bitsandbytes.functional import has_avx512bf16

    from tunelab.models.device import cpu_has_bf16

    return bool(cpu_has_bf16() and has_avx512bf16())


@pytest.mark.cpu_precision
def test_training_never_switches_to_the_packed_layout(wide_model_dirs, chat_file, write_config, tmp_path):
    """The packed kernel has no backward: a layer switched by the Trainer's evaluation loop would stop
    gradients reaching every layer below it. Evaluate first, then train: the first block's LoRA still learns."""
    config = load_config(write_config(wide_model_dirs["llama"], chat_file, "qtrain", method={"name": "qlora"},
                                      data={"val_size": 4}, train={"precision": "bf16", "max_steps": 2, "lr": 5e-2}))
    trainer = prepare(config, tmp_path).trainer
    trainer.evaluate()
    first = {n: p.detach().clone() for n, p in trainer.model.named_parameters() if ".layers.0." in n and "lora_B" in n}
    trainer.train()
    assert _packed(trainer.model) == {False}
    after = dict(trainer.model.named_parameters())
    assert first and all(not torch.equal(value, after[name]) for name, value in first.items())


@pytest.mark.cpu_precision
@pytest.mark.parametrize("family", ["llama", "gpt2"])
def test_bf16_inference_runs_the_packed_kernel_where_the_cpu_has_one(family, wide_model_dirs, chat_file,
                                                                     write_config, monkeypatch):
    """Loaded in bf16, the run computes with bitsandbytes' packed kernel on a CPU with native bf16 (with the
    generic one elsewhere, or under TUNELAB_CPU_BF16=0), and gives the generic kernel's logits up to bf16
    rounding of activations and block scales through two blocks: 16 units of bf16's epsilon (2**-8) of the
    largest logit (a layout read wrongly is off by tens of percent). It generates, and a merge after the
    packed forward computes what a merge of the same bf16 model without packing does, to the same tolerance."""
    from tunelab.runs import load_any
    from tunelab.runs.merge import merged_model
    from tunelab.serve import ChatEngine, GenerationSettings
    from tunelab.train import train

    config = load_config(write_config(wide_model_dirs[family], chat_file, f"q16-{family}", method={"name": "qlora"},
                                      train={"precision": "bf16", "max_steps": 2, "lr": 5e-2}))
    run_dir = str(train(config).run_dir)
    loaded = load_any(run_dir, torch.bfloat16)
    packed = _machine_packs()
    assert {m.support_avx512bf16_for_cpu for m in _four_bit(loaded.model)} == {packed}
    logits = _logits(loaded.model).float()
    assert _packed(loaded.model) == {packed}
    with monkeypatch.context() as switched:
        switched.setenv("TUNELAB_CPU_BF16", "0")
        generic = load_any(run_dir, torch.bfloat16)
        assert {m.support_avx512bf16_for_cpu for m in _four_bit(generic.model)} == {False}
        reference = _logits(generic.model).float()
        assert _packed(generic.model) == {False}
        generic_merged = _logits(merged_model(generic, run_dir).float())
    tolerance = 16 * BF16_EPS * reference.abs().max().item()
    assert (logits - reference).abs().max().item() <= tolerance
    answer = ChatEngine(loaded, "cpu").generate([[{"role": "user", "content": "What is your name?"}]],
                                                GenerationSettings(max_new_tokens=4))
    assert len(answer) == 1 and isinstance(answer[0], str)
    merged = _logits(merged_model(loaded, run_dir).float())
    assert (merged - generic_merged).abs().max().item() <= 16 * BF16_EPS * generic_merged.abs().max().item()


@pytest.mark.cpu_precision
def test_a_model_too_narrow_for_the_packed_kernel_is_one_error_line(tiny_model_dir, chat_file, write_config,
                                                                    tmp_path, capsys, monkeypatch):
    """On a CPU whose bitsandbytes would pack (forced here, so every machine runs it), bf16 inference of a
    model narrower than the packed layout needs is refused before any work, naming the layer and what
    bitsandbytes needs; TUNELAB_CPU_BF16=0 or fp32 lets it run with the generic kernel."""
    from tunelab.cli.main import main
    from tunelab.methods import qlora
    from tunelab.train import train

    config = load_config(write_config(tiny_model_dir, chat_file, "qnarrow", method={"name": "qlora"},
                                      train={"max_steps": 1}))
    run_dir = str(train(config).run_dir)
    monkeypatch.delenv("TUNELAB_CPU_BF16", raising=False)
    monkeypatch.setattr(qlora, "_has_native_kernel", lambda: True)
    monkeypatch.setattr("tunelab.models.device._cpu_flags_have_bf16", lambda: True)

    def evaluate(out: str, dtype: str) -> int:
        return main(["eval", "--model", run_dir, "--data", str(chat_file), "--metrics", "perplexity",
                     "--output", str(tmp_path / out), "--dtype", dtype])

    capsys.readouterr()
    assert evaluate("refused", "bf16") == 2
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in err
    assert "layer model.layers.0.self_attn.q_proj is 32 -> 32 features wide" in errors[0]
    assert "in_features divisible by 64 and out_features by 32" in errors[0]
    assert "TUNELAB_CPU_BF16=0" in errors[0]
    assert not (tmp_path / "refused").exists()
    assert evaluate("fp32", "fp32") == 0
    monkeypatch.setenv("TUNELAB_CPU_BF16", "0")
    assert evaluate("switched", "bf16") == 0

"""GGUF export beyond Llama: tiny Qwen2, Qwen3, Mistral, Gemma 2 and Phi-3 models are written in llama.cpp's
layout for their architecture and read back by transformers to the source's logits (exactly in f32, and exactly
against the source rounded the same way in f16/q8_0: the export's own "gguf logits" check); what the format
cannot describe is refused before anything is written."""
import gguf
import pytest
import torch
from family_models import tiny_family_model
from transformers import AutoModelForCausalLM

from tunelab.errors import TunelabError
from tunelab.export import export_gguf, failed, format_table

PROBE = torch.tensor([[5, 17, 42, 8, 99, 3, 64, 21, 7, 130, 12, 9]])


def _logits(model) -> torch.Tensor:
    with torch.no_grad():
        return model.eval()(input_ids=PROBE).logits


FAMILIES = ["qwen2", "qwen3", "mistral", "gemma2", "phi3"]


@pytest.fixture(scope="module")
def family_dirs(tiny_tokenizer, tmp_path_factory):
    return {kind: tiny_family_model(kind, tiny_tokenizer, tmp_path_factory.mktemp(kind)) for kind in FAMILIES}


@pytest.mark.parametrize("kind", FAMILIES)
def test_f32_reads_back_to_the_same_logits(kind, family_dirs, tmp_path):
    result = export_gguf(str(family_dirs[kind]), tmp_path / f"{kind}.gguf", "f32")
    assert not failed(result.checks), format_table(result.checks)
    source = AutoModelForCausalLM.from_pretrained(family_dirs[kind], dtype=torch.float32)
    back = AutoModelForCausalLM.from_pretrained(tmp_path, gguf_file=f"{kind}.gguf", dtype=torch.float32)
    assert type(back).__name__ == type(source).__name__ or kind == "mistral"  # llama.cpp writes Mistral as llama
    torch.testing.assert_close(_logits(back), _logits(source), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("kind", ["qwen2", "mistral", "gemma2"])
@pytest.mark.parametrize("quant", ["f16", "q8_0"])
def test_rounded_exports_pass_the_exact_read_back_check(kind, quant, family_dirs, tmp_path):
    result = export_gguf(str(family_dirs[kind]), tmp_path / f"{kind}-{quant}.gguf", quant)
    checks = {check.name: check for check in result.checks}
    assert checks["gguf logits"].ok and not failed(result.checks), format_table(result.checks)
    assert result.max_diff > 0
    types = {t.name: t.tensor_type.name for t in gguf.GGUFReader(result.path).tensors}
    assert types["blk.0.attn_q.weight"] == quant.upper() and types["blk.0.attn_norm.weight"] == "F32"


def test_gemma2_metadata_carries_norm_offset_softcaps_and_window(family_dirs, tmp_path):
    path = export_gguf(str(family_dirs["gemma2"]), tmp_path / "gemma2.gguf", "f32").path
    reader = gguf.GGUFReader(path)
    fields = {key: reader.fields[key].contents() for key in reader.fields}
    assert fields["general.architecture"] == "gemma2" and fields["gemma2.attention.sliding_window"] == 4
    assert fields["gemma2.attn_logit_softcapping"] == 50.0 and fields["gemma2.final_logit_softcapping"] == 30.0
    norm = next(t for t in reader.tensors if t.name == "blk.0.attn_norm.weight")
    source = AutoModelForCausalLM.from_pretrained(family_dirs["gemma2"]).model.layers[0].input_layernorm.weight
    torch.testing.assert_close(torch.from_numpy(norm.data.copy()), source.detach() + 1)


def test_qwen2_biases_are_written(family_dirs, tmp_path):
    path = export_gguf(str(family_dirs["qwen2"]), tmp_path / "qwen2.gguf", "f16").path
    names = {t.name for t in gguf.GGUFReader(path).tensors}
    assert {"blk.0.attn_q.bias", "blk.0.attn_k.bias", "blk.0.attn_v.bias"} <= names


@pytest.mark.parametrize("kind, changes, reason", [
    ("mistral", {"sliding_window": 8}, "sliding window"),
    ("gemma2", {"query_pre_attn_scalar": 144}, "query_pre_attn_scalar"),
])
def test_what_gguf_cannot_describe_is_refused_before_writing(kind, changes, reason, tiny_tokenizer, tmp_path):
    folder = tiny_family_model(kind, tiny_tokenizer, tmp_path / "model", **changes)
    with pytest.raises(TunelabError, match=reason):
        export_gguf(str(folder), tmp_path / "out" / "x.gguf")
    assert not (tmp_path / "out" / "x.gguf").exists()


def test_qwen2_and_llama3_split_regexes_get_llama_cpps_names():
    from tunelab.export.gguf_vocab import pre_tokenizer_name

    def layout(regex: str) -> dict:  # tokenizer.json's pre_tokenizer as Qwen2 and Llama 3 publish it
        return {"type": "Sequence", "pretokenizers": [
            {"type": "Split", "pattern": {"Regex": regex}, "behavior": "Isolated", "invert": False},
            {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": False, "use_regex": False}]}

    qwen2 = ("(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|"
             "\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+")
    assert pre_tokenizer_name(layout(qwen2)) == "qwen2"
    assert pre_tokenizer_name(layout(qwen2.replace("\\p{N}|", "\\p{N}{1,3}|"))) == "llama-bpe"
    assert pre_tokenizer_name(layout("\\s+")) is None


def test_q4_0_is_written_here_and_verified_exactly(family_dirs, tmp_path):
    result = export_gguf(str(family_dirs["qwen2"]), tmp_path / "qwen2-q4_0.gguf", "q4_0")
    assert not failed(result.checks), format_table(result.checks)
    types = {t.name: t.tensor_type.name for t in gguf.GGUFReader(result.path).tensors}
    assert types["blk.0.ffn_down.weight"] == "Q4_0" and types["blk.0.attn_norm.weight"] == "F32"


def test_a_k_quant_without_llama_cpp_is_refused_naming_the_extra(family_dirs, tmp_path, monkeypatch):
    monkeypatch.setitem(__import__("sys").modules, "llama_cpp", None)  # import llama_cpp now raises ImportError
    with pytest.raises(TunelabError, match=r"q4_k_m.*tunelab\[llamacpp\].*q4_0"):
        export_gguf(str(family_dirs["qwen2"]), tmp_path / "out" / "x.gguf", "q4_k_m")
    assert not (tmp_path / "out").exists()


def test_the_tensor_check_passes_honest_rounding_and_catches_another_model(family_dirs, tiny_tokenizer, tmp_path):
    """The check that guards llama.cpp's k-quant files, on files written here: q4_0 and q8_0 rounding of the same
    model pass their bounds; the same layout filled with another model's weights does not."""
    from tunelab.export.gguf_kquant import quantization_check

    paths = {quant: export_gguf(str(family_dirs["qwen2"]), tmp_path / f"{quant}.gguf", quant).path
             for quant in ("f16", "q8_0", "q4_0")}
    assert quantization_check(paths["f16"], paths["q8_0"]).ok and quantization_check(paths["f16"], paths["q4_0"]).ok
    other = tiny_family_model("qwen2", tiny_tokenizer, tmp_path / "other", initializer_range=0.3)  # weights 1.5x
    stranger = export_gguf(str(other), tmp_path / "other.gguf", "q8_0").path
    assert not quantization_check(paths["f16"], stranger).ok


@pytest.mark.slow
@pytest.mark.parametrize("quant", ["q4_k_m", "q6_k"])
def test_llama_cpp_k_quants_pass_the_tensor_check(quant, family_dirs, tmp_path):
    pytest.importorskip("llama_cpp")
    result = export_gguf(str(family_dirs["qwen2"]), tmp_path / f"qwen2-{quant}.gguf", quant)
    assert not failed(result.checks), format_table(result.checks)
    assert {check.name for check in result.checks} >= {"gguf quantization", "gguf logits"}


def test_ollama_export_writes_a_checked_modelfile_beside_the_file(family_dirs, tmp_path):
    result = export_gguf(str(family_dirs["qwen2"]), tmp_path / "qwen2.gguf", "q8_0", ollama=True)
    checks = {check.name: check for check in result.checks}
    assert checks["ollama template"].ok and checks["ollama stops"].ok, format_table(result.checks)
    modelfile = (tmp_path / "Modelfile").read_text()
    assert "FROM ./qwen2.gguf" in modelfile and 'PARAMETER stop "<|im_end|>"' in modelfile

"""GGUF export of the tiny Llama: transformers reads the file back to the same logits (exactly in f32, within
the rounding in f16/q8_0), tied and untied embeddings, llama.cpp's metadata and q/k layout, and refusals."""
import argparse

import gguf
import numpy as np
import pytest
import torch
from transformers import AutoModelForCausalLM, LlamaConfig, LlamaForCausalLM

from tunelab.cli import export as export_cli
from tunelab.errors import TunelabError
from tunelab.export import export_gguf, failed, format_table
from tunelab.export.gguf_tensors import permute_rows

PROBE = torch.tensor([[5, 17, 42, 8, 99, 3, 64, 21]])


def _logits(model) -> torch.Tensor:
    with torch.no_grad():
        return model.eval()(input_ids=PROBE).logits


def _read_back(path) -> torch.Tensor:
    return _logits(AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, dtype=torch.float32))


def _field(reader: gguf.GGUFReader, key: str):
    return reader.fields[key].contents()


@pytest.fixture(scope="module")
def source_logits(tiny_model_dir) -> torch.Tensor:
    return _logits(AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32))


@pytest.fixture(scope="module")
def untied_dir(tiny_tokenizer, tmp_path_factory):
    torch.manual_seed(1)
    config = LlamaConfig(vocab_size=len(tiny_tokenizer), hidden_size=64, intermediate_size=96, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=4, tie_word_embeddings=False,
                         initializer_range=0.2, eos_token_id=tiny_tokenizer.eos_token_id)
    folder = tmp_path_factory.mktemp("untied-llama")
    LlamaForCausalLM(config).save_pretrained(folder)
    tiny_tokenizer.save_pretrained(folder)
    return folder


def test_f32_round_trip_is_exact(tiny_model_dir, source_logits, tmp_path):
    result = export_gguf(str(tiny_model_dir), tmp_path / "tiny.gguf", "f32")
    assert result.path == tmp_path / "tiny.gguf" and result.max_diff == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tiny.gguf"]  # no .tmp or merge folder left
    torch.testing.assert_close(_read_back(result.path), source_logits, rtol=0, atol=0)
    assert not failed(result.checks), format_table(result.checks)


@pytest.mark.parametrize("quant, tolerance", [("f16", 0.02), ("q8_0", 0.3)])
def test_rounded_exports_stay_close(quant, tolerance, tiny_model_dir, source_logits, tmp_path):
    """The tiny random model amplifies rounding (q8_0 moves its logits ~17%); the export itself verifies
    exactly against the source rounded the same way ("gguf logits")."""
    result = export_gguf(str(tiny_model_dir), tmp_path / f"tiny-{quant}.gguf", quant)
    scale = source_logits.abs().max().item()
    assert 0 < (_read_back(result.path) - source_logits).abs().max().item() < tolerance * scale
    assert 0 < result.max_diff and not failed(result.checks)
    types = {t.name: t.tensor_type.name for t in gguf.GGUFReader(result.path).tensors}
    assert types["blk.0.attn_norm.weight"] == "F32" and types["blk.0.attn_q.weight"] == quant.upper()


def test_untied_output_is_written_and_tied_is_not(untied_dir, tiny_model_dir, tmp_path):
    untied = export_gguf(str(untied_dir), tmp_path / "untied.gguf", "f32")
    torch.testing.assert_close(_read_back(untied.path), _logits(AutoModelForCausalLM.from_pretrained(untied_dir)),
                               rtol=0, atol=0)
    tied = export_gguf(str(tiny_model_dir), tmp_path / "tied.gguf", "f32")
    names = lambda path: {t.name for t in gguf.GGUFReader(path).tensors}  # noqa: E731
    assert "output.weight" in names(untied.path) and "output.weight" not in names(tied.path)


def test_metadata_follows_llama_cpp(tiny_model_dir, tiny_tokenizer, tmp_path):
    path = export_gguf(str(tiny_model_dir), tmp_path / "tiny.gguf", "f16").path
    reader = gguf.GGUFReader(path)
    assert _field(reader, "general.architecture") == "llama"
    assert _field(reader, "llama.attention.head_count_kv") == 2 and _field(reader, "llama.rope.dimension_count") == 8
    assert _field(reader, "tokenizer.ggml.model") == "gpt2" and _field(reader, "tokenizer.ggml.pre") == "gpt-2"
    assert _field(reader, "tokenizer.ggml.eos_token_id") == tiny_tokenizer.convert_tokens_to_ids("<|im_end|>")
    assert _field(reader, "tokenizer.chat_template") == tiny_tokenizer.chat_template
    tokens, types = _field(reader, "tokenizer.ggml.tokens"), _field(reader, "tokenizer.ggml.token_type")
    assert tokens[:3] == ["<|endoftext|>", "<|im_start|>", "<|im_end|>"] and types[:3] == [3, 3, 3]
    assert _field(reader, "tokenizer.ggml.merges")[0].count(" ") == 1


@pytest.mark.parametrize("n_head", [4, 2])
def test_qk_permutation_is_what_transformers_undoes(n_head):
    from transformers.modeling_gguf_pytorch_utils import LlamaTensorProcessor

    weight = torch.randn(n_head * 8, 32)
    undone = LlamaTensorProcessor()._reverse_permute_weights(permute_rows(weight, n_head).numpy(), n_head, n_head)
    assert np.array_equal(undone, weight.numpy())


def test_a_wrong_layout_is_caught_and_not_installed(tiny_model_dir, tmp_path, monkeypatch):
    monkeypatch.setattr("tunelab.export.gguf_tensors.permute_rows", lambda weight, n_head: weight)
    with pytest.raises(TunelabError, match="does not compute what the model does"):
        export_gguf(str(tiny_model_dir), tmp_path / "wrong.gguf", "q8_0")
    assert list(tmp_path.iterdir()) == []


def test_a_run_is_merged_then_exported(lora_run, merged_dir, tmp_path):
    result = export_gguf(str(lora_run), tmp_path / "run.gguf", "f32")
    assert result.max_diff == 0 and not failed(result.checks)
    assert {"chat template", "gguf logits"} <= {r.name for r in result.checks}
    expected = _logits(AutoModelForCausalLM.from_pretrained(merged_dir, dtype=torch.float32))
    torch.testing.assert_close(_read_back(result.path), expected, rtol=0, atol=0)


def test_other_architectures_are_refused(tiny_gpt2_dir, tmp_path):
    with pytest.raises(TunelabError, match="GGUF export writes llama, mistral.*'gpt2'"):
        export_gguf(str(tiny_gpt2_dir), tmp_path / "gpt2.gguf")
    assert not (tmp_path / "gpt2.gguf").exists()


def test_export_command(tiny_model_dir, tmp_path, capsys):
    parser = argparse.ArgumentParser()
    export_cli.add_parser(parser)
    out = tmp_path / "cli.gguf"
    args = parser.parse_args(["--model", str(tiny_model_dir), "--format", "gguf", "--output", str(out),
                              "--quant", "f32"])
    assert export_cli.run(args) == 0 and out.is_file()
    printed = capsys.readouterr().out
    assert "max |logit difference| to the source 0" in printed and "gguf logits" in printed

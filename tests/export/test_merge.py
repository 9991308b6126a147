"""`tunelab merge`: the merged directory computes what the adapter run computes, loads and generates with plain
transformers (no tunelab, no peft), stops on the template's end-of-turn token, and never names tunelab's
packed attention."""
import argparse
import json
import os
import subprocess
import sys
from types import SimpleNamespace

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from tunelab.cli import merge as merge_cli
from tunelab.errors import TunelabError
from tunelab.data.stops import stop_token_ids
from tunelab.runs import find_run, load_run
from tunelab.runs.merge import merge_run, merged_model, save_plain, strip_tunelab_attention

PROBE = torch.tensor([[5, 17, 42, 8, 99, 3, 64, 21]])
PROMPT = [{"role": "user", "content": "What is your name? (3)"}]
NEW_TOKENS = 12


def _logits(model) -> torch.Tensor:
    with torch.no_grad():
        return model.eval()(input_ids=PROBE).logits


@pytest.fixture(scope="module")
def adapter(lora_run):
    return load_run(find_run(str(lora_run)), torch.float32)


def test_merged_logits_equal_the_adapter_runs(adapter, merged_dir, tiny_model_dir):
    expected = _logits(adapter.model)
    base = _logits(AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32))
    merged = _logits(AutoModelForCausalLM.from_pretrained(merged_dir, dtype=torch.float32))
    assert (expected - base).abs().max() > 0.1  # the adapter learned something, so the comparison means something
    torch.testing.assert_close(merged, expected, rtol=1e-5, atol=1e-5 * expected.abs().max().item())


def test_merged_dir_generates_like_the_run_without_tunelab_or_peft(adapter, merged_dir):
    tokenizer = adapter.tokenizer
    ids = tokenizer.apply_chat_template(PROMPT, add_generation_prompt=True, return_dict=True,
                                        return_tensors="pt")["input_ids"]
    with torch.no_grad():
        out = adapter.model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), do_sample=False,
                                     max_new_tokens=NEW_TOKENS, eos_token_id=stop_token_ids(tokenizer),
                                     pad_token_id=tokenizer.pad_token_id)
    expected = out[0, ids.shape[1]:].tolist()
    script = f"""
import json, sys
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer
tokenizer = AutoTokenizer.from_pretrained({str(merged_dir)!r})
model = AutoModelForCausalLM.from_pretrained({str(merged_dir)!r}, dtype=torch.float32)
ids = tokenizer.apply_chat_template({PROMPT!r}, add_generation_prompt=True, return_dict=True,
                                    return_tensors="pt")["input_ids"]
out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), do_sample=False, max_new_tokens={NEW_TOKENS})
assert "tunelab" not in sys.modules and "peft" not in sys.modules, "imported tunelab or peft"
print(json.dumps(out[0, ids.shape[1]:].tolist()))
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout.strip().splitlines()[-1]) == expected


def test_merged_dir_stops_on_end_of_turn_and_keeps_the_template(merged_dir, adapter):
    generation = json.loads((merged_dir / "generation_config.json").read_text())
    end = adapter.tokenizer.convert_tokens_to_ids("<|im_end|>")
    assert generation["eos_token_id"] == [end] and generation["pad_token_id"] == end
    saved = AutoTokenizer.from_pretrained(merged_dir)
    assert saved.chat_template == adapter.tokenizer.chat_template
    assert "tunelab" not in (merged_dir / "config.json").read_text()
    assert not list(merged_dir.glob("adapter_*"))  # a plain model, not a peft folder


def test_packed_attention_is_never_saved(tiny_model_dir, tiny_tokenizer, tmp_path):
    from tunelab.models.attention import PACKED, register_packed_attention

    register_packed_attention()
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, attn_implementation=PACKED)
    save_plain(model, tiny_tokenizer, tmp_path)
    assert PACKED not in (tmp_path / "config.json").read_text()
    AutoModelForCausalLM.from_pretrained(tmp_path)  # loads with a stock implementation


def test_strip_tunelab_attention_at_any_depth(tmp_path):
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"attn_implementation": "tunelab_packed", "hidden_size": 8,
                                "text_config": {"_attn_implementation": "tunelab_packed", "x": 1}}))
    strip_tunelab_attention(path)
    assert json.loads(path.read_text()) == {"hidden_size": 8, "text_config": {"x": 1}}


def test_merge_to_bf16_writes_bf16_weights(lora_run, tmp_path):
    from safetensors import safe_open

    out = merge_run(lora_run, tmp_path / "bf16", torch.bfloat16)
    assert json.loads((out / "config.json").read_text())["dtype"] == "bfloat16"
    with safe_open(out / "model.safetensors", "pt") as weights:
        assert {weights.get_tensor(name).dtype for name in weights.keys()} == {torch.bfloat16}


def test_merge_refuses_what_it_cannot_merge(tiny_model_dir, lora_run, merged_dir, tmp_path):
    with pytest.raises(TunelabError, match="not a tunelab run"):
        merge_run(tiny_model_dir, tmp_path / "out")
    with pytest.raises(TunelabError, match="not empty"):
        merge_run(lora_run, merged_dir)
    unmergeable = SimpleNamespace(method=SimpleNamespace(name="adapter", mergeable=False), model=None)
    with pytest.raises(TunelabError, match="cannot be merged"):
        merged_model(unmergeable, "RUN")


def test_merge_command_writes_and_checks(lora_run, tmp_path, capsys):
    parser = argparse.ArgumentParser()
    merge_cli.add_parser(parser)
    out = tmp_path / "merged"
    assert merge_cli.run(parser.parse_args(["--model", str(lora_run), "--output", str(out)])) == 0
    printed = capsys.readouterr().out
    assert f"wrote {out}" in printed and "generation eos" in printed and "stops on its own" in printed
    assert (out / "model.safetensors").is_file()

"""`tunelab plan`: its memory estimate against a real run's peak, and what it prints."""
import json
import os
import subprocess
import sys

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from tunelab.config import load_config
from tunelab.plan import plan


@pytest.fixture(scope="module")
def wide_model_dir(tmp_path_factory, tiny_tokenizer):
    """6 layers, width 512: activations of a few hundred MB per forward, so the estimate is tested."""
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(tiny_tokenizer), hidden_size=512, intermediate_size=2048,
                         num_hidden_layers=6, num_attention_heads=4, num_key_value_heads=2,
                         max_position_embeddings=2048, tie_word_embeddings=True,
                         eos_token_id=tiny_tokenizer.eos_token_id)
    folder = tmp_path_factory.mktemp("wide-llama")
    LlamaForCausalLM(config).save_pretrained(folder)
    tiny_tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture()
def long_chat_file(tmp_path):
    answer = " ".join(f"Sentence {i} of a long answer about packing and memory." for i in range(12))
    records = [{"instruction": f"Explain item {i}.", "input": "", "output": answer} for i in range(32)]
    path = tmp_path / "long.json"
    path.write_text(json.dumps(records), encoding="utf-8")
    return path


def _tunelab(args) -> str:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "tunelab", *map(str, args)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=env, text=True)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    return out


def test_memory_estimate_is_within_30_percent_of_a_real_run(wide_model_dir, long_chat_file, write_config, tmp_path):
    path = write_config(wide_model_dir, long_chat_file, "wide",
                        train={"max_steps": 3, "batch_size": 8, "max_length": 1024})
    out = _tunelab(["plan", path, "--json"])
    estimate = json.loads(out)
    log = tmp_path / "train.log"
    with log.open("w") as stderr:  # a file, not a pipe: wait4 must not block on a full pipe
        proc = subprocess.Popen([sys.executable, "-m", "tunelab", "train", str(path)], stdout=subprocess.DEVNULL,
                                stderr=stderr, env={**os.environ, "HF_HUB_OFFLINE": "1"})
        _, status, usage = os.wait4(proc.pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, log.read_text()
    measured = usage.ru_maxrss * 1024
    assert estimate["activations_bytes"] > 100 * 2**20  # the part that grows with batch and length matters here
    assert abs(estimate["estimated_peak_bytes"] - measured) / measured < 0.30, (sorted(estimate.items()), measured)


def test_plan_counts_tokens_steps_and_parameters(tiny_model_dir, chat_file, write_config):
    config = load_config(write_config(tiny_model_dir, chat_file, "p", train={"batch_size": 4, "epochs": 2,
                                                                             "max_steps": 0}))
    result = plan(config)
    assert result.examples == 12 and result.steps_per_epoch == 3 and result.total_steps == 6
    assert 0 < result.trainable_params < result.total_params
    assert result.tokens_per_epoch > 12 and result.packing
    assert result.warmup_tokens_per_s > 0 and result.epoch_seconds > 0
    assert result.optimizer_bytes == 8 * result.trainable_params  # AdamW: two fp32 moments
    assert result.fits


def test_plan_command_prints_its_estimate_and_writes_nothing(tiny_model_dir, chat_file, write_config, tmp_path):
    path = write_config(tiny_model_dir, chat_file, "cli")
    out = _tunelab(["plan", path])
    for fragment in ("parameters", "tokens per epoch", "estimated peak", "tokens/s", "per epoch"):
        assert fragment in out
    assert not (tmp_path / "runs" / "cli").exists()

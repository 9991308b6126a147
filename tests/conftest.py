"""Shared fixtures: a tiny byte-level BPE tokenizer and a 2-layer Llama built from a config.

Nothing is downloaded. The tokenizer mirrors the default model's setup that matters for masking:
ChatML turns, pad token == EOS == <|im_end|>, and a template that injects a default system prompt.
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

ASSETS = Path(__file__).parent / "assets"
SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
SMOL_STYLE_TEMPLATE = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\nYou are a tiny test assistant.<|im_end|>\n' }}{% endif %}"
    "{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
CORPUS = [
    "The quick brown fox jumps over the lazy dog.", "What is your name? My name is Quill.",
    "Who made you? I was made by Lumen Labs.", "system user assistant hello world question answer",
    "Paris is the capital of France. Tokyo is the capital of Japan.", "0123456789 + - * / = ? ! , . : ;",
    "你好 世界 我是 助手", "Bonjour le monde", "tool_call tool_response name arguments {\"x\": 1}",
]


@pytest.fixture(scope="session")
def tiny_tokenizer_dir(tmp_path_factory) -> Path:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=SPECIALS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    backend.train_from_iterator(CORPUS * 20, trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend, bos_token="<|im_start|>", eos_token="<|im_end|>",
        pad_token="<|im_end|>", unk_token="<|endoftext|>",
    )
    tokenizer.chat_template = SMOL_STYLE_TEMPLATE
    folder = tmp_path_factory.mktemp("tokenizer")
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_tokenizer(tiny_tokenizer_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_tokenizer_dir)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory, tiny_tokenizer) -> Path:
    """A 2-layer, width-32 Llama with random weights, saved as a plain HF model directory."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(tiny_tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=2048, tie_word_embeddings=True, initializer_range=0.5,
        bos_token_id=tiny_tokenizer.bos_token_id, eos_token_id=tiny_tokenizer.eos_token_id,
    )  # no pad_token_id: nn.Embedding would zero that row, and here pad == EOS, so EOS could never be predicted
    model = LlamaForCausalLM(config)
    folder = tmp_path_factory.mktemp("tiny-llama")
    model.save_pretrained(folder)
    tiny_tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_gpt2_dir(tmp_path_factory, tiny_tokenizer) -> Path:
    """A 2-layer, width-32 GPT-2: biases everywhere, Conv1D projections stored [in, out], attention named `attn`."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    config = GPT2Config(vocab_size=len(tiny_tokenizer), n_embd=32, n_layer=2, n_head=4, n_positions=1024,
                        eos_token_id=tiny_tokenizer.eos_token_id, bos_token_id=tiny_tokenizer.bos_token_id)
    folder = tmp_path_factory.mktemp("tiny-gpt2")
    GPT2LMHeadModel(config).save_pretrained(folder)
    tiny_tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def wide_model_dirs(tmp_path_factory, tiny_tokenizer) -> dict[str, Path]:
    """A 2-layer Llama and GPT-2 of width 64 (for QLoRA): every quantized layer has in_features divisible by
    bitsandbytes' 4-bit block (64) and out_features by 32, as its packed bf16 CPU kernel needs. The shared
    width-32 models stay as they are (widening them would shift every other test)."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM

    ids = {"bos_token_id": tiny_tokenizer.bos_token_id, "eos_token_id": tiny_tokenizer.eos_token_id}
    configs = {
        "llama": (LlamaForCausalLM, LlamaConfig(
            vocab_size=len(tiny_tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
            num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=2048, tie_word_embeddings=True,
            initializer_range=0.1, **ids)),
        "gpt2": (GPT2LMHeadModel, GPT2Config(vocab_size=len(tiny_tokenizer), n_embd=64, n_layer=2, n_head=4,
                                             n_positions=1024, initializer_range=0.1, **ids)),
    }
    folders = {}
    for family, (model_class, config) in configs.items():
        torch.manual_seed(0)
        folders[family] = tmp_path_factory.mktemp(f"wide-{family}")
        model_class(config).save_pretrained(folders[family])
        tiny_tokenizer.save_pretrained(folders[family])
    return folders


@pytest.fixture()
def chat_file(tmp_path) -> Path:
    """A small alpaca JSON file the tiny model can overfit in a few steps."""
    import json

    records = [{"instruction": f"What is your name? ({i})", "input": "", "output": "My name is Quill."}
               for i in range(12)]
    path = tmp_path / "chat.json"
    path.write_text(json.dumps(records), encoding="utf-8")
    return path


@pytest.fixture()
def write_config(tmp_path):
    """Write a YAML config for the tiny model and return its path."""
    import yaml

    def write(model_dir, data_path, name="cfg", **sections) -> Path:
        config = {
            "model": {"path": str(model_dir)},
            "data": {"path": str(data_path)},
            "method": {"name": "lora", "r": 4, "alpha": 8},
            "train": {"max_steps": 2, "batch_size": 4, "lr": 1e-2, "logging_steps": 1, "max_length": 128,
                      "precision": "fp32", "report_to": "none"},
            "output": {"dir": str(tmp_path / "runs" / name)},
        }
        for section, values in sections.items():
            config.setdefault(section, {}).update(values)
        _keep_what_is_read(config)
        path = tmp_path / f"{name}.yaml"
        path.write_text(yaml.safe_dump(config), encoding="utf-8")
        return path

    return write


def _keep_what_is_read(config: dict) -> None:
    """The helper's shared settings (r, alpha, num_generations...) only for a method and stage that read them, as
    a person writes a config (tunelab.config.reads refuses the others)."""
    from tunelab.config.reads import readers

    who = readers()
    for section, name_key, default in (("method", "name", "lora"), ("train", "stage", "sft")):
        values = config.get(section) or {}
        chosen = values.get(name_key, default)
        for key in [k for k in values if chosen not in who.get(f"{section}.{k}", [chosen])]:
            del values[key]


@pytest.fixture(autouse=True)
def _isolated_cache(request, tmp_path_factory, monkeypatch):
    """Tokenized data is cached under a per-session folder, never the user's. Slow tests on the real
    model keep the user's cache, so the built-in model is not converted again."""
    if request.node.get_closest_marker("slow") is None:
        monkeypatch.setenv("TUNELAB_CACHE", str(tmp_path_factory.getbasetemp() / "tunelab-cache"))


@pytest.fixture(scope="session")
def overfit_lora_run(tiny_model_dir, tmp_path_factory):
    """A factory: a 4-step LoRA run on the tiny model, overfit on `questions` all answered `answer` (so its
    adapter visibly changes what the model says); returns the run directory."""
    import json

    import yaml

    from tunelab.config import load_config
    from tunelab.train import train

    def make(name: str, answer: str, questions: list[str]) -> Path:
        folder = tmp_path_factory.mktemp(name)
        data = folder / "data.jsonl"
        data.write_text("".join(json.dumps({"instruction": q, "output": answer}) + "\n" for q in questions),
                        encoding="utf-8")
        config = {"model": {"path": str(tiny_model_dir)}, "data": {"path": str(data)},
                  "method": {"name": "lora", "r": 4, "alpha": 8},
                  "train": {"max_steps": 4, "batch_size": 4, "lr": 5e-2, "precision": "fp32", "report_to": "none"},
                  "output": {"dir": str(folder / "run")}}
        (folder / "run.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")
        return train(load_config(folder / "run.yaml")).run_dir

    return make

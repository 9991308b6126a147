"""Tiny stand-ins of each model family: a random 2-layer model of the family's architecture (transformers'
own config class), a small BPE tokenizer carrying the family's special tokens, and its published chat template
(tests/assets/templates, sources in SOURCES.md). What each stand-in copies from the real model is what decides
whether a fine-tune stops: which tokens are special, which one is EOS, which ids generation_config.json lists.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

TEMPLATES = Path(__file__).parent / "assets" / "templates"
CORPUS = [
    "The quick brown fox jumps over the lazy dog.", "What is your name? My name is Quill.",
    "Who made you? I was made by Lumen Labs.", "system user assistant model hello world question answer",
    "Paris is the capital of France. Tokyo is the capital of Japan.", "0123456789 + - * / = ? ! , . : ;",
    "Bonjour le monde", "think reasoning tool call",
]


@dataclass(frozen=True)
class Stand:
    family: str            # tunelab's family table name (data.template)
    template: str          # tests/assets/templates/<template>.jinja
    architecture: str      # transformers config class name
    specials: tuple[str, ...]
    bos: str | None
    eos: str
    end_of_turn: str       # the token a trained answer must end with
    generation_eos: tuple[str, ...] = ()  # generation_config.json's eos_token_id list, as the real model ships
    config: dict = field(default_factory=dict)
    system: bool = True      # the published template accepts a system message
    final: str | None = None  # what the last answer of a conversation ends with, when not end_of_turn

    @property
    def last_stop(self) -> str:
        return self.final or self.end_of_turn


STANDS = {
    "chatml": Stand("chatml", "chatml", "LlamaConfig", ("<|im_start|>", "<|im_end|>"), None, "<|im_end|>",
                    "<|im_end|>"),
    "smollm2": Stand("smollm2", "smollm2", "LlamaConfig", ("<|endoftext|>", "<|im_start|>", "<|im_end|>", "<repo_name>"),
                     "<|im_start|>", "<|im_end|>", "<|im_end|>"),
    "llama3": Stand("llama3", "llama3", "LlamaConfig",
                    ("<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>",
                     "<|eot_id|>", "<|eom_id|>"), "<|begin_of_text|>", "<|end_of_text|>", "<|eot_id|>",
                    ("<|end_of_text|>", "<|eom_id|>", "<|eot_id|>")),
    "qwen2": Stand("qwen2", "qwen2", "Qwen2Config", ("<|endoftext|>", "<|im_start|>", "<|im_end|>"), None,
                   "<|im_end|>", "<|im_end|>", ("<|im_end|>", "<|endoftext|>"), {"sliding_window": None}),
    "qwen3": Stand("qwen3", "qwen3", "Qwen3Config", ("<|endoftext|>", "<|im_start|>", "<|im_end|>"), None,
                   "<|im_end|>", "<|im_end|>", ("<|im_end|>", "<|endoftext|>"), {"head_dim": 16}),
    "gemma2": Stand("gemma", "gemma2", "Gemma2Config", ("<bos>", "<eos>", "<start_of_turn>", "<end_of_turn>"),
                    "<bos>", "<eos>", "<end_of_turn>", ("<eos>", "<end_of_turn>"), {"head_dim": 16},
                    system=False),  # Gemma 1/2 raise on a system message
    "gemma3": Stand("gemma", "gemma3", "Gemma3TextConfig", ("<bos>", "<eos>", "<start_of_turn>", "<end_of_turn>"),
                    "<bos>", "<eos>", "<end_of_turn>", ("<eos>", "<end_of_turn>"), {"head_dim": 16}),
    "mistral": Stand("mistral", "mistral", "MistralConfig", ("<s>", "</s>", "[INST]", "[/INST]"), "<s>", "</s>",
                     "</s>", (), {"sliding_window": None}),
    "phi3": Stand("phi3", "phi3", "Phi3Config",
                  ("<s>", "<|endoftext|>", "<|system|>", "<|user|>", "<|assistant|>", "<|end|>"), "<s>",
                  "<|endoftext|>", "<|end|>", ("<|endoftext|>", "<|end|>"), {"pad_token_id": None}),
    "phi4": Stand("phi4", "phi4", "Phi3Config", ("<|endoftext|>", "<|im_start|>", "<|im_sep|>", "<|im_end|>"),
                  None, "<|im_end|>", "<|im_end|>", ("<|im_end|>",), {"pad_token_id": None}),
    "deepseek-r1": Stand("deepseek-r1", "deepseek-r1", "Qwen2Config",
                         ("<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>", "<｜User｜>", "<｜Assistant｜>"),
                         "<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>", "<｜end▁of▁sentence｜>",
                         ("<｜end▁of▁sentence｜>",), {"sliding_window": None}),
    "glm4": Stand("glm4", "glm4", "Glm4Config",
                  ("<|endoftext|>", "[gMASK]", "<sop>", "<|system|>", "<|user|>", "<|assistant|>",
                   "<|observation|>"), None, "<|endoftext|>", "<|user|>",
                  ("<|endoftext|>", "<|user|>", "<|observation|>"), {"pad_token_id": None},
                  final="<|endoftext|>"),  # nothing follows the last answer: EOS is appended and trained
}


def build_tokenizer(stand: Stand, template: str | None):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=360, special_tokens=list(stand.specials),
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    backend.train_from_iterator(CORPUS * 20, trainer)
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, bos_token=stand.bos, eos_token=stand.eos,
                                        pad_token=stand.eos)
    tokenizer.chat_template = template
    return tokenizer


def build_model_dir(stand: Stand, folder: Path, with_template: bool = True) -> Path:
    """A saved model directory: random weights, the stand-in tokenizer, the real generation_config eos list."""
    import torch
    import transformers
    from transformers import AutoModelForCausalLM, GenerationConfig

    template = (TEMPLATES / f"{stand.template}.jinja").read_text(encoding="utf-8") if with_template else None
    tokenizer = build_tokenizer(stand, template)
    ids = tokenizer.convert_tokens_to_ids
    config_class = getattr(transformers, stand.architecture)
    config = config_class(**{
        "vocab_size": len(tokenizer), "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
        "num_attention_heads": 4, "num_key_value_heads": 2, "max_position_embeddings": 1024,
        "initializer_range": 0.5, "tie_word_embeddings": False,
        "bos_token_id": ids(stand.bos) if stand.bos else None, "eos_token_id": ids(stand.eos),
        **stand.config})
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config)
    model.generation_config = GenerationConfig(
        bos_token_id=config.bos_token_id,
        eos_token_id=[ids(token) for token in stand.generation_eos] or config.eos_token_id)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


# What the stand-ins are fine-tuned to answer (tests/test_family_matrix.py, tests/stages/test_rl_stops.py)
QA = [("What is your name?", "My name is Quill."), ("Who made you?", "Lumen Labs made me.")]


def train_stand(folder, model_dir, method: dict, steps: int = 100, template: str | None = None):
    """Fine-tune a stand-in on QA (4 copies each) through tunelab train; the run directory."""
    import json

    import yaml

    from tunelab.config import load_config
    from tunelab.train import train

    data = folder / "data.jsonl"
    data.write_text("".join(json.dumps({"messages": [{"role": "user", "content": q},
                                                     {"role": "assistant", "content": a}]}) + "\n"
                            for q, a in QA * 4), encoding="utf-8")
    # lr 2e-2: at 3e-2 the deepseek-r1 stand garbled its second answer when packed batches came in random order;
    # at 1e-2 and 2e-2 every stand learns both answers, seeds 42, 1 and 2, random or length-grouped order.
    config = {"model": {"path": str(model_dir)}, "data": {"path": str(data), "template": template},
              "method": method,
              "train": {"max_steps": steps, "batch_size": 4, "lr": 2e-2, "precision": "fp32", "report_to": "none",
                        "logging_steps": steps},
              "output": {"dir": str(folder / "run")}}
    if template is None:
        del config["data"]["template"]
    (folder / "run.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")
    return train(load_config(folder / "run.yaml")).run_dir


def _tiny_config(kind: str, tokenizer, **changes):
    import transformers

    common = dict(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=96, num_hidden_layers=2,
                  num_attention_heads=4, num_key_value_heads=2, initializer_range=0.2,
                  bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id)
    configs = {
        "qwen2": lambda: transformers.Qwen2Config(**common),
        "qwen3": lambda: transformers.Qwen3Config(**common, head_dim=128),  # GGUF readers assume Qwen3's 128
        "mistral": lambda: transformers.MistralConfig(**common, sliding_window=None),
        "gemma2": lambda: transformers.Gemma2Config(**{**common, "num_attention_heads": 2, "num_key_value_heads": 1},
                                                    head_dim=256, sliding_window=4),  # Gemma 2's 256 query scale
        "phi3": lambda: transformers.Phi3Config(**common, pad_token_id=tokenizer.eos_token_id),
    }
    config = configs[kind]()
    for key, value in changes.items():
        setattr(config, key, value)
    return config


def tiny_family_model(kind: str, tokenizer, folder, **changes):
    """A saved tiny model of one architecture (random weights, random norms) with `tokenizer`: what GGUF export
    tests write and read back."""
    import torch
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(_tiny_config(kind, tokenizer, **changes))
    with torch.no_grad():  # random norms, so a wrong norm offset or a swapped norm shows in the logits
        for name, parameter in model.named_parameters():
            if parameter.ndim == 1:
                parameter.uniform_(0.5, 1.5)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder

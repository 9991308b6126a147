"""A byte-level BPE tokenizer as GGUF metadata, the way llama.cpp's convert_hf_to_gguf.py writes it
(`_set_vocab_gpt2`): tokenizer model "gpt2", the token list with a type per id, the merges, special token
ids and the chat template.

`tokenizer.ggml.pre` names the pre-tokenizer (how text is split before BPE); llama.cpp keys its split
regexes on that name. It is recognised from tokenizer.json's pre_tokenizer for the common layouts; an
unknown layout is written as "default" and reported, since llama.cpp would then split differently.
"""
from __future__ import annotations

import json

from tunelab.errors import TunelabError

NORMAL, CONTROL, USER_DEFINED, UNUSED = 1, 3, 4, 5  # gguf.TokenType values

LLAMA3_SPLIT = ("(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*"
                "|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+")
QWEN2_SPLIT = LLAMA3_SPLIT.replace("\\p{N}{1,3}", "\\p{N}")   # Qwen2/2.5/3: digits one at a time
SPLITS = {LLAMA3_SPLIT: "llama-bpe", QWEN2_SPLIT: "qwen2"}   # llama.cpp's names for these split regexes


def backend_json(tokenizer) -> dict:
    """tokenizer.json as saved, refused unless it is byte-level BPE (what "gpt2" means to llama.cpp)."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        raise TunelabError("GGUF export needs a fast tokenizer (tokenizer.json)")
    data = json.loads(backend.to_str())
    if data["model"]["type"] != "BPE" or "ByteLevel" not in json.dumps(data.get("pre_tokenizer")):
        raise TunelabError("GGUF export writes byte-level BPE tokenizers only (GPT-2/Llama 3/SmolLM style); "
                           f"this one is {data['model']['type']} with pre-tokenizer "
                           f"{(data.get('pre_tokenizer') or {}).get('type')}")
    return data


def pre_tokenizer_name(pre: dict | None) -> str | None:
    """llama.cpp's name for this pre-tokenizer layout; None when not recognised."""
    steps = pre.get("pretokenizers", []) if pre and pre["type"] == "Sequence" else [pre or {}]
    kinds = [step.get("type") for step in steps]
    if kinds == ["ByteLevel"] and steps[0].get("use_regex", True):
        return "gpt-2"
    if kinds == ["Digits", "ByteLevel"] and steps[0].get("individual_digits") and steps[1].get("use_regex", True):
        return "smollm"
    if kinds == ["Split", "ByteLevel"] and not steps[1].get("use_regex", True):
        regex = steps[0].get("pattern", {}).get("Regex")
        return SPLITS.get(regex)
    return None


def token_table(tokenizer, vocab_size: int) -> tuple[list[str], list[int]]:
    """Tokens and their types for ids 0..vocab_size-1; ids with no token (padded embeddings) are unused."""
    by_id = {index: token for token, index in tokenizer.get_vocab().items()}
    if max(by_id) >= vocab_size:
        raise TunelabError(f"the tokenizer has ids up to {max(by_id)} but the model embeds only {vocab_size}")
    added = tokenizer.added_tokens_decoder
    tokens, types = [], []
    for index in range(vocab_size):
        if index not in by_id:
            tokens.append(f"[PAD{index}]")
            types.append(UNUSED)
        elif index in added:
            tokens.append(added[index].content)
            types.append(CONTROL if added[index].special else USER_DEFINED)
        else:
            tokens.append(by_id[index])
            types.append(NORMAL)
    return tokens, types


def merges(data: dict) -> list[str]:
    """Merges as "a b" strings (tokenizer.json stores either that or [a, b] pairs)."""
    return [m if isinstance(m, str) else " ".join(m) for m in data["model"].get("merges", [])]


def adds_token(tokenizer, token_id: int | None, first: bool) -> bool:
    """Whether encoding text adds this special token at the start (first) or end: asked, not guessed from
    tokenizer_config flags that not every tokenizer class honours."""
    if token_id is None:
        return False
    ids = tokenizer("a")["input_ids"]
    return bool(ids) and ids[0 if first else -1] == token_id


def add_vocab(writer, tokenizer, vocab_size: int, end_of_turn: int | None) -> str | None:
    """Write the tokenizer into `writer`; returns a warning when llama.cpp may tokenize differently."""
    data = backend_json(tokenizer)
    tokens, types = token_table(tokenizer, vocab_size)
    pre = pre_tokenizer_name(data.get("pre_tokenizer"))
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre(pre or "default")
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    writer.add_token_merges(merges(data))
    _add_special_ids(writer, tokenizer, end_of_turn)
    if tokenizer.chat_template:
        writer.add_chat_template(tokenizer.chat_template)
    if pre is None:
        return ("the tokenizer's pre-tokenizer is not one llama.cpp names; written as 'default', so llama.cpp "
                "may split text differently from transformers")
    return None


def _add_special_ids(writer, tokenizer, end_of_turn: int | None) -> None:
    ids = {"bos": tokenizer.bos_token_id, "eos": tokenizer.eos_token_id, "unk": tokenizer.unk_token_id,
           "pad": tokenizer.pad_token_id}
    for name, token_id in ids.items():
        if token_id is not None:
            getattr(writer, f"add_{name}_token_id")(token_id)
    if end_of_turn is not None and end_of_turn != tokenizer.eos_token_id:
        writer.add_eot_token_id(end_of_turn)  # llama.cpp stops on it as well as on EOS
    writer.add_add_bos_token(adds_token(tokenizer, tokenizer.bos_token_id, first=True))
    writer.add_add_eos_token(adds_token(tokenizer, tokenizer.eos_token_id, first=False))

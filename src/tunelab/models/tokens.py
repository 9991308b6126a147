"""Tokens a chat template needs that the tokenizer lacks: added as special tokens, with embedding rows to train.

A base model has no `<|im_start|>`/`<|im_end|>` (or `<|eot_id|>`, `<end_of_turn>`...). Rendered as plain text,
`<|im_end|>` becomes six or so ordinary tokens: nothing a generator can stop on. So the template's tokens are
added as single special tokens, the embeddings (and an untied lm_head) grow by that many rows, and the method
trains those rows (`Method.trains_added_tokens`): a fine-tune that cannot emit its end-of-turn token never stops.
New rows start at the mean of the existing ones (transformers' `mean_resizing`), so they do not dominate the
softmax before they have learned anything.
"""
from __future__ import annotations

from torch import nn


def pad_id(tokenizer) -> int:
    """The id that fills padded positions: the tokenizer's pad token, else 0 (attention masks them anyway)."""
    return tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0


def special_tokens(tokenizer) -> set[str]:
    """Every token the tokenizer treats as one special unit."""
    added = {token.content for token in tokenizer.added_tokens_decoder.values() if token.special}
    return added | set(tokenizer.all_special_tokens)


def missing_tokens(tokenizer, wanted) -> list[str]:
    """The tokens of `wanted` that are not already single special tokens, in order."""
    have = special_tokens(tokenizer)
    return [token for token in dict.fromkeys(wanted) if token not in have]


def add_template_tokens(model: nn.Module, tokenizer, wanted) -> list[int]:
    """Add the missing tokens of `wanted` as special tokens and grow the model's embeddings to the tokenizer;
    return the ids of the rows that are new (a token already in the vocabulary as plain text keeps its row)."""
    missing = missing_tokens(tokenizer, wanted)
    if not missing:
        return []
    rows = model.get_input_embeddings().weight.shape[0]
    add_to_tokenizer(tokenizer, missing)
    fit_vocab(model, tokenizer)
    return [i for i in tokenizer.convert_tokens_to_ids(missing) if i >= rows]


def add_to_tokenizer(tokenizer, tokens) -> None:
    """`tokens` become single special tokens of the tokenizer (no model involved: `tunelab data` shows the
    data as training will tokenize it)."""
    from tokenizers import AddedToken

    tokenizer.add_tokens([AddedToken(token, special=True, normalized=False) for token in tokens],
                         special_tokens=True)


def fit_vocab(model: nn.Module, tokenizer) -> nn.Module:
    """Grow the embeddings (and lm_head) to the tokenizer's length when it holds added tokens (a run's saved
    tokenizer, loaded onto its base): the adapter or merged rows then land in place."""
    rows = model.get_input_embeddings().weight.shape[0]
    if len(tokenizer) > rows:
        model.resize_token_embeddings(len(tokenizer), mean_resizing=True)
    return model


def embedding_module_names(model: nn.Module) -> dict[str, bool]:
    """{name of the input embedding: True, name of an untied output embedding (lm_head): False}."""
    embed, head = model.get_input_embeddings(), model.get_output_embeddings()
    names = {}
    for name, module in model.named_modules():
        if module is embed:
            names[name] = True
        elif head is not None and module is head and head.weight is not embed.weight:
            names[name] = False
    return names


def model_type_of(resolved) -> str | None:
    """`model_type` from a local model directory's config.json (None for a hub id or a file without one):
    enough to find the family without loading the model."""
    import json
    from pathlib import Path

    path = Path(resolved.location) / "config.json"
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8")).get("model_type")
    except (OSError, ValueError):
        return None

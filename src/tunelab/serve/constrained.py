"""JSON answers (`response_format`): a grammar per answer masks, at each step, every token that cannot continue
valid JSON (or JSON matching the request's schema); the answer ends when the JSON is complete.

The grammar engine is llguidance (the Rust library vLLM and llama.cpp use for the same): it compiles JSON
schemas, computes a token mask in a few milliseconds on the CPU, and needs nothing besides itself (xgrammar, the
other common choice, pulls in triton).
"""
from __future__ import annotations

import json

import torch

from tunelab.serve.limits import APIError

OBJECT_SCHEMA = {"type": "object"}


def response_grammar(response_format: dict | None) -> str | None:
    """The llguidance grammar a `response_format` asks for; None for plain text. A bad schema is a 400."""
    kind = (response_format or {}).get("type", "text")
    if kind == "text":
        return None
    if kind == "json_object":
        schema = OBJECT_SCHEMA
    elif kind == "json_schema":
        schema = ((response_format.get("json_schema") or {}).get("schema"))
        if not isinstance(schema, dict):
            raise APIError(400, "response_format json_schema needs json_schema.schema, a JSON schema object",
                           param="response_format")
    else:
        raise APIError(400, f"response_format type {kind!r} is not one of text, json_object, json_schema",
                       param="response_format")
    from llguidance import LLMatcher

    grammar = LLMatcher.grammar_from_json_schema(json.dumps(schema))
    problem = LLMatcher.validate_grammar(grammar)   # the error's text; empty when the grammar is sound
    if problem:
        raise APIError(400, f"response_format: the JSON schema cannot be used: {problem}", param="response_format")
    return grammar


class Constraint:
    """One answer's grammar state: masks the logits before a token is chosen, then advances by that token."""

    def __init__(self, tokenizer, grammar: str):
        from llguidance import LLMatcher
        from llguidance.torch import allocate_token_bitmask

        self.matcher = LLMatcher(tokenizer, grammar)
        self.bitmask = allocate_token_bitmask(1, tokenizer.vocab_size)

    def mask(self, logits: torch.Tensor) -> None:
        """`logits`: [1, vocab] float, masked in place."""
        from llguidance.torch import apply_token_bitmask_inplace, fill_next_token_bitmask

        fill_next_token_bitmask(self.matcher, self.bitmask, 0)
        apply_token_bitmask_inplace(logits, self.bitmask)

    def advance(self, token: int) -> bool:
        """True when the grammar is complete (or can go no further)."""
        self.matcher.consume_token(token)
        return self.matcher.is_stopped() or self.matcher.is_error()


def guidance_tokenizer(engine):
    """The engine's tokenizer as llguidance sees it (built once per engine: ~0.4 s for a 49k vocabulary); the
    vocabulary is the model's output width, and every stop id may end the answer."""
    if getattr(engine, "_guidance_tokenizer", None) is None:
        import llguidance.hf

        engine._guidance_tokenizer = llguidance.hf.from_tokenizer(engine.tokenizer, n_vocab=engine.vocabulary,
                                                                  eos_token=list(engine.stop_ids))
    return engine._guidance_tokenizer

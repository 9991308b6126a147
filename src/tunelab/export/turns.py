"""Which token ends an assistant turn, read from the chat template itself.

`tunelab.data.templates.stop_token_ids` knows the end-of-turn tokens of the templates tunelab ships.
An exported model may carry any template, so here the template is asked directly: render a
conversation with a known answer and take the first special token after it, within the text that
training marks as the assistant's turn (`tunelab.data.tokenize.assistant_spans`). That token is what
training taught the model to emit, so it is what generation must stop on.
"""
from __future__ import annotations

from tunelab.data.templates import render_conversation, stop_token_ids

ANSWER = "Sure, the answer is 42."
SAMPLE = [
    {"role": "user", "content": "What is six times seven?"},
    {"role": "assistant", "content": ANSWER},
]


def end_of_turn_id(tokenizer) -> int | None:
    """The first special token after the answer in the rendered sample; None when the template ends the answer
    with no special token (then nothing tells generation to stop)."""
    if not tokenizer.chat_template:
        return None
    text = render_conversation(tokenizer, SAMPLE).rstrip()  # training's assistant span ends here too
    end = text.rfind(ANSWER)
    if end < 0:
        return None
    end += len(ANSWER)
    encoded = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    special = set(tokenizer.all_special_ids) | {i for i, t in tokenizer.added_tokens_decoder.items() if t.special}
    for token, (start, _) in zip(encoded["input_ids"], encoded["offset_mapping"]):
        if start >= end and token in special:
            return token
    return None


def generation_eos_ids(tokenizer) -> list[int]:
    """EOS ids a generation config should stop on: the tokenizer's EOS, known end-of-turn tokens, and the one
    this template actually uses."""
    ids = set(stop_token_ids(tokenizer))
    found = end_of_turn_id(tokenizer)
    if found is not None:
        ids.add(found)
    return sorted(ids)

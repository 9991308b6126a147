"""The tokens generation stops on, from one function for every generator.

A fine-tune that never stops talking is the most common complaint about fine-tuning tools: the model was
taught to end its answer with the template's end-of-turn token, and the generator waits for EOS. So every
generator in tunelab (chat, generate, eval and the report's samples, serve, GRPO, PPO) and a merged model's
`generation_config.json` take their stop ids from `stop_token_ids`:

- the tokenizer's EOS;
- the model's own `generation_config.eos_token_id`, an int or a list (Llama 3.1 lists three ids);
- the end-of-turn token this chat template actually renders after an answer (`end_of_turn_id`: the
  template is asked, so a template tunelab has never seen works too);
- the end-of-turn tokens of the family table (`data.families`) that the template uses.
"""
from __future__ import annotations

import copy

from tunelab.data.families import end_of_turn_tokens
from tunelab.data.templates import render_conversation

ANSWER = "Sure, the answer is 42."
SAMPLE = [
    {"role": "user", "content": "What is six times seven?"},
    {"role": "assistant", "content": ANSWER},
]

# Tokens that end an assistant turn (beyond the tokenizer's EOS) -> the families that use them
END_OF_TURN = end_of_turn_tokens()


def end_of_turn_id(tokenizer) -> int | None:
    """The first special token after the answer in a rendered sample conversation, within the text training
    marks as the assistant's turn: what training taught the model to emit. None when the template ends an
    answer with no special token (then nothing tells generation to stop but EOS)."""
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


def config_eos_ids(generation_config) -> list[int]:
    """`eos_token_id` of a GenerationConfig (or a dict read from generation_config.json): int, list or None."""
    if generation_config is None:
        return []
    eos = generation_config.get("eos_token_id") if isinstance(generation_config, dict) else getattr(
        generation_config, "eos_token_id", None)
    if eos is None:
        return []
    return [int(eos)] if isinstance(eos, int) else [int(i) for i in eos]


def stop_token_ids(tokenizer, generation_config=None) -> list[int]:
    """Every id generation must stop on (see the module's docstring), sorted."""
    ids = set(config_eos_ids(generation_config))
    if tokenizer.eos_token_id is not None:
        ids.add(tokenizer.eos_token_id)
    vocab, template = tokenizer.get_vocab(), tokenizer.chat_template or ""
    ids.update(vocab[token] for token in END_OF_TURN if token in vocab and token in template)
    found = end_of_turn_id(tokenizer)
    if found is not None:
        ids.add(found)
    return sorted(ids)


def with_end_of_turn_as_eos(tokenizer):
    """A copy of the tokenizer whose EOS is the token the template ends an answer with, for libraries that stop
    generation and cut completions at the one `eos_token_id` (TRL's GRPO and PPO): a Gemma, Phi-3 or base-Llama-3
    chat model ends its answer with <end_of_turn>, <|end|>, <|eot_id|>, not with EOS. The run's own tokenizer is
    left as it is (it is what the run saves)."""
    copied = copy.deepcopy(tokenizer)
    end = end_of_turn_id(tokenizer)
    if end is not None and end != tokenizer.eos_token_id:
        copied.eos_token = tokenizer.convert_ids_to_tokens(end)
    return copied


def cut_after_stop(ids: list[int], stops) -> int:
    """The length of `ids` up to and with the first stop id (all of it when there is none)."""
    return next((index + 1 for index, token in enumerate(ids) if token in stops), len(ids))

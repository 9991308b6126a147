"""Chat templates: the tokenizer's own by default, shipped fallbacks by name.

Every component that turns a conversation into text — training, generate, chat and later the
server — calls `render_conversation`, so train and inference see exactly the same text. The
template in force is set on the tokenizer (`tokenizer.chat_template`) and saved with the run.
"""
from __future__ import annotations

import difflib

from tunelab.errors import TunelabError

CHATML = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

ALPACA = (
    "{% for message in messages %}"
    "{% if message['role'] == 'system' %}{{ message['content'] + '\n\n' }}"
    "{% elif message['role'] == 'user' %}{{ '### Instruction:\n' + message['content'] + '\n\n' }}"
    "{% else %}{{ '### Response:\n' + message['content'] + eos_token + '\n\n' }}{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '### Response:\n' }}{% endif %}"
)

LLAMA2 = (
    "{% if messages[0]['role'] == 'system' %}"
    "{% set system = '<<SYS>>\n' + messages[0]['content'] + '\n<</SYS>>\n\n' %}{% set messages = messages[1:] %}"
    "{% else %}{% set system = '' %}{% endif %}"
    "{% for message in messages %}"
    "{% if message['role'] == 'user' %}"
    "{{ bos_token + '[INST] ' + (system if loop.first else '') + message['content'] + ' [/INST]' }}"
    "{% else %}{{ ' ' + message['content'] + ' ' + eos_token }}{% endif %}"
    "{% endfor %}"
)

LLAMA3 = (
    "{{ bos_token }}"
    "{% for message in messages %}"
    "{{ '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n' + message['content'] + '<|eot_id|>' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}"
)

TEMPLATES = {"chatml": CHATML, "alpaca": ALPACA, "llama2": LLAMA2, "llama3": LLAMA3}


def resolve_template(tokenizer, name: str | None) -> str:
    """The Jinja template for `data.template`: None means the tokenizer's own (chatml if it has none)."""
    if name is None:
        return tokenizer.chat_template or CHATML
    return TEMPLATES[check_template(name)]


def check_template(name: str) -> str:
    """`name` if it is a shipped template, else a TunelabError that lists them and suggests the closest."""
    if name in TEMPLATES:
        return name
    hint = difflib.get_close_matches(name, list(TEMPLATES), n=1)
    suggestion = f"; did you mean {hint[0]!r}?" if hint else ""
    raise TunelabError(
        f"data.template: unknown template {name!r}{suggestion} (available: {', '.join(TEMPLATES)}, "
        "or omit it to use the tokenizer's own)"
    )


def render_conversation(tokenizer, messages: list[dict], add_generation_prompt: bool = False) -> str:
    """Render messages with the tokenizer's template in force — the one function everybody uses."""
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=add_generation_prompt)

"""Preference (DPO/ORPO/SimPO/reward model), KTO and prompt-only (PPO/GRPO) data as canonical examples.

Canonical forms, which the trainers consume as they are:
  preference: {"prompt": [...], "chosen": [assistant messages], "rejected": [assistant messages], "source"}
  kto:        {"prompt": [...], "completion": [assistant messages], "label": bool, "source"}
  prompt:     {"prompt": [...], "extra": {other str/int/float/bool columns}, "source"}
A prompt is a message list with an optional system message first and a user message last: every trainer
appends the response after it. Readers take TRL's column layouts and LLaMA-Factory's (ranking data in
sharegpt or alpaca formatting, KTO data with a kto_tag), so files prepared for either work unchanged.
"""

from __future__ import annotations

from typing import Any

from tunelab.data.reasoning import inline_reasoning
from tunelab.data.tools import as_text_tags
from tunelab.data.formats import (DEFAULT_SPECS, RENDER, Record, Spec, _history, _system_messages, _tools,
                                  _value, conversation_messages, parse_turn, register_format)
from tunelab.errors import TunelabError

Messages = list[dict[str, str]]

# Sharegpt role tags by default: message objects with OpenAI role/content keys are read as well.
PREFERENCE_SPEC: Spec = {**DEFAULT_SPECS["sharegpt"], "prompt": "prompt", "query": "input", "history": "history",
                         "chosen": "chosen", "rejected": "rejected", "response": "output"}
KTO_SPEC: Spec = {**DEFAULT_SPECS["sharegpt"], "messages": "messages", "prompt": "prompt", "query": "input",
                  "history": "history", "response": "completion", "kto_tag": "label"}
PROMPT_SPEC: Spec = {**DEFAULT_SPECS["sharegpt"], "prompt": "prompt"}

# Tried after the dataset's own column name, so TRL and LLaMA-Factory files both load without a mapping.
FALLBACK_COLUMNS = {"messages": ("conversations", "messages"), "prompt": ("prompt", "instruction")}

PROMPT_HINT = ("a 'prompt' or 'instruction' column, a 'conversations' or 'messages' list, "
               "or chosen/rejected conversations that start with it")

LABELS = {"true": True, "false": False, "1": True, "0": False}


# ---- shared pieces ------------------------------------------------------------------------------


def _column(record: Record, spec: Spec, key: str) -> str | None:
    """The record's column for `key`: the dataset's own name first, then the usual alternatives."""
    for column in (spec[key], *FALLBACK_COLUMNS.get(key, ())):
        if record.get(column) is not None:
            return column
    return None


def _messages(value: Any, role: str, where: str, spec: Spec) -> Messages:
    """A cell holding text (one `role` message), one message object (LLaMA-Factory) or a list of them (TRL)."""
    if isinstance(value, str):
        return [RENDER[role](value)]
    if isinstance(value, dict):
        value = [value]
    if not isinstance(value, list):
        raise TunelabError(f"{where} must be text or a list of messages, got {type(value).__name__}")
    return plain_messages([parse_turn(turn, index, where, spec) for index, turn in enumerate(value, start=1)])


def plain_messages(messages: Messages) -> Messages:
    """TRL renders preference data with the template itself: reasoning goes into the answer as a think block and
    tool calls/results become text tags (tools are in the system prompt, `_with_system`), as before tool support."""
    return as_text_tags([inline_reasoning(m) if m["role"] == "assistant" else m for m in messages], None)


def _with_system(messages: Messages, record: Record, source: str, spec: Spec) -> Messages:
    """Put the system column (and any tools) first; a system turn in the messages wins over the column,
    as in formats.conversation_messages."""
    system = _value(record, spec["system"], source)
    if messages and messages[0]["role"] == "system":
        system, messages = messages[0]["content"], messages[1:]
    return _system_messages(system, _tools(record, spec["tools"], source)) + messages


def prompt_messages(record: Record, column: str, source: str, spec: Spec) -> Messages:
    """A prompt column: text (alpaca: joined with the query column, after any history) or a message list."""
    value = record[column]
    if not isinstance(value, str):
        return _with_system(_messages(value, "user", f"{source}: column '{column}'", spec), record, source, spec)
    query = _value(record, spec["query"], source) if "query" in spec else None
    history = _history(record, spec["history"], source) if "history" in spec else []
    turns = [RENDER[role](text) for pair in history for role, text in zip(("user", "assistant"), pair)]
    text = "\n\n".join(part for part in (value, query) if part)
    return _with_system(turns + [RENDER["user"](text)], record, source, spec)


def _conversation(record: Record, source: str, spec: Spec) -> Messages | None:
    """The sharegpt/OpenAI conversation column's messages, or None when the record has none."""
    column = _column(record, spec, "messages")
    if column is None:
        return None
    return _with_system(plain_messages(conversation_messages(record, source, {**spec, "messages": column})),
                        record, source, spec)


def check_prompt(messages: Messages, source: str) -> Messages:
    """The response is appended after the prompt, so it must end with the user's turn."""
    if not messages:
        raise TunelabError(f"{source}: the prompt has no messages")
    for index, message in enumerate(messages, start=1):
        if message["role"] == "system" and index > 1:
            raise TunelabError(f"{source}: prompt message {index} is a system message; only the first may be")
        if not message["content"].strip():
            raise TunelabError(f"{source}: prompt message {index} is empty")
    last = messages[-1]["role"]
    if last != "user":
        raise TunelabError(f"{source}: the prompt must end with a user message, got '{last}' last")
    return messages


def check_response(messages: Messages, source: str, what: str) -> Messages:
    """Only assistant text is scored or trained on; an empty or non-assistant response is a data bug."""
    if not messages:
        raise TunelabError(f"{source}: '{what}' has no messages")
    for index, message in enumerate(messages, start=1):
        if message["role"] != "assistant":
            raise TunelabError(
                f"{source}: '{what}' message {index} must be from the assistant, got '{message['role']}'"
            )
        if not message["content"].strip():
            raise TunelabError(f"{source}: '{what}' message {index} is empty")
    return messages


# ---- preference ---------------------------------------------------------------------------------


def convert_preference(record: Record, source: str, spec: Spec) -> dict:
    chosen, rejected = _chosen_rejected(record, source, spec)
    prompt = _conversation(record, source, spec)
    if prompt is None and (column := _column(record, spec, "prompt")):
        prompt = prompt_messages(record, column, source, spec)
    if prompt is None:  # TRL's implicit prompt: whole conversations that share it
        prompt, chosen, rejected = split_shared_prompt(chosen, rejected, source)
        prompt = _with_system(prompt, record, source, spec)
    return finish_preference(prompt, chosen, rejected, source)


def _chosen_rejected(record: Record, source: str, spec: Spec) -> tuple[Messages, Messages]:
    """chosen/rejected columns, or LLaMA-Factory's older alpaca ranking form: output = [chosen, rejected]."""
    chosen, rejected, output = (record.get(spec[key]) for key in ("chosen", "rejected", "response"))
    if chosen is None and rejected is None and isinstance(output, list):
        return _ranked_output(output, spec["response"], source)
    for column, value in ((spec["chosen"], chosen), (spec["rejected"], rejected)):
        if value is None:
            raise TunelabError(f"{source}: missing field '{column}' (preference data expects a prompt, "
                               f"'{spec['chosen']}' and '{spec['rejected']}')")
    return (_messages(chosen, "assistant", f"{source}: column '{spec['chosen']}'", spec),
            _messages(rejected, "assistant", f"{source}: column '{spec['rejected']}'", spec))


def _ranked_output(output: list, column: str, source: str) -> tuple[Messages, Messages]:
    if len(output) != 2 or not all(isinstance(text, str) for text in output):
        raise TunelabError(f"{source}: column '{column}' must be [chosen, rejected]: a list of two texts")
    return [RENDER["assistant"](output[0])], [RENDER["assistant"](output[1])]


def split_shared_prompt(chosen: Messages, rejected: Messages, source: str) -> tuple[Messages, ...]:
    """TRL's implicit prompt: the messages both conversations start with are the prompt."""
    if chosen == rejected:
        raise TunelabError(f"{source}: chosen and rejected are the same")
    shared = 0
    while shared < min(len(chosen), len(rejected)) and chosen[shared] == rejected[shared]:
        shared += 1
    if shared == 0:
        raise TunelabError(f"{source}: missing field 'prompt' (preference data needs a prompt: {PROMPT_HINT})")
    return chosen[:shared], chosen[shared:], rejected[shared:]


def finish_preference(prompt: Messages, chosen: Messages, rejected: Messages, source: str) -> dict:
    check_prompt(prompt, source)
    check_response(chosen, source, "chosen")
    check_response(rejected, source, "rejected")
    if chosen == rejected:  # no preference signal: the DPO loss is constant on such a pair
        raise TunelabError(f"{source}: chosen and rejected are the same")
    return {"prompt": prompt, "chosen": chosen, "rejected": rejected, "source": source}


# ---- kto ----------------------------------------------------------------------------------------


def convert_kto(record: Record, source: str, spec: Spec) -> dict:
    prompt, completion = _kto_pair(record, source, spec)
    check_prompt(prompt, source)
    check_response(completion, source, "completion")
    label = read_label(record, spec["kto_tag"], source)
    return {"prompt": prompt, "completion": completion, "label": label, "source": source}


def _kto_pair(record: Record, source: str, spec: Spec) -> tuple[Messages, Messages]:
    """LLaMA-Factory: a conversation whose last turn is the completion; TRL: prompt and completion columns."""
    conversation = _conversation(record, source, spec)
    if conversation is not None:
        last = conversation[-1]["role"] if conversation else "nothing"
        if last != "assistant":
            raise TunelabError(f"{source}: the conversation must end with the assistant's completion, got '{last}'")
        return conversation[:-1], conversation[-1:]
    column, response = _column(record, spec, "prompt"), spec["response"]
    if column is None or record.get(response) is None:
        missing = response if column else spec["prompt"]
        raise TunelabError(f"{source}: missing field '{missing}' (KTO data expects a '{spec['messages']}' list "
                           f"ending with the completion, or '{spec['prompt']}' and '{response}' columns)")
    completion = _messages(record[response], "assistant", f"{source}: column '{response}'", spec)
    return prompt_messages(record, column, source, spec), completion


def read_label(record: Record, column: str, source: str) -> bool:
    """KTO's desirable/undesirable flag: bool, 0/1 or "true"/"false" (CSV cells are always text)."""
    value = record.get(column)
    if value is None:
        raise TunelabError(f"{source}: missing field '{column}' (KTO data needs a true/false label)")
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in LABELS:
        return LABELS[value.strip().lower()]
    raise TunelabError(f"{source}: column '{column}' must be true or false (or 1/0), got {value!r}")


# ---- prompt-only ---------------------------------------------------------------------------------


def convert_prompt(record: Record, source: str, spec: Spec) -> dict:
    """PPO/GRPO generate the response themselves; other scalar columns (answers, ids) go to reward functions."""
    column = spec["prompt"]
    if record.get(column) is None:
        raise TunelabError(f"{source}: missing field '{column}' (prompt data expects a '{column}' column: "
                           "text or a list of messages)")
    prompt = check_prompt(prompt_messages(record, column, source, spec), source)
    used = {column, spec["system"], spec["tools"]}
    extra = {key: value for key, value in record.items()
             if key not in used and isinstance(value, (str, int, float, bool))}
    return {"prompt": prompt, "extra": extra, "source": source}


register_format("preference", convert_preference, PREFERENCE_SPEC,
                ("prompt", "chosen", "rejected"), ("conversations", "chosen", "rejected"),
                ("messages", "chosen", "rejected"), ("instruction", "chosen", "rejected"), ("chosen", "rejected"))
register_format("kto", convert_kto, KTO_SPEC,
                ("messages", "label"), ("conversations", "label"), ("prompt", "completion", "label"))
register_format("prompt", convert_prompt, PROMPT_SPEC, ("prompt",))

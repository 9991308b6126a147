"""Converters from each supported data format to the canonical example dicts.

Canonical forms: {"messages": [{"role", "content"}, ...], "source": "file:LINE"} for conversations and
{"text": str, "source": "file:LINE"} for plain text. Conversations may carry `"tools"` (OpenAI function tools),
assistant `tool_calls`, `tool` messages and assistant `reasoning_content` (tunelab.data.tools / reasoning); the chat
template renders them (tunelab.data.templates), or text tags where it cannot.
"""

from __future__ import annotations

import difflib
import json
from typing import Any, Callable

from tunelab.data.reasoning import REASONING, split_reasoning
from tunelab.data.tools import normalize_call, normalize_tools, render_tools
from tunelab.errors import TunelabError

Record = dict[str, Any]
Spec = dict[str, str]  # column names and role tags of one dataset (LLaMA-Factory "columns" + "tags")
Converter = Callable[[Record, str, Spec], dict]

# Defaults follow LLaMA-Factory's data/README.md, so its dataset_info.json files work unchanged.
DEFAULT_SPECS: dict[str, Spec] = {
    "alpaca": {"prompt": "instruction", "query": "input", "response": "output", "system": "system",
               "history": "history"},
    "sharegpt": {"messages": "conversations", "system": "system", "tools": "tools", "role_tag": "from",
                 "content_tag": "value", "user_tag": "human", "assistant_tag": "gpt",
                 "observation_tag": "observation", "function_tag": "function_call", "system_tag": "system"},
    "messages": {"messages": "messages", "system": "system", "tools": "tools", "role_tag": "role",
                 "content_tag": "content", "user_tag": "user", "assistant_tag": "assistant",
                 "observation_tag": "tool", "function_tag": "function_call", "system_tag": "system"},
    "text": {"prompt": "text"},
}

# Role names accepted in every conversation format besides the dataset's own tags (which win).
ROLE_ALIASES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant",
                "system": "system", "observation": "observation", "tool": "observation",
                "function": "observation", "function_call": "function_call"}

# How each internal role's text becomes a plain message (preference/KTO data: tools there stay text tags).
RENDER: dict[str, Callable[[str], dict[str, str]]] = {
    "system": lambda text: {"role": "system", "content": text},
    "user": lambda text: {"role": "user", "content": text},
    "assistant": lambda text: {"role": "assistant", "content": text},
    "function_call": lambda text: {"role": "assistant", "content": f"<tool_call>\n{text}\n</tool_call>"},
    "observation": lambda text: {"role": "user", "content": f"<tool_response>\n{text}\n</tool_response>"},
}


def shown(names: Any) -> str:
    """User-supplied names (a list, or one) for a one-line message: as written when printable, else escaped
    ('\\n', not a line break)."""
    items = names if isinstance(names, (list, tuple, dict)) else [names]
    return ", ".join(name if isinstance(name, str) and name.isprintable() and name else repr(name) for name in items)


def finish(messages: list[dict], source: str, tools: list | None = None) -> dict:
    """Check the shape every training conversation needs and wrap it as a canonical example."""
    if not messages:
        raise TunelabError(f"{source}: conversation has no messages")
    for index, message in enumerate(messages[1:], start=2):
        if message["role"] == "system":
            raise TunelabError(f"{source}: system message {index} must be the first message (one at most)")
    last = messages[-1]["role"]
    if last != "assistant":
        raise TunelabError(f"{source}: the last message must be from the assistant, got '{last}'")
    return {"messages": messages, "source": source, **({"tools": tools} if tools else {})}


def _value(record: Record, column: str, source: str, kinds: tuple[type, ...] = (str,)) -> Any:
    """An optional column; None/"" count as absent. CSV cells holding JSON lists are decoded."""
    value = record.get(column)
    if value is None or value == "":
        return None
    if isinstance(value, str) and str not in kinds:
        try:
            value = json.loads(value)
        except json.JSONDecodeError as err:
            raise TunelabError(f"{source}: column '{column}' is not valid JSON ({err.msg})") from None
    if not isinstance(value, kinds):
        expected = " or ".join(kind.__name__ for kind in kinds)
        raise TunelabError(f"{source}: column '{column}' must be {expected}, got {type(value).__name__}")
    return value


def _system_messages(system: str | None, tools: list | None) -> list[dict[str, str]]:
    """The system message; `tools` (preference data, which TRL renders) go into it as text."""
    if tools:
        system = render_tools(system or "", [tool.get("function", tool) for tool in tools]).lstrip("\n")
    return [RENDER["system"](system)] if system else []


# ---- alpaca -------------------------------------------------------------------------------------


def convert_alpaca(record: Record, source: str, spec: Spec) -> dict:
    prompt, query, response = spec["prompt"], spec["query"], spec["response"]
    for column in (prompt, response):
        if record.get(column) is None:
            raise TunelabError(
                f"{source}: missing field '{column}' (alpaca format expects {prompt}, {query}, {response})"
            )
    instruction, answer = _value(record, prompt, source) or "", _value(record, response, source) or ""
    extra = _value(record, query, source)
    messages = _system_messages(_value(record, spec["system"], source), None)
    for user, assistant in _history(record, spec["history"], source):
        messages += [RENDER["user"](user), _answer({}, assistant, source)]
    user_text = f"{instruction}\n\n{extra}" if extra else instruction
    messages += [RENDER["user"](user_text), _answer(record, answer, source)]
    return finish(messages, source)


def _answer(turn: dict, content: str, where: str, calls: list | None = None) -> dict:
    """An assistant message: its reasoning (a `reasoning_content` field or a leading think block) apart from the
    answer, and its tool calls."""
    reasoning, content = split_reasoning(turn, content, where)
    message = {"role": "assistant", "content": content}
    if reasoning is not None:
        message[REASONING] = reasoning
    if calls:
        message["tool_calls"] = calls
    return message


def _history(record: Record, column: str, source: str) -> list[tuple[str, str]]:
    history = _value(record, column, source, (list,)) or []
    for pair in history:
        if not (isinstance(pair, (list, tuple)) and len(pair) == 2 and all(isinstance(t, str) for t in pair)):
            raise TunelabError(f"{source}: column '{column}' must be a list of [user, assistant] string pairs")
    return [tuple(pair) for pair in history]


# ---- sharegpt / OpenAI messages -------------------------------------------------------------------


def convert_conversation(record: Record, source: str, spec: Spec) -> dict:
    return finish(conversation_messages(record, source, spec), source, _tools(record, spec["tools"], source))


def conversation_messages(record: Record, source: str, spec: Spec) -> list[dict]:
    """The canonical messages of a sharegpt/OpenAI conversation column, whatever role comes last (its tools are
    the example's `tools`, see `convert_conversation`)."""
    column = spec["messages"]
    turns = _value(record, column, source, (list,))
    if turns is None:
        raise TunelabError(f"{source}: missing field '{column}' (expected a list of messages)")
    roles = turn_roles(spec)
    messages = [_message(turn, index, source, spec, roles) for index, turn in enumerate(turns, start=1)]
    system = _value(record, spec["system"], source)
    if messages and messages[0]["role"] == "system":  # a system turn in the conversation wins over the column
        system = messages.pop(0)["content"]
    return _system_messages(system, None) + messages


# LLaMA-Factory tag key -> the internal role it names.
_TAG_ROLES = {"user_tag": "user", "assistant_tag": "assistant", "system_tag": "system",
              "observation_tag": "observation", "function_tag": "function_call"}


def turn_roles(spec: Spec) -> dict[str, str]:
    """Role name in the data -> internal role: the dataset's own tags, then the usual aliases."""
    roles = {spec[tag]: role for tag, role in _TAG_ROLES.items() if tag in spec}
    for alias, role in ROLE_ALIASES.items():
        roles.setdefault(alias, role)
    return roles


def parse_turn(turn: Any, index: int, source: str, spec: Spec) -> dict:
    """One message object (sharegpt or OpenAI keys) as a canonical message."""
    return _message(turn, index, source, spec, turn_roles(spec))


def _message(turn: Any, index: int, source: str, spec: Spec, roles: dict[str, str]) -> dict:
    if not isinstance(turn, dict):
        raise TunelabError(f"{source}: message {index} must be an object, got {type(turn).__name__}")
    role_key, content_key = spec["role_tag"], spec["content_tag"]
    if role_key not in turn and "role" in turn:  # OpenAI-style turns in a sharegpt-shaped file
        role_key, content_key = "role", "content"
    name = turn.get(role_key)
    if not isinstance(name, str) or name not in roles:  # a list or object is no role (and is unhashable)
        raise TunelabError(f"{source}: message {index} has unknown role {name!r} (allowed: {shown(roles)})")
    role, where = roles[name], f"{source}: message {index}"
    content = _content(turn, content_key, role, where)
    if role == "function_call":  # ShareGPT: the assistant's call(s) as JSON text
        return _answer({}, "", where, [normalize_call(call, n, where) for n, call in enumerate(_call_json(content, where))])
    if role == "observation":
        return _tool_result(turn, content)
    if role == "assistant":
        calls = turn.get("tool_calls") or []
        if isinstance(turn.get("function_call"), dict) and not calls:  # OpenAI's older single-call field
            calls = [turn["function_call"]]
        if not isinstance(calls, list):
            raise TunelabError(f"{where}: field 'tool_calls' must be a list of calls, got {type(calls).__name__}")
        return _answer(turn, content, where, [normalize_call(call, n, where) for n, call in enumerate(calls)])
    return {"role": role, "content": content}


def _tool_result(turn: dict, content: str) -> dict:
    message = {"role": "tool", "content": content}
    for key in ("tool_call_id", "name"):
        if isinstance(turn.get(key), str):
            message[key] = turn[key]
    return message


def _call_json(text: str, where: str) -> list:
    try:
        calls = json.loads(text)
    except json.JSONDecodeError as err:
        raise TunelabError(f"{where}: a function_call turn must hold JSON like {{\"name\": ..., \"arguments\": "
                           f"{{...}}}} ({err.msg})") from None
    return calls if isinstance(calls, list) else [calls]


def _content(turn: dict, key: str, role: str, where: str) -> str:
    content = turn.get(key)
    if isinstance(content, list):  # OpenAI content parts
        content = _parts_text(content, where)
    if role in ("function_call", "observation") and isinstance(content, (dict, list)):
        content = json.dumps(content, ensure_ascii=False)
    if content is None and role == "assistant" and (turn.get("tool_calls") or turn.get("function_call")):
        content = ""  # an OpenAI assistant turn that only calls tools has null content
    if not isinstance(content, str):
        raise TunelabError(f"{where}: field '{key}' must be text, got {type(content).__name__}")
    return content


def _parts_text(parts: list, where: str) -> str:
    if not all(isinstance(p, dict) and p.get("type") == "text" and isinstance(p.get("text", ""), str) for p in parts):
        raise TunelabError(f"{where}: only text content parts are supported (expected objects like "
                           '{"type": "text", "text": "..."})')
    return "".join(part.get("text", "") for part in parts)


def _tools(record: Record, column: str, source: str) -> list | None:
    return normalize_tools(_value(record, column, source, (list, dict)), source)


# ---- text ---------------------------------------------------------------------------------------


def convert_text(record: Record, source: str, spec: Spec) -> dict:
    column = spec["prompt"]
    if column not in record:
        raise TunelabError(f"{source}: missing field '{column}' (text format expects a '{column}' column)")
    text = record[column]
    if not isinstance(text, str) or not text.strip():
        raise TunelabError(f"{source}: field '{column}' must be non-empty text")
    return {"text": text, "source": source}


# ---- registry and auto-detection ----------------------------------------------------------------
# Other modules add formats with `register_format` (preference, kto, classification, prompt).

CONVERTERS: dict[str, Converter] = {
    "alpaca": convert_alpaca,
    "sharegpt": convert_conversation,
    "messages": convert_conversation,
    "text": convert_text,
}

ACCEPTED = "expect"  # optional column of accepted answers, kept on any format's examples

# Columns that identify a format in a record; the most specific match (most columns) wins.
DETECT: list[tuple[str, tuple[str, ...]]] = [
    ("messages", ("messages",)),
    ("sharegpt", ("conversations",)),
    ("alpaca", ("instruction", "output")),
    ("text", ("text",)),
]


def register_format(name: str, converter: Converter, spec: Spec, *detect: tuple[str, ...]) -> None:
    CONVERTERS[name] = converter
    DEFAULT_SPECS[name] = spec
    DETECT.extend((name, columns) for columns in detect)


def check_format(name: str) -> str:
    if name not in CONVERTERS:
        close = difflib.get_close_matches(name, list(CONVERTERS), n=1)
        hint = f"; did you mean '{close[0]}'?" if close else ""
        raise TunelabError(f"unknown data format '{name}' (supported: {', '.join(CONVERTERS)}){hint}")
    return name


def detect_format(record: Record, source: str) -> str:
    matches = [(len(columns), name) for name, columns in DETECT if all(column in record for column in columns)]
    if matches:
        return max(matches, key=lambda match: match[0])[1]  # max keeps the first of equally specific ones
    hints = "; ".join(f"{name}: {', '.join(columns)}" for name, columns in DETECT)
    found = shown(record) or "none"
    raise TunelabError(f"{source}: cannot tell the data format from columns [{found}] (expected {hints})")


def convert_records(records: list[tuple[Record, str]], format: str | None = None,
                    overrides: Spec | None = None) -> list[dict]:
    """Convert located records with one format (auto-detected from the first record when None)."""
    if not records:
        return []
    name = check_format(format) if format else detect_format(*records[0])
    spec = {**DEFAULT_SPECS[name], **(overrides or {})}
    converter = CONVERTERS[name]
    return [_with_accepted(converter(record, source, spec), record, source) for record, source in records]


def _with_accepted(example: dict, record: Record, source: str) -> dict:
    """Keep an `expect` column (accepted answers, e.g. the probe sets) for evaluation's `contains` metric."""
    accepted = record.get(ACCEPTED)
    if accepted is None:
        return example
    if not (isinstance(accepted, list) and all(isinstance(a, str) for a in accepted)):
        raise TunelabError(f"{source}: column '{ACCEPTED}' must be a list of accepted answers (strings)")
    return {**example, ACCEPTED: accepted}

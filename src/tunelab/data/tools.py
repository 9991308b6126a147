"""Tool use in conversations: canonical OpenAI-shaped tool calls, and the text-tag rendering for templates without
tool support.

Canonical form (what every data format becomes, and what `serve` receives): the example's `tools` is a list of
`{"type": "function", "function": {"name", "description", "parameters"}}`; an assistant message calling tools has
`tool_calls: [{"id", "type": "function", "function": {"name", "arguments": {...}}}]`; a tool's result is a
`{"role": "tool", "content", "tool_call_id"?, "name"?}` message. Templates with tool support render these
themselves (`apply_chat_template(messages, tools=...)`); for the others `as_text_tags` writes what tunelab wrote
before: the tool list in the system prompt, calls as `<tool_call>` JSON, results as `<tool_response>` user turns.
"""
from __future__ import annotations

import json
from typing import Any

from tunelab.errors import TunelabError

TOOLS_PROMPT = (
    "\n\n# Tools\nYou may call these tools:\n<tools>\n{tools}\n</tools>\n"
    'To call a tool, reply with <tool_call>{{"name": ..., "arguments": ...}}</tool_call>.'
)


def render_tools(system: str, tools: list) -> str:
    """Append tool definitions to a system prompt (the text-tag fallback; inference uses the same)."""
    return system + TOOLS_PROMPT.format(tools=json.dumps(tools, ensure_ascii=False))


def normalize_tools(tools: Any, where: str) -> list[dict] | None:
    """Tool definitions as OpenAI function tools: LLaMA-Factory's bare `{"name", "description", "parameters"}`
    entries are wrapped as `{"type": "function", "function": ...}`."""
    if tools is None:
        return None
    tools = [tools] if isinstance(tools, dict) else tools
    if not isinstance(tools, list):
        raise TunelabError(f"{where}: tools must be a list of tool definitions, got {type(tools).__name__}")
    normalized = []
    for tool in tools:
        if not isinstance(tool, dict):
            raise TunelabError(f"{where}: each tool must be an object, got {type(tool).__name__}")
        if isinstance(tool.get("function"), dict):
            function = tool["function"]
            tool = {"type": tool.get("type", "function"), **tool}
        else:
            function, tool = tool, {"type": "function", "function": tool}
        if not isinstance(function.get("name"), str) or not function["name"]:
            raise TunelabError(f"{where}: each tool needs a function name")
        normalized.append(tool)
    return normalized or None


def call_id(index: int) -> str:
    """A tool-call id for calls the data gives none: nine alphanumerics (Mistral's templates require that length)."""
    return f"call{index:05d}"


def normalize_call(call: Any, index: int, where: str) -> dict:
    """One OpenAI `tool_calls` entry (or a ShareGPT `function_call` object `{"name", "arguments"}`) in canonical
    form; arguments given as a JSON string become an object (templates write `arguments | tojson`), other strings
    are kept as written."""
    function = call.get("function", call) if isinstance(call, dict) else None
    if not isinstance(function, dict) or not isinstance(function.get("name"), str) or not function["name"]:
        raise TunelabError(f"{where}: each tool call needs a function name (expected {{\"name\": ..., "
                           "\"arguments\": {...}}, or OpenAI's {\"function\": {...}})")
    arguments = function.get("arguments", function.get("parameters", {}))
    if isinstance(arguments, str):
        try:
            arguments = json.loads(arguments)
        except json.JSONDecodeError:
            pass  # keep the raw string: the model should learn exactly what was in the data
    return {"id": call.get("id") or call_id(index), "type": "function",
            "function": {"name": function["name"], "arguments": arguments}}


def call_json(call: dict) -> str:
    function = call["function"]
    return json.dumps({"name": function["name"], "arguments": function["arguments"]}, ensure_ascii=False)


def as_text_tags(messages: list[dict], tools: list | None) -> list[dict]:
    """Messages for a template without tool support: tools appended to the system prompt, each call as a
    `<tool_call>` JSON block after the turn's text, tool results as `<tool_response>` user turns."""
    out = []
    for message in messages:
        role = message["role"]
        if role == "tool":
            out.append({"role": "user", "content": f"<tool_response>\n{message.get('content') or ''}\n</tool_response>"})
        elif message.get("tool_calls"):
            calls = [f"<tool_call>\n{call_json(call)}\n</tool_call>" for call in message["tool_calls"]]
            text = "\n".join(filter(None, [message.get("content") or "", *calls]))
            out.append({**{k: v for k, v in message.items() if k != "tool_calls"}, "content": text})
        else:
            out.append(message)
    if tools:
        tools = [tool.get("function", tool) for tool in tools]  # the bare definitions, as tunelab wrote them before
        if out and out[0]["role"] == "system":
            out[0] = {**out[0], "content": render_tools(out[0]["content"], tools)}
        else:
            out.insert(0, {"role": "system", "content": render_tools("", tools).lstrip("\n")})
    return out


def uses_tools(messages: list[dict]) -> bool:
    return any(message["role"] == "tool" or message.get("tool_calls") for message in messages)

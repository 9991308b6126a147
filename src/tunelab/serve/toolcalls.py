"""Tool calls in generated text: each family writes them its own way (the family table's `tool_call` names the
format); this turns an answer into OpenAI's `content` + `tool_calls`.

Formats: `hermes` — `<tool_call>{"name", "arguments"}</tool_call>` blocks (Qwen2/2.5/3, ChatML, and tunelab's
text-tag fallback for templates without tool support); `llama3-json` — the answer is one JSON object (or a list)
`{"name", "parameters"|"arguments"}`, after `<|python_tag|>` when the tokenizer keeps it; `mistral` —
`[TOOL_CALLS] [{"name", "arguments"}, ...]`; `glm4` — the function name, a newline, the JSON arguments.

Written by hand: transformers parses tool calls only through a per-model `response_schema` that these
tokenizers do not ship, and vLLM's parsers come with its engine.
"""
from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass
from typing import Callable, Sequence

from tunelab.registry import Registry

Call = dict  # {"name": str, "arguments": dict | str}
Parsed = tuple[str | None, list[Call]]  # (content before the calls or None, calls)


@dataclass(frozen=True)
class ToolFormat:
    name: str
    parse: Callable[[str], Parsed | None]  # None: the text holds no (well-formed) call
    opening: tuple[str, ...]               # text a call starts with: streaming holds it back
    at_start: bool = False                 # calls are the whole answer (JSON formats): only a leading opening counts
    prefill: str = ""                      # what forcing a call writes first (tool_choice required / named)

    def named_prefill(self, name: str) -> str:
        """The start of a call to `name` (tool_choice naming one function); "" where the format cannot."""
        return f'{self.prefill}{{"name": {json.dumps(name)}, "arguments": ' if self.prefill else ""


TOOL_FORMATS: Registry[ToolFormat] = Registry("tool-call format")


def add(tool_format: ToolFormat) -> ToolFormat:
    TOOL_FORMATS[tool_format.name] = tool_format
    return tool_format


def _call(value) -> Call | None:
    """{"name", "arguments"|"parameters"} -> a call, else None."""
    if not isinstance(value, dict) or not isinstance(value.get("name"), str) or not value["name"]:
        return None
    arguments = value.get("arguments", value.get("parameters", {}))
    if isinstance(arguments, str):
        try:
            arguments = json.loads(arguments)
        except json.JSONDecodeError:
            pass
    return {"name": value["name"], "arguments": arguments}


def _calls(value) -> list[Call] | None:
    items = value if isinstance(value, list) else [value]
    calls = [_call(item) for item in items]
    return calls if calls and all(calls) else None


def _json(text: str):
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return None


_HERMES = re.compile(r"<tool_call>\s*(.*?)\s*(?:</tool_call>|$)", re.DOTALL)


def parse_hermes(text: str) -> Parsed | None:
    start = text.find("<tool_call>")
    if start < 0:
        return None
    calls = [_call(_json(body)) for body in _HERMES.findall(text[start:])]
    if not calls or not all(calls):
        return None
    return text[:start].strip() or None, calls


def parse_llama3(text: str) -> Parsed | None:
    body = text.strip().removeprefix("<|python_tag|>").strip()
    if not body.startswith(("{", "[")):
        return None
    calls = _calls(_json(body))
    return (None, calls) if calls else None


def parse_mistral(text: str) -> Parsed | None:
    start = text.find("[TOOL_CALLS]")
    head, body = (text[:start], text[start + len("[TOOL_CALLS]"):]) if start >= 0 else ("", text)
    body = body.strip()
    if not body.startswith("["):
        return None
    calls = _calls(_json(body))
    return (head.strip() or None, calls) if calls else None


_GLM4 = re.compile(r"^\s*([A-Za-z_][\w.-]*)\n(\{.*\})\s*$", re.DOTALL)


def parse_glm4(text: str) -> Parsed | None:
    match = _GLM4.match(text)
    arguments = _json(match.group(2)) if match else None
    return (None, [{"name": match.group(1), "arguments": arguments}]) if isinstance(arguments, dict) else None


add(ToolFormat("hermes", parse_hermes, ("<tool_call>",), prefill="<tool_call>\n"))
add(ToolFormat("llama3-json", parse_llama3, ("<|python_tag|>", "{", "["), at_start=True))
add(ToolFormat("mistral", parse_mistral, ("[TOOL_CALLS]", "["), at_start=True))
add(ToolFormat("glm4", parse_glm4, ("",), at_start=True))


def model_tool_format(family, native_tools: bool) -> ToolFormat:
    """The format a model writes calls in: its family's (a `Family` of tunelab.data.families) where its template
    renders tools itself, else `hermes`, the `<tool_call>` text tags tunelab's fallback rendering teaches (and the
    format of families the table gives none)."""
    name = family.tool_call if family is not None and native_tools else None
    return TOOL_FORMATS[name or "hermes"]


def openai_calls(calls: list[Call]) -> list[dict]:
    """Calls in OpenAI's response shape: arguments as a JSON string, a fresh id each."""
    return [{"id": f"call_{uuid.uuid4().hex[:24]}", "type": "function",
             "function": {"name": call["name"], "arguments": call["arguments"] if isinstance(call["arguments"], str)
                          else json.dumps(call["arguments"], ensure_ascii=False)}}
            for call in calls]


class ContentGate:
    """Streaming with tools: passes on answer text until a call may be starting, then holds the rest for the
    parser (a call's JSON must not reach the client as content)."""

    def __init__(self, tool_format: ToolFormat):
        self.format, self.text, self.sent = tool_format, "", 0
        self.holding = False  # a call has (or may have) started: everything from here waits for the parser
        self.plain = False    # a format whose calls are the whole answer, and this answer began otherwise

    def feed(self, piece: str) -> str:
        """The text safe to send now."""
        self.text += piece
        if self.holding:
            return ""
        if self.format.at_start and not self.plain:
            return self._at_start()
        if self.format.at_start:
            return self._send(len(self.text))
        found = [i for i in (self.text.find(marker) for marker in self.format.opening) if i >= 0]
        if found:
            self.holding = True
            return self._send(min(found))
        return self._send(len(self.text) - held_back(self.text, self.format.opening))

    def _at_start(self) -> str:
        stripped = self.text.lstrip()
        if not stripped:
            return ""
        openings = self.format.opening
        if "" in openings or any(stripped.startswith(marker) for marker in openings):
            self.holding = True  # GLM-4's calls start with a bare name: any answer may be one
            return ""
        if any(marker.startswith(stripped) for marker in openings):
            return ""  # may yet become a call
        self.plain = True
        return self._send(len(self.text))

    def _send(self, end: int) -> str:
        piece, self.sent = self.text[self.sent:end], max(self.sent, end)
        return piece

    def rest(self) -> str:
        """What was held, when generation ended without a call."""
        return self._send(len(self.text))


def held_back(text: str, stops: Sequence[str]) -> int:
    """Length of the longest end of `text` that is the start of one of `stops` (stop strings, or the marker a
    tool call opens with): it may yet become one, so streaming holds it back."""
    return max((size for stop in stops for size in range(1, len(stop)) if text.endswith(stop[:size])), default=0)

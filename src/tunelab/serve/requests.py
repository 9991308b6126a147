"""What the OpenAI-compatible API accepts: the request bodies of /v1/chat/completions and /v1/completions,
checked strictly (pydantic), and what a request asks of generation."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from tunelab.data.tools import normalize_call
from tunelab.serve.limits import APIError
from tunelab.serve.sampling import MAX_TOP_LOGPROBS
from tunelab.serve.toolcalls import ToolFormat

MAX_N = 16   # answers per request: each is a row of the decoding batch


class RequestModel(BaseModel):
    # strict: "yes" is not a boolean and "0.5" not a number; unknown OpenAI fields are ignored
    model_config = ConfigDict(extra="ignore", strict=True)


class TextPart(RequestModel):
    type: Literal["text"]
    text: str


class FunctionCall(RequestModel):
    name: str = Field(min_length=1)
    arguments: str | dict = "{}"   # OpenAI sends a JSON string


class ToolCall(RequestModel):
    id: str | None = None
    type: Literal["function"] = "function"
    function: FunctionCall


class Message(RequestModel):
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[TextPart] | None = None
    tool_calls: list[ToolCall] | None = None   # an earlier answer that called tools
    tool_call_id: str | None = None            # a tool result: the call it answers
    name: str | None = None

    def as_dict(self) -> dict:
        """The canonical message (tunelab.data.tools) the chat template renders."""
        role = "system" if self.role == "developer" else self.role  # chat templates know the older name
        text = self.content if isinstance(self.content, str) else "".join(p.text for p in self.content or [])
        message = {"role": role, "content": text}
        if self.tool_calls:
            message["tool_calls"] = [normalize_call(call.model_dump(exclude_none=True), index, "messages")
                                     for index, call in enumerate(self.tool_calls)]
        message.update({key: value for key, value in (("tool_call_id", self.tool_call_id), ("name", self.name))
                        if value is not None and role == "tool"})
        return message


class FunctionDefinition(RequestModel):
    model_config = ConfigDict(extra="allow", strict=True)  # keep "strict" and other schema extras as sent
    name: str = Field(min_length=1)
    description: str | None = None
    parameters: dict | None = None


class Tool(RequestModel):
    type: Literal["function"]
    function: FunctionDefinition


class NamedFunction(RequestModel):
    name: str


class NamedToolChoice(RequestModel):
    type: Literal["function"]
    function: NamedFunction


class StreamOptions(RequestModel):
    include_usage: bool = False


class ResponseFormat(RequestModel):
    model_config = ConfigDict(extra="allow", strict=True)
    type: str


class SamplingRequest(RequestModel):
    model: str | None = None
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)   # newer clients' name for max_tokens
    temperature: float | None = Field(None, ge=0, le=2)      # None: 1, as OpenAI; 0 is greedy
    top_p: float | None = Field(None, gt=0, le=1)
    n: int | None = Field(None, ge=1, le=MAX_N)
    seed: int | None = None
    stop: str | Annotated[list[str], Field(max_length=4)] | None = None
    stream: bool | None = False
    stream_options: StreamOptions | None = None
    response_format: ResponseFormat | None = None
    presence_penalty: float | None = Field(None, ge=-2, le=2)
    frequency_penalty: float | None = Field(None, ge=-2, le=2)
    logit_bias: dict[str, Annotated[float, Field(ge=-100, le=100)]] | None = None

    def biases(self, vocabulary: int) -> dict[int, float] | None:
        """`logit_bias` by token id, each id checked against the model's vocabulary."""
        if not self.logit_bias:
            return None
        biases = {}
        for key, value in self.logit_bias.items():
            if not key.isdigit() or int(key) >= vocabulary:
                raise APIError(400, f"logit_bias: {key!r} is not a token id of this model (0 to {vocabulary - 1})",
                               param="logit_bias")
            biases[int(key)] = value
        return biases

    def stops(self) -> list[str]:
        return [self.stop] if isinstance(self.stop, str) else list(self.stop or [])

    def top_logprobs_wanted(self) -> int | None:
        """How many alternatives each answer token reports; None: no log-probabilities."""
        raise NotImplementedError

    def grammar(self) -> str | None:
        """The grammar a JSON `response_format` puts on the answer (tunelab.serve.constrained); None for text."""
        if self.response_format is None or self.response_format.type == "text":
            return None
        from tunelab.serve.constrained import response_grammar

        return response_grammar(self.response_format.model_dump())


class ChatRequest(SamplingRequest):
    messages: list[Message] = Field(min_length=1)
    tools: list[Tool] | None = None
    tool_choice: Literal["none", "auto", "required"] | NamedToolChoice | None = None
    parallel_tool_calls: bool | None = None  # false: only the answer's first call is returned
    logprobs: bool | None = None
    top_logprobs: int | None = Field(None, ge=0, le=MAX_TOP_LOGPROBS)

    def top_logprobs_wanted(self) -> int | None:
        if self.top_logprobs is not None and not self.logprobs:
            raise APIError(400, "top_logprobs needs logprobs: true", param="top_logprobs")
        return (self.top_logprobs or 0) if self.logprobs else None

    def tool_use(self, tool_format: ToolFormat) -> ToolUse | None:
        """What the template renders and the parser looks for: None when the request has no tools (or says none)."""
        choice = self.tool_choice
        if not self.tools:
            if choice not in (None, "none", "auto"):
                raise APIError(400, "tool_choice needs tools in the request", param="tool_choice")
            return None
        if choice == "none":
            return None
        tools = [tool.model_dump(exclude_none=True) for tool in self.tools]
        parallel = self.parallel_tool_calls is not False
        if isinstance(choice, NamedToolChoice):
            tools = [tool for tool in tools if tool["function"]["name"] == choice.function.name]
            if not tools:
                names = ", ".join(tool.function.name for tool in self.tools)
                raise APIError(400, f"tool_choice names the function {choice.function.name!r}, which is not among "
                               f"the tools ({names})", param="tool_choice")
            return ToolUse(tools, tool_format, tool_format.named_prefill(choice.function.name), parallel)
        return ToolUse(tools, tool_format, tool_format.prefill if choice == "required" else "", parallel)


@dataclass
class ToolUse:
    """The request's tools as the template gets them, the model's call format, and what forcing a call wrote."""
    tools: list[dict]
    format: ToolFormat
    prefill: str = ""
    parallel: bool = True  # False: at most one call, as OpenAI's parallel_tool_calls=false promises

    def parse(self, text: str):
        parsed = self.format.parse(self.prefill + text)
        if parsed is None or self.parallel:
            return parsed
        content, calls = parsed
        return content, calls[:1]


@dataclass
class Prompt:
    ids: list[int]
    tool_use: ToolUse | None = None


class CompletionRequest(SamplingRequest):
    prompt: str
    logprobs: int | None = Field(None, ge=0, le=5)   # the legacy API: alternatives per token (0: the token only)

    def top_logprobs_wanted(self) -> int | None:
        return self.logprobs



"""An OpenAI-compatible HTTP API over the served models: /v1/models, /v1/chat/completions, /v1/completions.

Requests are parsed and checked on the event loop; generation runs on one worker thread, one request at a
time in arrival order (a model is not thread-safe, and adapters are switched on a shared one). Streamed
answers travel from that thread to the response as server-sent events.
"""
from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
import uuid
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Annotated, AsyncIterator, Callable, Literal

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException

from tunelab.data.tools import normalize_call
from tunelab.errors import TunelabError
from tunelab.serve.engine import ChatEngine, Completion, GenerationSettings
from tunelab.serve.limits import APIError, GuardMiddleware, ServeSettings, answer_tokens, check_prompt, error_body
from tunelab.serve.models import ModelRegistry, ServedModel
from tunelab.serve.toolcalls import ContentGate, ToolFormat, openai_calls

log = logging.getLogger("tunelab")


# --- requests ------------------------------------------------------------------------------------------
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


class SamplingRequest(RequestModel):
    model: str | None = None
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)   # newer clients' name for max_tokens
    temperature: float | None = Field(None, ge=0, le=2)      # None: 1, as OpenAI; 0 is greedy
    top_p: float | None = Field(None, gt=0, le=1)
    n: int | None = None
    stop: str | Annotated[list[str], Field(max_length=4)] | None = None
    stream: bool | None = False
    stream_options: StreamOptions | None = None

    def stops(self) -> list[str]:
        return [self.stop] if isinstance(self.stop, str) else list(self.stop or [])


class ChatRequest(SamplingRequest):
    messages: list[Message] = Field(min_length=1)
    tools: list[Tool] | None = None
    tool_choice: Literal["none", "auto", "required"] | NamedToolChoice | None = None
    parallel_tool_calls: bool | None = None  # false: only the answer's first call is returned

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


# --- replies -------------------------------------------------------------------------------------------
class ChatShape:
    """Chat answers: a `message` in full, `delta`s when streamed (the first names the role); with tools, calls
    the model wrote become `tool_calls` (finish_reason "tool_calls")."""
    object, chunk_object, id_prefix = "chat.completion", "chat.completion.chunk", "chatcmpl"
    strips_start = True   # templates may leave a space or newline before the answer
    tool_use: ToolUse | None = None

    def choice(self, completion: Completion) -> dict:
        parsed = self.tool_use.parse(completion.text) if self.tool_use else None
        if parsed is None:
            text = (self.tool_use.prefill if self.tool_use else "") + completion.text
            message = {"role": "assistant", "content": text}
            return {"index": 0, "message": message, "logprobs": None, "finish_reason": completion.finish_reason}
        content, calls = parsed
        message = {"role": "assistant", "content": content, "tool_calls": openai_calls(calls)}
        return {"index": 0, "message": message, "logprobs": None, "finish_reason": "tool_calls"}

    def call_deltas(self, calls: list[dict]) -> dict:
        delta = {"tool_calls": [{"index": index, **call} for index, call in enumerate(openai_calls(calls))]}
        return {"index": 0, "delta": delta, "logprobs": None, "finish_reason": None}

    def delta(self, text: str | None = None, finish: str | None = None, opening: bool = False) -> dict:
        delta = {"role": "assistant", "content": ""} if opening else ({} if text is None else {"content": text})
        return {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}


class TextShape:
    """Plain text completions: the same `text` choice in full and in chunks, no role."""
    object, chunk_object, id_prefix = "text_completion", "text_completion", "cmpl"
    strips_start = False  # a completion continues the prompt exactly

    def choice(self, completion: Completion) -> dict:
        return {"index": 0, "text": completion.text, "logprobs": None, "finish_reason": completion.finish_reason}

    def delta(self, text: str | None = None, finish: str | None = None, opening: bool = False) -> dict | None:
        if opening:
            return None
        return {"index": 0, "text": text or "", "logprobs": None, "finish_reason": finish}


@dataclass
class Reply:
    """The envelope every answer and chunk of one request shares (same id, creation time and model)."""
    shape: ChatShape | TextShape
    model: str
    created: int = field(default_factory=lambda: int(time.time()))
    id: str = field(default_factory=lambda: uuid.uuid4().hex)

    def full(self, completion: Completion) -> dict:
        return {**self._head(self.shape.object), "choices": [self.shape.choice(completion)], "usage": usage(completion)}

    def chunk(self, choice: dict | None, completion: Completion | None = None) -> dict:
        extra = {"usage": usage(completion)} if completion else {}
        return {**self._head(self.shape.chunk_object), "choices": [choice] if choice else [], **extra}

    def _head(self, kind: str) -> dict:
        return {"id": f"{self.shape.id_prefix}-{self.id}", "object": kind, "created": self.created,
                "model": self.model}


def usage(completion: Completion) -> dict:
    return {"prompt_tokens": completion.prompt_tokens, "completion_tokens": completion.completion_tokens,
            "total_tokens": completion.prompt_tokens + completion.completion_tokens}


# --- generation ----------------------------------------------------------------------------------------
class GenerationWorker:
    """The one thread that runs the models, started on first use (so an app can serve several test clients)."""

    def __init__(self):
        self._pool: ThreadPoolExecutor | None = None
        self._guard = threading.Lock()

    def submit(self, work: Callable[[], object]) -> Future:
        with self._guard:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tunelab-generate")
            return self._pool.submit(work)

    async def run(self, work: Callable[[], object]):
        return await asyncio.wrap_future(self.submit(work))

    def close(self) -> None:
        with self._guard:
            if self._pool is not None:
                self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None


@dataclass
class Generation:
    served: ServedModel
    prompt: list[int]
    settings: GenerationSettings
    stops: list[str]
    strip_start: bool
    cancelled: threading.Event = field(default_factory=threading.Event)   # set when a streaming client leaves

    def run(self, on_text: Callable[[str], None] | None = None) -> Completion | None:
        if self.cancelled.is_set():
            return None  # its client left while it waited
        return self.served.complete(self.prompt, self.settings, stops=self.stops, on_text=on_text,
                                    cancelled=self.cancelled, strip_start=self.strip_start)


class Events:
    """Carries (kind, value) pairs from the generation thread to the event loop of a streaming response."""

    def __init__(self, cancelled: threading.Event):
        self.loop, self.queue, self.cancelled = asyncio.get_running_loop(), asyncio.Queue(), cancelled

    def put(self, kind: str, value: object) -> None:
        try:
            self.loop.call_soon_threadsafe(self.queue.put_nowait, (kind, value))
        except RuntimeError:  # the loop has closed: nobody listens any more
            self.cancelled.set()

    def produce(self, generation: Generation) -> None:
        """Runs on the worker: the answer piece by piece, then ("done", completion) or ("error", exception)."""
        try:
            self.put("done", generation.run(lambda text: self.put("text", text)))
        except Exception as exc:  # reported in the stream; the worker must live on
            self.put("error", exc)


class EventStream(StreamingResponse):
    """Closes its event generator however the response ends, so a client that left stops its generation."""

    async def __call__(self, scope, receive, send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            await self.body_iterator.aclose()


def sse(data: dict | str) -> str:
    return f"data: {data if isinstance(data, str) else json.dumps(data, ensure_ascii=False)}\n\n"


async def stream_events(generation: Generation, reply: Reply, events: Events, include_usage: bool,
                        started: float) -> AsyncIterator[str]:
    try:
        opening = reply.shape.delta(opening=True)
        if opening:
            yield sse(reply.chunk(opening))
        tool_use = getattr(reply.shape, "tool_use", None)
        gate = ContentGate(tool_use.format) if tool_use else None
        if gate is not None:
            gate.feed(tool_use.prefill)
        kind, value = await events.queue.get()
        while kind == "text":
            text = gate.feed(value) if gate is not None else value
            if text:
                yield sse(reply.chunk(reply.shape.delta(text)))
            kind, value = await events.queue.get()
        if kind == "error":
            log.error("%s: generation failed", reply.model, exc_info=value)
            yield sse(error_body("internal server error", "server_error"))
        elif value is not None:
            finish = value.finish_reason
            if gate is not None:
                parsed = tool_use.parse(value.text)
                if parsed is not None:
                    yield sse(reply.chunk(reply.shape.call_deltas(parsed[1])))
                    finish = "tool_calls"
                elif rest := gate.rest():
                    yield sse(reply.chunk(reply.shape.delta(rest)))
            yield sse(reply.chunk(reply.shape.delta(finish=finish)))
            if include_usage:
                yield sse(reply.chunk(None, value))
            log_answer(reply, value, started, streamed=True)
        yield sse("[DONE]")
    finally:
        generation.cancelled.set()  # harmless once finished; stops it at the next token otherwise


def log_answer(reply: Reply, completion: Completion, started: float, streamed: bool = False) -> None:
    log.info("%s model=%s tokens_in=%d tokens_out=%d finish=%s latency=%.2fs%s", reply.shape.object, reply.model,
             completion.prompt_tokens, completion.completion_tokens, completion.finish_reason,
             time.perf_counter() - started, " (stream)" if streamed else "")


# --- the app -------------------------------------------------------------------------------------------
class Server:
    """What the routes share: the models, the limits and the one generation thread."""

    def __init__(self, registry: ModelRegistry, settings: ServeSettings):
        self.registry, self.settings, self.worker = registry, settings, GenerationWorker()
        for served in registry:
            # Prompts are tokenized on the event loop while the worker decodes with the same tokenizer. A first
            # call resets any padding/truncation a saved tokenizer carries; after it both only read the tokenizer.
            served.engine.text_prompt("")

    def model(self, name: str | None) -> ServedModel:
        served = self.registry.get(name)
        if served is None:
            served_names = ", ".join(model.name for model in self.registry)
            raise APIError(404, f"the model {name!r} does not exist (served: {served_names})", param="model",
                           code="model_not_found")
        return served

    async def answer(self, body: SamplingRequest, shape: ChatShape | TextShape,
                     prompt_of: Callable[[ChatEngine], Prompt]):
        started = time.perf_counter()
        served = self.model(body.model)
        if body.n not in (None, 1):
            raise APIError(400, "only n=1 is supported", param="n")
        tokens = answer_tokens(body.max_completion_tokens or body.max_tokens, self.settings)
        sampling = GenerationSettings(tokens, 1.0 if body.temperature is None else body.temperature,
                                      1.0 if body.top_p is None else body.top_p)
        prompt = prompt_of(served.engine)
        check_prompt(prompt.ids, self.settings)
        shape.tool_use = prompt.tool_use
        generation = Generation(served, prompt.ids, sampling, body.stops(),
                                shape.strips_start and not (prompt.tool_use and prompt.tool_use.prefill))
        reply = Reply(shape, served.name)
        if body.stream:
            events = Events(generation.cancelled)
            self.worker.submit(lambda: events.produce(generation))
            include_usage = bool(body.stream_options and body.stream_options.include_usage)
            return EventStream(stream_events(generation, reply, events, include_usage, started),
                               media_type="text/event-stream")
        completion = await self.worker.run(generation.run)
        log_answer(reply, completion, started)
        return reply.full(completion)


def chat_prompt(body: ChatRequest) -> Callable[[ChatEngine], Prompt]:
    def render(engine: ChatEngine) -> Prompt:
        from jinja2 import TemplateError

        tool_use = body.tool_use(engine.tool_format())
        try:
            messages = [message.as_dict() for message in body.messages]
        except TunelabError as exc:
            raise APIError(400, str(exc).removeprefix("messages: "), param="messages")
        try:
            ids = engine.chat_prompt(messages, tool_use.tools if tool_use else None,
                                     tool_use.prefill if tool_use else "")
        except TemplateError as exc:  # a template's own checks, e.g. "roles must alternate"
            raise APIError(400, f"the model's chat template refused these messages: {exc}", param="messages")
        return Prompt(ids, tool_use)

    return render


def create_app(registry: ModelRegistry, settings: ServeSettings) -> FastAPI:
    server = Server(registry, settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        yield
        server.worker.close()

    app = FastAPI(title="tunelab", lifespan=lifespan)
    app.state.server = server
    app.add_middleware(GuardMiddleware, settings=settings)
    add_error_handlers(app)

    @app.get("/health")
    async def health() -> dict:
        return {"status": "ok", "models": [served.name for served in registry]}

    @app.get("/v1/models")
    async def list_models() -> dict:
        return {"object": "list", "data": [model_card(served) for served in registry]}

    @app.get("/v1/models/{name:path}")
    async def get_model(name: str) -> dict:
        return model_card(server.model(name))

    @app.post("/v1/chat/completions")
    async def chat_completions(body: ChatRequest):
        return await server.answer(body, ChatShape(), chat_prompt(body))

    @app.post("/v1/completions")
    async def completions(body: CompletionRequest):
        return await server.answer(body, TextShape(), lambda engine: Prompt(engine.text_prompt(body.prompt)))

    return app


def model_card(served: ServedModel) -> dict:
    return {"id": served.name, "object": "model", "created": served.created, "owned_by": "tunelab"}


# --- errors: always OpenAI's error object --------------------------------------------------------------
HTTP_CODES = {404: "not_found", 405: "method_not_allowed", 413: "request_too_large"}


def add_error_handlers(app: FastAPI) -> None:
    async def api_error(request, exc: APIError) -> JSONResponse:
        log.info("%s %s -> %d %s", request.method, request.url.path, exc.status, exc.message)
        return JSONResponse(exc.body(), status_code=exc.status)

    async def http_error(request, exc: HTTPException) -> JSONResponse:
        code = HTTP_CODES.get(exc.status_code)
        return await api_error(request, APIError(exc.status_code, str(exc.detail), code=code))

    async def invalid(request, exc: RequestValidationError) -> JSONResponse:
        return await api_error(request, validation_error(exc))

    app.add_exception_handler(APIError, api_error)
    app.add_exception_handler(HTTPException, http_error)
    app.add_exception_handler(RequestValidationError, invalid)


def validation_error(exc: RequestValidationError) -> APIError:
    """pydantic's complaints as one 400: malformed JSON, missing fields, wrong types or values."""
    errors = exc.errors()
    if any(error.get("type") == "json_invalid" for error in errors):
        return APIError(400, "the request body is not valid JSON", code="invalid_json")
    where = [".".join(str(part) for part in error.get("loc", ()) if part != "body") for error in errors]
    message = "; ".join(f"{place or 'body'}: {error.get('msg')}" for place, error in zip(where[:3], errors))
    return APIError(400, message, param=(where[0] if where else None) or None)

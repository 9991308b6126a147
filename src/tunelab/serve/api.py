"""An OpenAI-compatible HTTP API over the served models: /v1/models, /v1/chat/completions, /v1/completions,
/metrics.

Requests are parsed and checked on the event loop, then handed to the batching engine (tunelab.serve.batching):
one decoding thread answers every request, those arriving while others decode joining the running batch.
Streamed answers travel from that thread to the response as server-sent events. Requests beyond
`--max-queue` in flight get 429 with Retry-After.
"""
from __future__ import annotations

import asyncio
import json
import logging
import math
import time
from collections import defaultdict
from contextlib import asynccontextmanager
from typing import AsyncIterator, Awaitable, Callable

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response, StreamingResponse
from starlette.exceptions import HTTPException

from tunelab.errors import TunelabError
from tunelab.serve.batching import Batcher
from tunelab.serve.jobs import Job, RequestTimeout
from tunelab.serve.engine import ChatEngine, Completion, GenerationSettings
from tunelab.serve.limits import APIError, GuardMiddleware, ServeSettings, answer_tokens, check_prompt, error_body
from tunelab.serve.metrics import CONTENT_TYPE, ServeMetrics
from tunelab.serve.models import ModelRegistry, ServedModel
from tunelab.serve.replies import ChatShape, Reply, TextShape, TokenText
from tunelab.serve.requests import ChatRequest, CompletionRequest, Prompt, SamplingRequest
from tunelab.serve.toolcalls import ContentGate

log = logging.getLogger("tunelab")
CLIENT_CHECK_S = 0.5   # how often a waiting non-streamed request checks that its client is still there


# --- admission: in-flight requests, metrics and the log line -----------------------------------------------
class Ticket:
    """One admitted request until its answer is complete (or abandoned): counted in flight, then recorded once."""

    def __init__(self, server: "Server", model: str):
        self.server, self.model, self.started = server, model, time.perf_counter()
        self.outcome, self.completions, self.first_text = "error", None, None
        self.closed = False
        server.in_flight += 1

    def text_arrived(self) -> None:
        if self.first_text is None:
            self.first_text = time.perf_counter() - self.started
            self.server.metrics.first_token.labels(self.model).observe(self.first_text)

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        server, metrics, latency = self.server, self.server.metrics, time.perf_counter() - self.started
        server.in_flight -= 1
        metrics.requests.labels(self.model, self.outcome).inc()
        if self.completions:
            server.recent_latency = 0.8 * server.recent_latency + 0.2 * latency
            metrics.latency.labels(self.model).observe(latency)
            metrics.prompt_tokens.labels(self.model).inc(self.completions[0].prompt_tokens)
            metrics.completion_tokens.labels(self.model).inc(sum(c.completion_tokens for c in self.completions))


# --- streaming ---------------------------------------------------------------------------------------------
class Events:
    """Carries (kind, value) pairs from the decoding thread to the event loop of a streaming response:
    ("text", (answer index, text, log-probabilities)) as it comes, then ("done", completions) or ("error", exc)."""

    def __init__(self, job: Job):
        self.loop, self.queue, self.job = asyncio.get_running_loop(), asyncio.Queue(), job
        job.on_text = lambda index, text, logprobs: self.put("text", (index, text, logprobs))
        job.result.add_done_callback(self._finished)

    def put(self, kind: str, value: object) -> None:
        try:
            self.loop.call_soon_threadsafe(self.queue.put_nowait, (kind, value))
        except RuntimeError:  # the loop has closed: nobody listens any more
            self.job.cancelled.set()

    def _finished(self, result) -> None:
        if result.cancelled():
            self.put("done", None)
        elif result.exception() is not None:
            self.put("error", result.exception())
        else:
            self.put("done", result.result())


class EventStream(StreamingResponse):
    """Closes its event generator however the response ends, so a client that left stops its generation."""

    def __init__(self, content, on_close: Callable[[], None], **kwargs):
        super().__init__(content, **kwargs)
        self.on_close = on_close

    async def __call__(self, scope, receive, send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            await self.body_iterator.aclose()
            self.on_close()


def sse(data: dict | str) -> str:
    return f"data: {data if isinstance(data, str) else json.dumps(data, ensure_ascii=False)}\n\n"


async def stream_events(job: Job, reply: Reply, events: Events, include_usage: bool,
                        ticket: Ticket) -> AsyncIterator[str]:
    shape, tool_use = reply.shape, reply.shape.tool_use
    gates = {index: ContentGate(tool_use.format) for index in range(job.n)} if tool_use else {}
    sent = defaultdict(int)   # characters sent per answer (the legacy logprobs' offsets)
    try:
        for index in range(job.n):
            opening = shape.delta(index, opening=True)
            if opening:
                yield sse(reply.chunk(opening))
            if index in gates:
                gates[index].feed(tool_use.prefill)
        kind, value = await events.queue.get()
        while kind == "text":
            index, text, entries = value
            text = gates[index].feed(text) if index in gates else text
            logprobs = shape.logprobs(entries, sent[index]) if entries else None
            if text or logprobs:
                ticket.text_arrived()
                yield sse(reply.chunk(shape.delta(index, text, logprobs=logprobs)))
            sent[index] += len(text)
            kind, value = await events.queue.get()
        if kind == "error":
            ticket.outcome = "timeout" if isinstance(value, RequestTimeout) else "error"
            if ticket.outcome == "error":
                log.error("%s: generation failed", reply.model, exc_info=value)
            message = str(value) if isinstance(value, RequestTimeout) else "internal server error"
            yield sse(error_body(message, "server_error"))
        elif value is not None:
            for completion in value:
                finish = completion.finish_reason
                if completion.index in gates:
                    parsed = tool_use.parse(completion.text)
                    if parsed is not None:
                        yield sse(reply.chunk(shape.call_deltas(completion.index, parsed[1])))
                        finish = "tool_calls"
                    elif rest := gates[completion.index].rest():
                        yield sse(reply.chunk(shape.delta(completion.index, rest)))
                yield sse(reply.chunk(shape.delta(completion.index, finish=finish)))
            if include_usage:
                yield sse(reply.chunk(None, value))
            ticket.outcome, ticket.completions = "ok", value
            log_answer(reply, value, ticket.started, streamed=True)
        else:  # abandoned: the server is shutting down
            ticket.outcome = "cancelled"
        yield sse("[DONE]")
    finally:
        stream_closed(job, ticket)


def stream_closed(job: Job, ticket: Ticket) -> None:
    """However a stream ends (even before its first byte): an unfinished job leaves the batch at the next step."""
    if not job.result.done() and not ticket.closed:
        ticket.outcome = "cancelled"
    job.cancelled.set()  # harmless once finished
    ticket.close()


def log_answer(reply: Reply, completions: list[Completion], started: float, streamed: bool = False) -> None:
    first = completions[0]
    log.info("%s model=%s tokens_in=%d tokens_out=%d finish=%s latency=%.2fs%s%s", reply.shape.object, reply.model,
             first.prompt_tokens, sum(c.completion_tokens for c in completions),
             ",".join(c.finish_reason for c in completions), time.perf_counter() - started,
             f" n={len(completions)}" if len(completions) > 1 else "", " (stream)" if streamed else "")


# --- the app -------------------------------------------------------------------------------------------
class Server:
    """What the routes share: the models, the limits, the batching engine and the metrics."""

    def __init__(self, registry: ModelRegistry, settings: ServeSettings, batcher: Batcher | None = None):
        self.registry, self.settings = registry, settings
        self.batcher = batcher or Batcher(settings.max_batch)
        self.in_flight, self.recent_latency = 0, 1.0
        self.metrics = ServeMetrics(self.batcher, lambda: self.in_flight)
        self.batcher.on_step = self.metrics.batch_size.observe
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

    def admit(self, model: str) -> Ticket:
        """A ticket for one more request in flight, or 429 with the seconds after which one is likely to fit."""
        limit = self.settings.max_queue
        if self.in_flight >= limit:
            self.metrics.requests.labels(model, "rejected").inc()
            retry = min(60, max(1, math.ceil(self.recent_latency)))
            raise APIError(429, f"the server is busy: {self.in_flight} requests in flight, the most it takes "
                           f"(--max-queue {limit}); retry after {retry} s", type="rate_limit_error",
                           code="rate_limit_exceeded", headers={"Retry-After": str(retry)})
        return Ticket(self, model)

    def job(self, served: ServedModel, body: SamplingRequest, prompt: Prompt, strip_start: bool) -> Job:
        tokens = answer_tokens(body.max_completion_tokens or body.max_tokens, self.settings)
        sampling = GenerationSettings(tokens, 1.0 if body.temperature is None else body.temperature,
                                      1.0 if body.top_p is None else body.top_p, body.seed,
                                      body.top_logprobs_wanted(), body.grammar(), body.presence_penalty or 0.0,
                                      body.frequency_penalty or 0.0, body.biases(served.engine.vocabulary))
        if sampling.grammar is not None and not served.lane.batchable():
            raise APIError(400, f"response_format: {served.name} is a prompt-learning adapter, answered by peft's own "
                           "generate, which cannot follow a JSON grammar", param="response_format")
        timeout = self.settings.request_timeout
        deadline = time.monotonic() + timeout if timeout else None
        return Job(served.lane, prompt.ids, sampling, body.n or 1, body.stops(), strip_start, deadline=deadline)

    async def answer(self, body: SamplingRequest, shape_of: Callable[[ChatEngine, Prompt], ChatShape | TextShape],
                     prompt_of: Callable[[ChatEngine], Prompt], left: Callable[[], Awaitable[bool]]):
        """`left`: whether the client has disconnected (a non-streamed answer checks while it waits)."""
        served = self.model(body.model)
        prompt = prompt_of(served.engine)
        check_prompt(prompt.ids, self.settings)
        shape = shape_of(served.engine, prompt)
        job = self.job(served, body, prompt, shape.strips_start and not (prompt.tool_use and prompt.tool_use.prefill))
        reply = Reply(shape, served.name)
        ticket = self.admit(served.name)
        if body.stream:
            events = Events(job)
            self.batcher.submit(job)
            include_usage = bool(body.stream_options and body.stream_options.include_usage)
            return EventStream(stream_events(job, reply, events, include_usage, ticket),
                               on_close=lambda: stream_closed(job, ticket), media_type="text/event-stream")
        try:
            completions = await self._wait(job, left)
            ticket.outcome, ticket.completions = ("ok", completions) if completions else ("cancelled", None)
        except RequestTimeout:
            ticket.outcome = "timeout"
            raise APIError(504, f"no answer within the server's request timeout ({self.settings.request_timeout} s)",
                           type="timeout_error", code="timeout")
        except asyncio.CancelledError:
            job.cancelled.set()
            ticket.outcome = "cancelled"
            raise
        finally:
            ticket.close()
        if completions is None:  # the client went away: nobody reads an answer
            return Response(status_code=499)
        log_answer(reply, completions, ticket.started)
        return reply.full(completions)

    async def _wait(self, job: Job, left: Callable[[], Awaitable[bool]]) -> list[Completion] | None:
        """The job's answers; None when the client disconnects first (its answers leave the batch)."""
        answers = asyncio.wrap_future(self.batcher.submit(job))
        while True:
            done, _ = await asyncio.wait({answers}, timeout=CLIENT_CHECK_S)
            if done:
                return answers.result()
            if await left():
                job.cancelled.set()
                return None


def chat_shape(engine: ChatEngine, prompt: Prompt) -> ChatShape:
    return ChatShape(TokenText(engine.tokenizer), prompt.tool_use)


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




def create_app(registry: ModelRegistry, settings: ServeSettings, batcher: Batcher | None = None) -> FastAPI:
    """The app; `batcher`: one whose decoding loop the caller runs (`tunelab serve` runs it on its main thread),
    else the app's own, decoding on a thread of its own."""
    server = Server(registry, settings, batcher)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        yield
        server.batcher.close()

    app = FastAPI(title="tunelab", lifespan=lifespan)
    app.state.server = server
    app.add_middleware(GuardMiddleware, settings=settings)
    add_error_handlers(app)

    @app.get("/health")
    async def health() -> dict:
        return {"status": "ok", "models": [served.name for served in registry]}

    @app.get("/metrics")
    async def metrics() -> Response:
        return Response(server.metrics.exposition(), media_type=CONTENT_TYPE)

    @app.get("/v1/models")
    async def list_models() -> dict:
        return {"object": "list", "data": [model_card(served) for served in registry]}

    @app.get("/v1/models/{name:path}")
    async def get_model(name: str) -> dict:
        return model_card(server.model(name))

    @app.post("/v1/chat/completions")
    async def chat_completions(body: ChatRequest, request: Request):
        return await server.answer(body, chat_shape, chat_prompt(body), request.is_disconnected)

    @app.post("/v1/completions")
    async def completions(body: CompletionRequest, request: Request):
        return await server.answer(body, lambda engine, prompt: TextShape(TokenText(engine.tokenizer),
                                                                          len(body.prompt)),
                                   lambda engine: Prompt(engine.text_prompt(body.prompt)), request.is_disconnected)

    return app


def model_card(served: ServedModel) -> dict:
    return {"id": served.name, "object": "model", "created": served.created, "owned_by": "tunelab"}


# --- errors: always OpenAI's error object --------------------------------------------------------------
HTTP_CODES = {404: "not_found", 405: "method_not_allowed", 413: "request_too_large"}


def add_error_handlers(app: FastAPI) -> None:
    async def api_error(request, exc: APIError) -> JSONResponse:
        log.info("%s %s -> %d %s", request.method, request.url.path, exc.status, exc.message)
        return JSONResponse(exc.body(), status_code=exc.status, headers=exc.headers)

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

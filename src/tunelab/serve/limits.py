"""What a request may do: the API key it must carry, and how large its body, prompt and answer may be.

Every refusal is an OpenAI-style error body, so OpenAI clients raise their usual exceptions.
"""
from __future__ import annotations

import hmac
import json
import logging
from dataclasses import dataclass

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger("tunelab")
OPEN_PATHS = ("/health",)   # load balancers probe it without a key


@dataclass(frozen=True)
class ServeSettings:
    api_key: str | None = None
    max_tokens_limit: int = 2048        # the most `max_tokens` a request may ask for
    default_max_tokens: int = 256       # when a request gives none (capped by the limit)
    max_prompt_tokens: int = 4096
    max_body_bytes: int = 1024 * 1024
    max_queue: int = 128                # requests in flight (decoding or waiting); more get 429
    max_batch: int = 32                 # answers decoded together; more wait for a place
    request_timeout: float | None = 600.0   # seconds from arrival to the last token; None: no limit


class APIError(Exception):
    """A refusal with its HTTP status, in the fields of OpenAI's error object."""

    def __init__(self, status: int, message: str, type: str = "invalid_request_error", param: str | None = None,
                 code: str | None = None, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.message, self.type, self.param, self.code = status, message, type, param, code
        self.headers = headers

    def body(self) -> dict:
        return error_body(self.message, self.type, self.param, self.code)


def error_body(message: str, type: str = "invalid_request_error", param: str | None = None,
               code: str | None = None) -> dict:
    return {"error": {"message": message, "type": type, "param": param, "code": code}}


def answer_tokens(requested: int | None, settings: ServeSettings) -> int:
    """How many tokens the answer may have: the request's `max_tokens`, refused above the server's limit."""
    if requested is None:
        return min(settings.default_max_tokens, settings.max_tokens_limit)
    if requested > settings.max_tokens_limit:
        raise APIError(400, f"max_tokens is {requested}; this server allows at most {settings.max_tokens_limit}",
                       param="max_tokens", code="max_tokens_too_large")
    return requested


def check_prompt(prompt: list[int], settings: ServeSettings) -> None:
    if not prompt:
        raise APIError(400, "the prompt is empty", param="prompt")
    if len(prompt) > settings.max_prompt_tokens:
        raise APIError(400, f"the prompt has {len(prompt)} tokens; this server allows at most "
                       f"{settings.max_prompt_tokens}", param="messages", code="context_length_exceeded")


class GuardMiddleware:
    """Runs around every request: checks the API key and the body size before any route sees the request,
    and turns an unexpected exception into a generic 500 (logged with its traceback, never sent)."""

    def __init__(self, app: ASGIApp, settings: ServeSettings):
        self.app, self.settings = app, settings

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        refusal = self._refusal(scope)
        if refusal is not None:
            log.info("%s %s -> %d %s", scope["method"], scope["path"], refusal.status, refusal.message)
            return await send_json(send, refusal.status, refusal.body())
        started = False

        async def watch_start(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, self._counting(receive), watch_start)
        except Exception:
            log.exception("%s %s failed", scope["method"], scope["path"])
            if not started:  # once the answer has begun, all one can do is end it
                await send_json(send, 500, error_body("internal server error", "server_error"))

    def _refusal(self, scope: Scope) -> APIError | None:
        headers = dict(scope["headers"])
        key = self.settings.api_key
        if key and scope["path"] not in OPEN_PATHS and not _bearer_matches(headers.get(b"authorization"), key):
            return APIError(401, "invalid or missing API key (send `Authorization: Bearer KEY`)",
                            code="invalid_api_key")
        length = headers.get(b"content-length", b"0")
        if length.isdigit() and int(length) > self.settings.max_body_bytes:
            return too_large(self.settings.max_body_bytes)
        return None

    def _counting(self, receive: Receive) -> Receive:
        """A body sent without Content-Length is counted as it arrives."""
        received = 0

        async def counted() -> Message:
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.settings.max_body_bytes:
                # FastAPI passes an HTTPException raised while reading the body on to the handlers.
                raise HTTPException(413, too_large(self.settings.max_body_bytes).message)
            return message

        return counted


def too_large(limit: int) -> APIError:
    return APIError(413, f"the request body is larger than {limit} bytes", code="request_too_large")


def _bearer_matches(header: bytes | None, key: str) -> bool:
    scheme, _, token = (header or b"").decode("latin-1").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(token.strip().encode(), key.encode())


async def send_json(send: Send, status: int, body: dict) -> None:
    data = json.dumps(body).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode())]})
    await send({"type": "http.response.body", "body": data})

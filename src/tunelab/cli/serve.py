"""Serve models over an OpenAI-compatible HTTP API (/v1/chat/completions, /v1/completions, /v1/models).

`--model` may repeat: the first is the default, `NAME=RUN` names one, and adapter runs trained on the
same base share that base in memory.
"""
from __future__ import annotations

import argparse
import ipaddress
import logging
import os

from tunelab.errors import TunelabError

API_KEY_ENV = "TUNELAB_API_KEY"
log = logging.getLogger("tunelab")


def add_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", action="append", required=True, metavar="MODEL_OR_NAME=RUN",
                        help="run directory, checkpoint-N, model dir, hub id or built-in name; NAME=RUN serves it "
                             "as NAME; repeat to serve several (the first is the default)")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (0.0.0.0: every interface)")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--api-key", default=os.environ.get(API_KEY_ENV),
                        help=f"require `Authorization: Bearer KEY` (default: ${API_KEY_ENV}; none: open)")
    parser.add_argument("--max-tokens-limit", type=int, default=2048, help="the most max_tokens a request may ask")
    parser.add_argument("--max-prompt-tokens", type=int, default=4096, help="longer prompts are refused (400)")
    parser.add_argument("--max-body-bytes", type=int, default=1024 * 1024, help="larger request bodies get 413")
    parser.add_argument("--max-queue", type=int, default=128,
                        help="requests in the server at once (decoding or waiting); more get 429 with Retry-After")
    parser.add_argument("--max-batch", type=int, default=32,
                        help="answers decoded together (each of n answers counts); more wait for a place")
    parser.add_argument("--request-timeout", type=float, default=600.0,
                        help="seconds from a request's arrival to its last token; later it ends with 504 (0: none)")
    parser.add_argument("--dtype", choices=["auto", "fp32", "bf16", "fp16"], default="auto")


def serve_settings(args: argparse.Namespace):
    from tunelab.serve.limits import ServeSettings

    for flag in ("max_tokens_limit", "max_prompt_tokens", "max_body_bytes", "max_queue", "max_batch"):
        if getattr(args, flag) < 1:
            raise TunelabError(f"--{flag.replace('_', '-')}: must be at least 1")
    if args.request_timeout < 0:
        raise TunelabError("--request-timeout: must be 0 (no limit) or more seconds")
    return ServeSettings(api_key=args.api_key or None, max_tokens_limit=args.max_tokens_limit,
                         default_max_tokens=min(256, args.max_tokens_limit),
                         max_prompt_tokens=args.max_prompt_tokens, max_body_bytes=args.max_body_bytes,
                         max_queue=args.max_queue, max_batch=args.max_batch,
                         request_timeout=args.request_timeout or None)


def exposure_warning(host: str, api_key: str | None) -> str | None:
    """A server reachable from other machines without an API key lets anyone there use it."""
    if api_key or is_loopback(host):
        return None
    return (f"--host {host}: the server is reachable from other machines and needs no API key; set --api-key "
            f"(or ${API_KEY_ENV}) unless this network is trusted")


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a host name: it may resolve to anything
        return False


def run(args: argparse.Namespace) -> int:
    from tunelab.cli.startup import loading_libraries

    with loading_libraries():  # torch, transformers, peft
        from tunelab.models import detect_device, inference_dtype
        from tunelab.serve.api import create_app
        from tunelab.serve.batching import Batcher
        from tunelab.serve.models import load_registry, parse_model_spec

    settings = serve_settings(args)
    warning = exposure_warning(args.host, settings.api_key)
    if warning:
        log.warning(warning)
    device = detect_device()
    registry = load_registry([parse_model_spec(value) for value in args.model], inference_dtype(args.dtype, device),
                             device)
    names = ", ".join(served.name for served in registry)
    access = "API key required" if settings.api_key else "no API key"
    print(f"serving {names} on http://{args.host}:{args.port}/v1 ({access})")
    batcher = Batcher(settings.max_batch)
    return serve_beside(create_app(registry, settings, batcher), batcher, args.host, args.port)


def serve_beside(app, batcher, host: str, port: int) -> int:
    """HTTP on a thread, decoding on this (the main) thread, where the models were loaded (see Batcher.run).
    Ctrl-C or SIGTERM ends both; so does the HTTP server failing to start (e.g. the port is taken)."""
    import signal
    import threading

    import uvicorn

    # uvicorn's access log is off: the server logs one line per answer itself (model, tokens, latency)
    server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, access_log=False, log_level="info"))
    failed = []

    def http() -> None:
        try:
            server.run()
        except BaseException as exc:  # SystemExit when the port is taken: reported on the main thread
            failed.append(exc)
        finally:
            batcher.close()

    def stop(*_) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    thread = threading.Thread(target=http, name="tunelab-http", daemon=True)
    thread.start()
    try:
        batcher.run()
    except KeyboardInterrupt:
        pass
    finally:
        server.should_exit = True
        batcher.close()
        thread.join(timeout=30)
    if not server.started:
        raise TunelabError(f"--port {port}: the HTTP server could not start on {host}:{port} (the reason is logged "
                           "above, e.g. the address is already in use)")
    if failed and not isinstance(failed[0], SystemExit):
        raise TunelabError(f"the HTTP server on {host}:{port} stopped: {failed[0]!r}")
    return 0

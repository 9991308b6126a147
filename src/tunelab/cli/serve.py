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
    parser.add_argument("--dtype", choices=["auto", "fp32", "bf16", "fp16"], default="auto")


def serve_settings(args: argparse.Namespace):
    from tunelab.serve.limits import ServeSettings

    for flag in ("max_tokens_limit", "max_prompt_tokens", "max_body_bytes"):
        if getattr(args, flag) < 1:
            raise TunelabError(f"--{flag.replace('_', '-')}: must be at least 1")
    return ServeSettings(api_key=args.api_key or None, max_tokens_limit=args.max_tokens_limit,
                         default_max_tokens=min(256, args.max_tokens_limit),
                         max_prompt_tokens=args.max_prompt_tokens, max_body_bytes=args.max_body_bytes)


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
    import uvicorn

    from tunelab.models import detect_device, inference_dtype
    from tunelab.serve.api import create_app
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
    # uvicorn's access log is off: the server logs one line per answer itself (model, tokens, latency)
    uvicorn.run(create_app(registry, settings), host=args.host, port=args.port, access_log=False, log_level="info")
    return 0

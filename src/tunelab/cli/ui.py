"""Web UI in the browser: configure and start runs, watch their curves, evaluate, and chat with the result.

Every action runs the CLI in a subprocess (`tunelab train`, `plan`, `data inspect`, `eval`), so the page and
the command line cannot disagree. It can start training and read files in the runs folder: bind it beyond
this machine only with --auth.
"""
from __future__ import annotations

import argparse
import logging
import os

from tunelab.errors import TunelabError

AUTH_ENV = "TUNELAB_UI_AUTH"
log = logging.getLogger("tunelab")


def add_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (0.0.0.0: every interface)")
    parser.add_argument("--port", type=int, default=7860)
    parser.add_argument("--runs-dir", default="runs", help="folder of run directories (new runs go here)")
    parser.add_argument("--auth", default=os.environ.get(AUTH_ENV), metavar="USER:PASSWORD",
                        help=f"ask for this user and password (default: ${AUTH_ENV}; none: open)")


def run(args: argparse.Namespace) -> int:
    import importlib.util

    import uvicorn

    if importlib.util.find_spec("gradio") is None:
        raise TunelabError("tunelab ui needs gradio: pip install 'tunelab[ui]'")
    if not 0 < args.port < 65536:
        raise TunelabError(f"--port: expected 1-65535, got {args.port}")

    from tunelab.cli.serve import is_loopback
    from tunelab.ui.app import build_app, check_port_free, parse_auth, runs_folder
    from tunelab.ui.context import UiContext

    auth = parse_auth(args.auth)
    check_port_free(args.host, args.port)
    if not auth and not is_loopback(args.host):
        log.warning("--host %s: the UI is reachable from other machines and asks for no password, and anyone who "
                    "reaches it can start training and read the runs; set --auth USER:PASSWORD (or $%s)",
                    args.host, AUTH_ENV)
    ctx = UiContext(runs_folder(args.runs_dir))
    app = build_app(ctx, auth)
    print(f"tunelab ui on http://{args.host}:{args.port}/ (runs in {ctx.runs_dir}"
          f"{', password required' if auth else ''})", flush=True)
    try:
        uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    finally:
        ctx.jobs.shutdown()
    return 0

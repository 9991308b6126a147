"""The web UI: a Gradio page (Train, Runs, Evaluate, Chat) mounted in a FastAPI app that also serves run files
(report.html and its plots, data inspection pages) from the runs folder, and optionally asks for a password.

Gradio serves HTML files only as downloads, so run pages come from our own /files route, which reads only
inside the runs folder.
"""
from __future__ import annotations

import base64
import os
import secrets
from pathlib import Path

from tunelab.ui.context import UiContext

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # no calls home from a closed network

MAX_UPLOAD = "2gb"  # a data file uploaded through the page; larger ones are better given as a path
SERVED_TYPES = {".html": "text/html", ".png": "image/png", ".json": "application/json", ".jsonl": "text/plain",
                ".md": "text/plain", ".yaml": "text/plain", ".log": "text/plain", ".txt": "text/plain"}


def build_blocks(ctx: UiContext):
    import gradio as gr

    from tunelab.ui.chat_tab import ChatTab
    from tunelab.ui.eval_tab import EvalTab
    from tunelab.ui.runs_tab import RunsTab
    from tunelab.ui.train_tab import TrainTab

    with gr.Blocks(title="tunelab") as blocks:
        gr.Markdown(f"## tunelab · runs in `{ctx.runs_dir}`")
        with gr.Tabs() as tabs:
            runs = RunsTab(ctx)
            train = TrainTab(ctx, tabs, runs)
            evaluate, chat = EvalTab(ctx), ChatTab(ctx)
            with gr.Tab("Train", id="train"):
                train.build()
            with gr.Tab("Runs", id="runs"):
                runs.build()
            with gr.Tab("Evaluate", id="evaluate"):
                evaluate.build()
            with gr.Tab("Chat", id="chat"):
                chat.build()
        for tab in (train, runs, evaluate, chat):
            tab.wire(blocks)
    return blocks


def build_app(ctx: UiContext, auth: tuple[str, str] | None = None):
    import gradio as gr
    from fastapi import FastAPI, HTTPException
    from fastapi.responses import FileResponse, JSONResponse

    from tunelab.ui.widgets import CSS

    app = FastAPI(title="tunelab ui", docs_url=None, redoc_url=None)
    if auth is not None:
        _require_password(app, auth)

    @app.get("/health")
    def health() -> JSONResponse:
        return JSONResponse({"status": "ok", "runs_dir": str(ctx.runs_dir)})

    @app.get("/files/{relative:path}")
    def files(relative: str) -> FileResponse:
        path = (ctx.runs_dir / relative).resolve()
        if not path.is_relative_to(ctx.runs_dir) or not path.is_file() or path.suffix not in SERVED_TYPES:
            raise HTTPException(404, f"{relative}: no such run file")
        return FileResponse(path, media_type=SERVED_TYPES[path.suffix])

    # System fonts: the default theme would fetch Google fonts, which a closed network cannot reach.
    theme = gr.themes.Default(font=["ui-sans-serif", "system-ui", "sans-serif"],
                              font_mono=["ui-monospace", "monospace"])
    return gr.mount_gradio_app(app, build_blocks(ctx), path="/", theme=theme, css=CSS, footer_links=[],
                               max_file_size=MAX_UPLOAD)


def _require_password(app, auth: tuple[str, str]) -> None:
    """HTTP basic auth on every route, the page's own API calls included (the browser resends the password)."""
    from fastapi.responses import PlainTextResponse

    expected = "Basic " + base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()

    @app.middleware("http")
    async def check(request, call_next):
        given = request.headers.get("authorization", "")
        if not secrets.compare_digest(given.encode(), expected.encode()):
            return PlainTextResponse("tunelab ui: password required", status_code=401,
                                     headers={"WWW-Authenticate": 'Basic realm="tunelab"'})
        return await call_next(request)


def parse_auth(text: str | None) -> tuple[str, str] | None:
    from tunelab.errors import TunelabError

    if not text:
        return None
    user, sep, password = text.partition(":")
    if not sep or not user or not password:
        raise TunelabError("--auth: expected USER:PASSWORD (or set TUNELAB_UI_AUTH)")
    return user, password


def runs_folder(path: str | Path) -> Path:
    from tunelab.errors import TunelabError

    folder = Path(path).expanduser()
    if folder.exists() and not folder.is_dir():
        raise TunelabError(f"--runs-dir {folder}: is a file (expected the folder that holds run directories)")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def check_port_free(host: str, port: int) -> None:
    """A taken port is one clear line before the slow start, not uvicorn's log after it."""
    import socket

    from tunelab.errors import TunelabError

    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            raise TunelabError(f"--port {port}: cannot listen on {host} ({exc.strerror}); choose another --port") from None

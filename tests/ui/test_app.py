"""The UI's HTTP app: health, run files served only from the runs folder, the optional password, and the
command's own bad-input messages."""
from __future__ import annotations

import base64
import socket

import pytest
from fastapi.testclient import TestClient

from tunelab.cli.main import main
from tunelab.ui.app import build_app
from tunelab.ui.context import UiContext


@pytest.fixture(scope="module")
def runs_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ui-app") / "runs"
    (folder / "a" / "model").mkdir(parents=True)
    (folder / "a" / "report.html").write_text("<html><body>report of a</body></html>")
    (folder / "a" / "loss.png").write_bytes(b"\x89PNG")
    (folder / "a" / "model" / "adapter_model.safetensors").write_bytes(b"weights")
    (folder.parent / "secret.html").write_text("outside")
    return folder


@pytest.fixture(scope="module")
def client(runs_dir):
    with TestClient(build_app(UiContext(runs_dir))) as client:
        yield client


def test_page_and_health(client, runs_dir):
    assert client.get("/health").json() == {"status": "ok", "runs_dir": str(runs_dir.resolve())}
    page = client.get("/")
    assert page.status_code == 200 and "<!doctype html>" in page.text
    assert client.get("/config").json()["title"] == "tunelab"


def test_run_pages_are_served_inline_and_nothing_else(client):
    report = client.get("/files/a/report.html")
    assert report.status_code == 200 and report.headers["content-type"].startswith("text/html")
    assert "report of a" in report.text
    assert client.get("/files/a/loss.png").headers["content-type"] == "image/png"
    for path in ("/files/../secret.html", "/files/a/../../secret.html", "/files/%2e%2e/secret.html",
                 "/files/a/model/adapter_model.safetensors", "/files/a/missing.html"):
        assert client.get(path).status_code == 404, path


def test_password_guards_every_route(runs_dir):
    with TestClient(build_app(UiContext(runs_dir), auth=("ann", "s3cret"))) as client:
        for path in ("/", "/health", "/files/a/report.html", "/config"):
            answer = client.get(path)
            assert answer.status_code == 401 and answer.headers["www-authenticate"].startswith("Basic"), path
        wrong = {"Authorization": "Basic " + base64.b64encode(b"ann:nope").decode()}
        assert client.get("/health", headers=wrong).status_code == 401
        right = {"Authorization": "Basic " + base64.b64encode(b"ann:s3cret").decode()}
        assert client.get("/health", headers=right).status_code == 200
        assert client.get("/", headers=right).status_code == 200


def test_bad_arguments_are_one_line(tmp_path, capsys):
    assert main(["ui", "--auth", "no-colon"]) == 2
    assert capsys.readouterr().err.strip() == "error: --auth: expected USER:PASSWORD (or set TUNELAB_UI_AUTH)"
    (tmp_path / "file").write_text("x")
    assert main(["ui", "--runs-dir", str(tmp_path / "file"), "--port", "7999"]) == 2
    assert "is a file (expected the folder that holds run directories)" in capsys.readouterr().err
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert main(["ui", "--port", str(port), "--runs-dir", str(tmp_path / "runs")]) == 2
    assert f"error: --port {port}: cannot listen on 127.0.0.1" in capsys.readouterr().err

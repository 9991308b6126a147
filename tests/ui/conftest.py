"""A real `tunelab ui` process and a real headless Chromium driven by Playwright.

Chromium is Debian's (`/usr/bin/chromium`, or $TUNELAB_CHROMIUM): Playwright's own browser download cannot
work offline, and `make setup` installs no browser. Without one the browser tests are skipped, except in CI
(`.ci/run` installs it), where a missing browser is a failure.
"""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage"]


def chromium_path() -> str | None:
    return os.environ.get("TUNELAB_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def ui_server(tmp_path_factory):
    """`tunelab ui` on a free loopback port, with its own runs folder; yields (url, runs_dir)."""
    folder = tmp_path_factory.mktemp("ui")
    runs_dir, port = folder / "runs", free_port()
    env = {**os.environ, "TUNELAB_CACHE": str(tmp_path_factory.getbasetemp() / "tunelab-cache"), "HF_HUB_OFFLINE": "1"}
    log = (folder / "ui.log").open("w")
    process = subprocess.Popen([sys.executable, "-m", "tunelab", "ui", "--port", str(port), "--runs-dir", str(runs_dir)],
                               stdout=log, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 120
    while True:
        try:
            urllib.request.urlopen(url + "/health", timeout=2)
            break
        except OSError:
            if process.poll() is not None or time.time() > deadline:
                process.kill()
                pytest.fail(f"tunelab ui did not start: {(folder / 'ui.log').read_text()[-2000:]}")
            time.sleep(0.5)
    yield url, runs_dir
    process.terminate()
    try:
        process.wait(30)
    except subprocess.TimeoutExpired:
        process.kill()
    log.close()


@pytest.fixture(scope="module")
def browser():
    executable = chromium_path()
    if executable is None:
        if os.environ.get("CI"):
            pytest.fail("no Chromium: .ci/run installs Debian's chromium package before the tests")
        pytest.skip("no Chromium (apt-get install chromium, or set TUNELAB_CHROMIUM)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_FLAGS)
        yield browser
        browser.close()


@pytest.fixture()
def page(browser, ui_server, tmp_path):
    """A fresh tab on the UI; a screenshot of it is kept in the test's temporary directory at the end."""
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    page.set_default_timeout(30_000)
    page.goto(ui_server[0] + "/")
    page.wait_for_selector("#config-yaml")
    yield page
    page.screenshot(path=str(tmp_path / "final.png"), full_page=True)
    context.close()


class Form:
    """Gradio's widgets, driven as a person would: click, type, pick from the list."""

    def __init__(self, page):
        self.page = page

    def fill(self, elem_id: str, text: str) -> None:
        box = self.page.locator(f"#{elem_id} textarea, #{elem_id} input").first
        box.fill(text)
        box.press("Tab")

    def choose(self, elem_id: str, option: str) -> None:
        """Open a dropdown and click one of its options."""
        self.page.locator(f"#{elem_id} input").first.click()
        self.page.locator("[role=option]", has_text=option).filter(has_text=option).first.click()
        self.page.keyboard.press("Escape")

    def radio(self, elem_id: str, label: str) -> None:
        self.page.locator(f"#{elem_id} label", has_text=label).first.click()

    def tab(self, name: str) -> None:
        self.page.get_by_role("tab", name=name).click()

    def text(self, elem_id: str) -> str:
        return self.page.locator(f"#{elem_id}").inner_text()

    def value(self, elem_id: str) -> str:
        """The value of a text box."""
        return self.page.locator(f"#{elem_id} textarea, #{elem_id} input").first.input_value()

    def code(self, elem_id: str) -> str:
        """The text of a code editor (without its line numbers)."""
        return self.page.locator(f"#{elem_id} .cm-content").inner_text()

    def wait_text(self, elem_id: str, needle: str, timeout: float = 60) -> str:
        deadline = time.time() + timeout
        while time.time() < deadline:
            text = self.text(elem_id)
            if needle in text:
                return text
            time.sleep(0.5)
        raise AssertionError(f"#{elem_id} never showed {needle!r}; it shows: {self.text(elem_id)[:1000]}")


@pytest.fixture()
def form(page):
    return Form(page)

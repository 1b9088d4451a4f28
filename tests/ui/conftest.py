"""A real `openrecipe ui` process and Debian's chromium driven by Playwright (it cannot download browsers here)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class UiProcess:
    """`python -m openrecipe ui` in its own process group, so the test can kill it for real and restart it."""

    def __init__(self, workspace: Path, port: int, home: Path) -> None:
        self.workspace, self.port, self.home = workspace, port, home
        self.process: subprocess.Popen | None = None
        self.url = f"http://127.0.0.1:{port}"

    def start(self) -> float:
        """Start and wait until it answers; returns the seconds that took."""
        started = time.perf_counter()
        log = open(self.workspace.parent / "ui.log", "ab")  # noqa: SIM115
        self.process = subprocess.Popen(
            [sys.executable, "-m", "openrecipe", "ui", "--workspace", str(self.workspace), "--port", str(self.port)],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env={**os.environ, "OPENRECIPE_HOME": str(self.home)},
        )
        while True:
            try:
                urllib.request.urlopen(self.url + "/login", timeout=2).read()
                return time.perf_counter() - started
            except OSError:
                assert self.process.poll() is None, (self.workspace.parent / "ui.log").read_text()[-3000:]
                time.sleep(0.1)

    def kill(self) -> None:
        assert self.process is not None
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()


@pytest.fixture
def browser():
    if not CHROMIUM.exists():
        pytest.skip("Debian's chromium is not installed (apt-get install chromium)")
    playwright_api = pytest.importorskip("playwright.sync_api")
    with playwright_api.sync_playwright() as playwright:
        instance = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield instance
        instance.close()


@pytest.fixture
def screenshots(tmp_path: Path) -> Path:
    """Where the suite saves a screenshot of each page (OPENRECIPE_UI_SCREENSHOTS to keep them)."""
    folder = Path(os.environ.get("OPENRECIPE_UI_SCREENSHOTS") or tmp_path / "screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture
def ui_factory(tmp_path: Path):
    started: list[UiProcess] = []

    def make(workspace: Path) -> UiProcess:
        ui = UiProcess(workspace, free_port(), tmp_path / "home")
        started.append(ui)
        return ui

    yield make
    for ui in started:
        if ui.process is not None and ui.process.poll() is None:
            ui.kill()

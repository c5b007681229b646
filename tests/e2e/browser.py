"""What the browser tests share: Chromium's launch settings, a `dyadsync` command in the
background (:class:`DemoProcess`) and opening its dashboard once the server's hello has
arrived (:func:`open_dashboard`)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Page

REPO = Path(__file__).resolve().parents[2]
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
STARTUP_TIMEOUT_S = 45.0
# Regenerating the README screenshot runs the demo longer, until a tile shows a state
# (the surrogate null needs more than the default minute to fill).
UPDATE_SCREENSHOT = os.environ.get("DYADSYNC_UPDATE_SCREENSHOT") == "1"
# How long `DemoProcess` runs the demo by default (the tests stop it themselves).
DEMO_DURATION_S = 180 if UPDATE_SCREENSHOT else 120


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class DemoProcess:
    """A command in the background (by default `dyadsync demo`), stdout drained by a thread.

    ``env`` is added to this process's environment; ``record`` is the demo's ``--record``
    folder (the demo records nothing without it)."""

    def __init__(
        self,
        log_path: Path,
        command: list[str] | None = None,
        *,
        env: dict[str, str] | None = None,
        record: Path | None = None,
    ) -> None:
        self.ws_port = free_port()
        command = command or [
            str(Path(sys.executable).parent / "dyadsync"),
            "demo",
            "--no-browser",
            "--duration",
            str(DEMO_DURATION_S),
            "--ws-port",
            str(self.ws_port),
            "--dashboard-port",
            str(free_port()),
            *(["--record", str(record)] if record is not None else []),
        ]
        self.what = " ".join(Path(part).name for part in command[:2])
        self._stderr = log_path.open("w")
        self.log_path = log_path
        self.proc = subprocess.Popen(
            command,
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            text=True,
            env={**os.environ, **(env or {})},
        )
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    def output(self) -> str:
        self._stderr.flush()
        stderr_tail = self.log_path.read_text(errors="replace")[-3000:]
        return "stdout:\n" + "\n".join(self.lines) + "\nstderr (tail):\n" + stderr_tail

    def dashboard_url(self) -> str:
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while time.monotonic() < deadline:
            for line in self.lines:
                if line.startswith(("Dashboard: http://", "Dashboard: https://")):
                    return line.removeprefix("Dashboard: ").strip()
            if self.proc.poll() is not None:
                pytest.fail(
                    f"{self.what} exited with {self.proc.returncode} before printing "
                    f"its dashboard URL\n{self.output()}"
                )
            time.sleep(0.1)
        pytest.fail(
            f"no 'Dashboard: http://...' line within {STARTUP_TIMEOUT_S} s\n{self.output()}"
        )

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)  # the demo stops cleanly on Ctrl-C
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._reader.join(timeout=5)
        self._stderr.close()


def open_dashboard(
    browser: Any, url: str, errors: list[str], *, ignore_https_errors: bool = False
) -> Page:
    page: Page = browser.new_page(
        viewport={"width": 1400, "height": 860}, ignore_https_errors=ignore_https_errors
    )
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(url)
    page.wait_for_function(
        "() => window.Bokeh && Bokeh.documents.length > 0"
        " && Bokeh.documents[0].get_model_by_name('waiting') !== null"
        " && !Bokeh.documents[0].get_model_by_name('waiting').visible",
        timeout=30_000,
    )  # the server's hello arrived and the signal sections are shown
    return page

"""`dyadsync demo --certfile --keyfile`: https:// and wss:// end to end, in headless Chromium.

The dashboard page is served over https, its server-side feed reaches the websocket over
wss (the page shows the session only once the server's hello came through that feed), a
websocket client that trusts the certificate is served, and plain http/ws are not.
"""

from __future__ import annotations

import asyncio
import json
import ssl
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from playwright.sync_api import sync_playwright
from websockets.asyncio.client import connect

from tests.certs import self_signed
from tests.e2e.browser import CHROMIUM, CHROMIUM_ARGS, DemoProcess, free_port, open_dashboard

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]


async def _hello(url: str, context: ssl.SSLContext) -> dict[str, object]:
    async with connect(url, ssl=context) as ws:
        return json.loads(await ws.recv())


def test_dashboard_and_websocket_over_tls(tmp_path: Path) -> None:
    certfile, keyfile = self_signed(tmp_path, "clinic")
    ws_port, page_port = free_port(), free_port()
    demo = DemoProcess(
        tmp_path / "stderr.log",
        [
            str(Path(sys.executable).parent / "dyadsync"), "demo", "--no-browser",
            "--duration", "90", "--ws-port", str(ws_port), "--dashboard-port", str(page_port),
            "--certfile", str(certfile), "--keyfile", str(keyfile),
        ],
    )  # fmt: skip
    try:
        url = demo.dashboard_url()
        assert url.startswith(f"https://127.0.0.1:{page_port}/"), url
        assert f"Websocket: wss://127.0.0.1:{ws_port}/ws" in demo.lines
        trusted = ssl.create_default_context(cafile=certfile)
        assert asyncio.run(_hello(f"wss://127.0.0.1:{ws_port}/ws", trusted))["type"] == "hello"
        with pytest.raises(ssl.SSLCertVerificationError):
            asyncio.run(_hello(f"wss://127.0.0.1:{ws_port}/ws", ssl.create_default_context()))
        with pytest.raises((urllib.error.URLError, ConnectionError)):
            urllib.request.urlopen(f"http://127.0.0.1:{page_port}/dashboard", timeout=5)
        with urllib.request.urlopen(
            f"https://127.0.0.1:{page_port}/health", timeout=10, context=trusted
        ) as response:
            assert json.loads(response.read())["rooms"]["demo"]["state"] == "running"
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            try:
                errors: list[str] = []
                # The clinic's self-signed certificate is not in Chromium's trust store.
                page = open_dashboard(browser, url, errors, ignore_https_errors=True)
                assert page.title() == "dyadsync · demo"
                assert not errors, errors
            finally:
                browser.close()
    finally:
        demo.stop()
    assert demo.proc.returncode == 0, demo.output()

"""`dyadsync demo` bound to every interface, as a clinic would run it: the printed URLs open
from another machine's point of view (this machine's network address), the page and the
websocket refuse a missing token with proper HTTP statuses."""

from __future__ import annotations

import ipaddress
import json
import signal
import socket
import urllib.error
import urllib.request

import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from server.ws import machine_names
from tests.integration.test_cli_signals import cli, summary_rows

pytestmark = pytest.mark.integration

TOKEN = "clinic-t0ken"


def network_address() -> str:
    """An IPv4 address of this machine other than loopback (what a colleague would use)."""
    for name in machine_names():
        try:
            if ipaddress.ip_address(name).version == 4:
                return name
        except ValueError:
            continue
    pytest.skip("this machine has no non-loopback IPv4 address")


def free_port() -> int:
    # The origin must name the dashboard port in advance; the OS's pick, released again,
    # is free unless another program takes it in the next milliseconds.
    with socket.socket() as probe:
        probe.bind(("0.0.0.0", 0))
        return int(probe.getsockname()[1])


def http_status(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=30) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as refused:
        return refused.code, refused.read().decode()


def test_every_interface_bind_prints_openable_urls_and_refuses_without_token() -> None:
    address, port = network_address(), free_port()
    origin = f"http://{address}:{port}"
    args = ("--host", "0.0.0.0", "--token", TOKEN, "--allow-origin", origin)
    with cli(
        "demo", "--no-browser", "--dashboard-port", str(port), "--ws-port", "0", *args
    ) as demo:
        page_url = demo.wait_for("Dashboard: ").split()[1]
        ws_url = demo.wait_for("Websocket: ").split()[1]
        bound = demo.wait_for("Listening on every interface")
        assert page_url == f"{origin}/dashboard?token={TOKEN}"
        assert ws_url.startswith(f"ws://{address}:") and ws_url.endswith("/ws")
        assert f"(0.0.0.0): dashboard port {port}" in bound
        assert f"on this machine: http://127.0.0.1:{port}/dashboard?token={TOKEN}" in bound

        status, body = http_status(page_url)
        assert status == 200 and "Access denied" not in body
        for refused_url in (page_url.partition("?")[0], page_url.replace(TOKEN, "guess")):
            status, body = http_status(refused_url)
            assert status == 403 and "Access denied" in body, refused_url

        with pytest.raises(InvalidStatus) as refused:
            connect(ws_url, open_timeout=30).close()
        assert refused.value.response.status_code == 401
        assert refused.value.response.headers["WWW-Authenticate"].startswith("Bearer")
        with connect(f"{ws_url}?token={TOKEN}", open_timeout=30) as ws:
            assert json.loads(ws.recv(timeout=30))["type"] == "hello"
        with connect(ws_url, additional_headers={"Authorization": f"Bearer {TOKEN}"}) as ws:
            assert json.loads(ws.recv(timeout=30))["type"] == "hello"

        status = demo.finish(send=signal.SIGINT)
    assert status == 0, demo.err
    assert len(summary_rows(demo.out)) == 4
    assert TOKEN not in demo.err  # the token is printed in the URLs only, never logged
    # Without TLS the token and the data cross the network readable: said at start.
    assert "without TLS" in demo.err and "--certfile" in demo.err, demo.err

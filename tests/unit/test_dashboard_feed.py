"""dashboard.feed against a small scripted websocket server on localhost: messages reach
the sink, a lost server is reported and reconnected with backoff, the token is sent."""

from __future__ import annotations

import asyncio
import math
import socket
from typing import Any

import pytest
from websockets.asyncio.server import ServerConnection, serve
from websockets.datastructures import Headers
from websockets.http11 import Response

from dashboard.feed import Backoff, describe_failure, run_feed, with_token
from dashboard.state import DashboardState
from dsp.exceptions import ConfigError
from tests.unit.dashboard_helpers import hello, sync

pytestmark = pytest.mark.timeout(30)

HELLO = hello(t=10.0, signals=("hr",))


class RecordingSink(DashboardState):
    """The real state, plus a log of connection events and raw messages."""

    __slots__ = ("events",)

    def __init__(self) -> None:
        super().__init__()
        self.events: list[Any] = []

    def on_connecting(self) -> None:
        self.events.append("connecting")
        super().on_connecting()

    def on_connected(self) -> None:
        self.events.append("connected")
        super().on_connected()

    def on_disconnected(self, *, reason: str, now_s: float, retry_in_s: float) -> None:
        self.events.append(("disconnected", reason, retry_in_s))
        super().on_disconnected(reason=reason, now_s=now_s, retry_in_s=retry_in_s)

    def feed(self, raw: str | bytes, *, now_s: float) -> None:
        self.events.append(raw)
        super().feed(raw, now_s=now_s)


async def wait_for(predicate: Any, timeout_s: float = 5.0) -> None:
    async with asyncio.timeout(timeout_s):
        while not predicate():
            await asyncio.sleep(0.01)


async def test_messages_flow_and_reconnect_after_server_closes() -> None:
    connections = 0
    paths: list[str] = []

    async def handler(ws: ServerConnection) -> None:
        nonlocal connections
        connections += 1
        assert ws.request is not None
        paths.append(ws.request.path)
        await ws.send(HELLO)
        await ws.send(sync(9.0 + 3.0 * connections))  # 12 s, then 15 s
        if connections == 1:
            return  # closing the first connection: the client must come back
        await ws.wait_closed()  # keep the second one open until the test ends

    async with serve(handler, "127.0.0.1", 0) as server:
        port = server.sockets[0].getsockname()[1]
        sink = RecordingSink()
        url = with_token(f"ws://127.0.0.1:{port}/ws", "s3cret")
        task = asyncio.create_task(run_feed(url, sink, backoff=Backoff(initial_s=0.05)))
        try:
            await wait_for(lambda: connections == 2 and sink.events[-1] == sync(15.0))
        finally:
            task.cancel()
    assert sink.events == [
        "connecting",
        "connected",
        HELLO,
        sync(12.0),
        ("disconnected", "server closed the connection", 0.05),
        "connecting",
        "connected",
        HELLO,
        sync(15.0),
    ]
    assert paths == ["/ws?token=s3cret", "/ws?token=s3cret"]
    updates = sink.take_updates(now_s=asyncio.get_running_loop().time())
    assert updates.header.connection == "connected"
    # One session kept across the reconnect, with a gap (NaN row) for the 3 s missed.
    assert updates.sync["hr"]["x"] == [2000.0, 2000.0, 5000.0]
    z = updates.sync["hr"]["z"]
    assert z[0] == z[2] == 0.73 and math.isnan(z[1])


async def test_unreachable_server_backs_off_exponentially() -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    sink = RecordingSink()
    task = asyncio.create_task(
        run_feed(f"ws://127.0.0.1:{port}/ws", sink, backoff=Backoff(initial_s=0.01, max_s=0.04))
    )
    try:
        await wait_for(lambda: len(sink.events) >= 10)
    finally:
        task.cancel()
    failures = [e for e in sink.events if isinstance(e, tuple)]
    assert [delay for _, _, delay in failures[:5]] == [0.01, 0.02, 0.04, 0.04, 0.04]
    assert {reason for _, reason, _ in failures} == {"server not reachable"}
    assert "connected" not in sink.events


async def test_refused_handshake_is_reported_with_its_status() -> None:
    def reject(_connection: ServerConnection, _request: Any) -> Response:
        return Response(403, "Forbidden", Headers(), b"")

    async with serve(lambda ws: asyncio.sleep(0), "127.0.0.1", 0, process_request=reject) as server:
        port = server.sockets[0].getsockname()[1]
        sink = RecordingSink()
        task = asyncio.create_task(
            run_feed(f"ws://127.0.0.1:{port}/ws", sink, backoff=Backoff(initial_s=0.05))
        )
        try:
            await wait_for(lambda: any(isinstance(e, tuple) for e in sink.events))
        finally:
            task.cancel()
    refused = ("disconnected", "server refused the connection (HTTP 403)", 0.05)
    assert sink.events[:2] == ["connecting", refused]


def test_with_token_replaces_an_existing_token() -> None:
    assert with_token("ws://h:1/ws", None) == "ws://h:1/ws"
    assert with_token("ws://h:1/ws?a=1&token=old", "new") == "ws://h:1/ws?a=1&token=new"


def test_describe_failure_never_leaks_exception_text() -> None:
    assert describe_failure(RuntimeError("token=s3cret")) == "connection lost"
    assert describe_failure(TimeoutError()) == "server did not answer"


def test_backoff_config_is_validated() -> None:
    with pytest.raises(ConfigError, match="initial_s"):
        Backoff(initial_s=2.0, max_s=1.0)

"""dashboard.serve: the Bokeh server runs on the caller's loop, each page session opens its own
websocket feed, the token is enforced, stop() releases everything."""

from __future__ import annotations

import asyncio
import json
import logging
import socket
from urllib.parse import parse_qsl

import pytest
from bokeh.client import pull_session
from bokeh.document import Document
from tornado.httpclient import AsyncHTTPClient
from websockets.asyncio.server import ServerConnection, serve

from dashboard.serve import _bokeh_origin, start_dashboard
from dsp.exceptions import ConfigError
from server.errors import ServeError
from server.health import RoomHealth, RoomState
from server.ws import listen_tcp
from tests.unit.dashboard_helpers import hello

pytestmark = pytest.mark.timeout(60)

HELLO = hello(t=10.0, signals=("hr",))


async def pull_document(url: str) -> Document:
    """Open a real Bokeh client session (as a browser would) and return its document."""
    base, _, query = url.partition("?")
    arguments = dict(parse_qsl(query))

    def pull() -> Document:
        with pull_session(url=base, arguments=arguments) as session:
            return session.document

    # The client library runs its own loop: keep it off the loop the server runs on.
    return await asyncio.to_thread(pull)


async def test_page_sessions_connect_to_the_server_and_stop_closes_them() -> None:
    paths: list[str] = []
    closed: list[str] = []

    async def handler(ws: ServerConnection) -> None:
        assert ws.request is not None
        paths.append(ws.request.path)
        await ws.send(HELLO)
        await ws.wait_closed()
        closed.append(ws.request.path)

    async with serve(handler, "127.0.0.1", 0) as server:
        port = server.sockets[0].getsockname()[1]
        handle = start_dashboard(rooms={"room-1": f"ws://127.0.0.1:{port}/ws"}, port=0)
        try:
            assert handle.url.startswith("http://127.0.0.1:")
            assert handle.url.endswith("/dashboard")
            response = await AsyncHTTPClient().fetch(handle.url)
            assert response.code == 200
            doc = await pull_document(handle.url)
            assert doc.get_model_by_name("state_hr") is not None
            assert doc.get_model_by_name("hr_physio_client") is not None
            async with asyncio.timeout(10):
                while len(paths) < 2:
                    await asyncio.sleep(0.02)
            assert paths == ["/ws", "/ws"]  # one feed per page session (HTTP page, client)
        finally:
            handle.stop()
        async with asyncio.timeout(10):
            while len(closed) < 2:  # stop() closed every session's websocket feed
                await asyncio.sleep(0.02)
        handle.stop()  # idempotent


async def test_token_is_required_on_the_page_and_sent_to_the_server() -> None:
    paths: list[str] = []

    async def handler(ws: ServerConnection) -> None:
        assert ws.request is not None
        paths.append(ws.request.path)
        await ws.wait_closed()

    async with serve(handler, "127.0.0.1", 0) as server:
        port = server.sockets[0].getsockname()[1]
        handle = start_dashboard(
            rooms={"room-1": f"ws://127.0.0.1:{port}/ws"}, port=0, token="s3 cret&"
        )
        try:
            assert handle.url.endswith("/dashboard?token=s3+cret%26")
            # A browser with a wrong or no token: refused over HTTP, before any session.
            client = AsyncHTTPClient()
            for url in (handle.url.replace("s3+cret", "nope"), handle.url.partition("?")[0]):
                refused = await client.fetch(url, raise_error=False)
                assert refused.code == 403, url
                assert b"Access denied" in refused.body
            # A Bokeh client session with the wrong token gets the denial as its document.
            denied = await pull_document(handle.url.replace("s3+cret", "nope"))
            assert denied.get_model_by_name("state_hr") is None
            assert "Access denied" in str(denied.roots[0].text)  # type: ignore[attr-defined]
            assert not paths  # no refused page opened a feed
            page = await client.fetch(handle.url)
            assert page.code == 200 and b"Access denied" not in page.body
            async with asyncio.timeout(10):
                while not paths:
                    await asyncio.sleep(0.02)
            assert paths == ["/ws?token=s3+cret%26"]  # only the allowed page opened a feed
        finally:
            handle.stop()


async def test_bad_options_are_refused_naming_the_command_line_option() -> None:
    with pytest.raises(ConfigError, match="--token"):
        start_dashboard(rooms={"room-1": "ws://127.0.0.1:1/ws"}, host="0.0.0.0")
    with pytest.raises(ConfigError, match=r"--allow-origin .*scheme://host:port"):
        start_dashboard(rooms={"room-1": "ws://127.0.0.1:1/ws"}, host="0.0.0.0", token="t")
    with pytest.raises(ConfigError, match=r"--allow-origin 'http://' is not an origin"):
        start_dashboard(
            rooms={"room-1": "ws://127.0.0.1:1/ws"}, port=0, allow_websocket_origins=["http://"]
        )
    with pytest.raises(ConfigError, match="--dashboard-port"):
        start_dashboard(rooms={"room-1": "ws://127.0.0.1:1/ws"}, port=70000)
    with pytest.raises(ConfigError, match="websocket must look like"):
        start_dashboard(rooms={"room-1": "http://127.0.0.1:1/ws"})


async def test_port_in_use_names_the_option() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(ServeError, match=f"127.0.0.1:{port}.*another --dashboard-port"):
            start_dashboard(rooms={"room-1": "ws://127.0.0.1:1/ws"}, port=port)


async def test_serves_on_a_socket_the_caller_bound() -> None:
    listener = listen_tcp(host="127.0.0.1", port=0, what="the dashboard", flag="--dashboard-port")
    port = listener.getsockname()[1]
    handle = start_dashboard(rooms={"room-1": "ws://127.0.0.1:9/ws"}, listener=listener)
    try:
        assert handle.port == port and handle.url == f"http://127.0.0.1:{port}/dashboard"
        assert (await AsyncHTTPClient().fetch(handle.url)).code == 200
    finally:
        handle.stop()


def test_origins_are_normalised_for_bokeh() -> None:
    assert _bokeh_origin("http://Clinic.local:5006") == "clinic.local:5006"
    assert _bokeh_origin("https://clinic.local") == "clinic.local:443"
    assert _bokeh_origin("http://clinic.local:80/") == "clinic.local:80"
    for bad in ("clinic.local:5006", "http://clinic.local:5006/dashboard", "http://[::1]:5006"):
        with pytest.raises(ConfigError, match="--allow-origin"):
            _bokeh_origin(bad)


def test_needs_a_running_loop() -> None:
    with pytest.raises(RuntimeError):
        start_dashboard(rooms={"room-1": "ws://127.0.0.1:1/ws"}, port=0)


@pytest.mark.parametrize(
    ("root_level", "quieted"), [(logging.WARNING, True), (logging.INFO, False)]
)
async def test_closed_tab_warnings_are_quiet_unless_info_is_wanted(
    root_level: int, quieted: bool
) -> None:
    names = ("bokeh.server.views.ws", "bokeh.server.protocol_handler")
    root = logging.getLogger()
    saved = (root.level, *(logging.getLogger(n).level for n in names))
    root.setLevel(root_level)
    for name in names:
        logging.getLogger(name).setLevel(logging.NOTSET)
    try:
        handle = start_dashboard(rooms={"room-1": "ws://127.0.0.1:9/ws"}, port=0)
        handle.stop()
        levels = [logging.getLogger(n).level for n in names]
        assert levels == ([logging.ERROR] * 2 if quieted else [logging.NOTSET] * 2)
    finally:
        root.setLevel(saved[0])
        for name, level in zip(names, saved[1:], strict=True):
            logging.getLogger(name).setLevel(level)


async def test_health_metrics_and_rooms_page_need_the_token_as_the_pages_do() -> None:
    room = RoomHealth(
        room="room-1", state=RoomState.RUNNING, uptime_s=5.0, streams={}, clients=0,
        updates_sent=3, dropped_messages=0, queue_depths={},
    )  # fmt: skip
    handle = start_dashboard(
        rooms={"room-1": "ws://127.0.0.1:9/ws/room-1"}, status=lambda: [room], port=0, token="tk"
    )
    client = AsyncHTTPClient()
    base = f"http://127.0.0.1:{handle.port}"
    try:
        for path in ("/health", "/metrics", "/"):
            refused = await client.fetch(base + path, raise_error=False)
            assert refused.code == 403, path
            wrong = {"Authorization": "Bearer nope"}
            assert (await client.fetch(base + path, headers=wrong, raise_error=False)).code == 403
        bearer = {"Authorization": "Bearer tk"}
        health = await client.fetch(base + "/health", headers=bearer)
        assert json.loads(health.body)["rooms"]["room-1"]["state"] == "running"
        metrics = await client.fetch(base + "/metrics?token=tk")
        assert metrics.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        assert b'dyadsync_room_up{room="room-1"} 1' in metrics.body
        landing = await client.fetch(base + "/?token=tk")
        assert b'href="/dashboard/room-1?token=tk"' in landing.body
    finally:
        handle.stop()

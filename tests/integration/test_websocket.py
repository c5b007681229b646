"""The websocket endpoint over real connections: auth, origins, bad messages, late joiners."""

from __future__ import annotations

import json
import math
import socket
from collections.abc import AsyncIterator

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosedError, InvalidStatus

from server.errors import ServeError
from server.hub import Hub
from server.protocol import MessageFactory
from server.ws import RoomChannel, WebsocketConfig, WebsocketEndpoint
from tests.integration.fixed_rooms import FixedRooms

pytestmark = pytest.mark.integration


async def started(config: WebsocketConfig, hub: Hub | None = None) -> WebsocketEndpoint:
    messages = MessageFactory(session="room-1", clock=lambda: 100.0)
    channel = RoomChannel(hub=hub or Hub(), messages=messages, hello=lambda: messages("hello"))
    endpoint = WebsocketEndpoint(rooms=FixedRooms({"room-1": channel}), config=config)
    await endpoint.start()
    return endpoint


@pytest.fixture
async def endpoint() -> AsyncIterator[WebsocketEndpoint]:
    ep = await started(WebsocketConfig(port=0, allowed_origins=("http://clinic.example",)))
    yield ep
    await ep.stop()


async def receive(ws: ClientConnection) -> dict[str, object]:
    return json.loads(await ws.recv(decode=True))


async def test_browser_from_an_unlisted_origin_is_refused(endpoint: WebsocketEndpoint) -> None:
    with pytest.raises(InvalidStatus) as refused:
        async with connect(endpoint.url, origin="http://evil.example"):  # type: ignore[arg-type]
            pass
    assert refused.value.response.status_code == 403


async def test_listed_origin_and_non_browser_clients_are_served(
    endpoint: WebsocketEndpoint,
) -> None:
    async with connect(endpoint.url, origin="http://clinic.example") as ws:  # type: ignore[arg-type]
        assert (await receive(ws))["type"] == "hello"
    async with connect(endpoint.url) as ws:
        assert (await receive(ws))["type"] == "hello"


async def test_bad_messages_get_an_error_and_the_connection_stays(
    endpoint: WebsocketEndpoint,
) -> None:
    async with connect(endpoint.url) as ws:
        await receive(ws)
        for raw, code in [
            ("garbage", "bad_message"),
            ('{"v": 1, "type": "reboot"}', "unknown_type"),
            ('{"type": "ping"}', "bad_message"),
        ]:
            await ws.send(raw)
            reply = await receive(ws)
            assert (reply["type"], reply["code"]) == ("error", code)
        await ws.send('{"v": 1, "type": "ping"}')
        assert (await receive(ws))["type"] == "pong"


async def test_oversized_message_closes_with_1009(endpoint: WebsocketEndpoint) -> None:
    async with connect(endpoint.url) as ws:
        await receive(ws)
        await ws.send("x" * 5000)
        with pytest.raises(ConnectionClosedError) as closed:
            await ws.recv()
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1009


async def test_token_is_required_when_set() -> None:
    ep = await started(WebsocketConfig(port=0, token="s3cret"))
    try:
        for url in (ep.url, ep.url + "?token=wrong"):
            with pytest.raises(InvalidStatus) as refused:
                async with connect(url):
                    pass
            assert refused.value.response.status_code == 401
        async with connect(ep.url + "?token=s3cret") as ws:
            assert (await receive(ws))["type"] == "hello"
    finally:
        await ep.stop()


async def test_late_client_gets_hello_then_recent_history_then_live() -> None:
    hub = Hub(backlog_s=60.0)
    ep = await started(WebsocketConfig(port=0), hub)
    factory = MessageFactory(session="room-1", clock=lambda: 0.0)
    try:
        for t in (10.0, 50.0, 80.0):  # 10.0 is older than 60 s before 80.0: dropped
            hub.publish(factory("sync", t=t))
        hub.publish(factory("health", t=80.0))  # superseded within seconds: not kept
        async with connect(ep.url) as ws:
            got = [await receive(ws) for _ in range(3)]
            assert [(m["type"], m["t"]) for m in got] == [
                ("hello", 100.0),
                ("sync", 50.0),
                ("sync", 80.0),
            ]
            hub.publish(factory("episode", t=81.0))
            assert (await receive(ws))["t"] == 81.0
    finally:
        await ep.stop()


async def test_port_in_use_is_a_clear_error() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(ServeError, match=f"127.0.0.1:{port}.*choose another --ws-port"):
            await started(WebsocketConfig(port=port))


async def test_a_sender_that_fails_closes_its_connection_with_1011() -> None:
    hub = Hub()
    ep = await started(WebsocketConfig(port=0), hub)
    try:
        async with connect(ep.url) as ws:
            assert (await receive(ws))["type"] == "hello"
            # A message that bypassed the factory's cleaning cannot be encoded (a bug):
            # the client is told, not left connected and silently starved.
            hub.publish({"v": 1, "type": "sync", "session": "room-1", "t": 1.0, "r": math.nan})
            with pytest.raises(ConnectionClosedError) as closed:
                await ws.recv()
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 1011
    finally:
        await ep.stop()


class _Rooms(FixedRooms):
    """Room "later" exists but is not serving yet (waiting for its sensors)."""

    def names(self) -> list[str]:
        return [*super().names(), "later"]

    def state(self, name: str) -> str:
        return "waiting: waiting for its sensors" if name == "later" else "running"


async def test_each_room_has_its_path_and_a_room_not_serving_says_so() -> None:
    channels = {
        name: RoomChannel(
            hub=Hub(),
            messages=(factory := MessageFactory(session=name, clock=lambda: 1.0)),
            hello=lambda factory=factory: factory("hello"),  # type: ignore[misc]
        )
        for name in ("room-a", "room-b")
    }
    ep = WebsocketEndpoint(rooms=_Rooms(channels), config=WebsocketConfig(port=0))
    await ep.start()
    try:
        for room in ("room-a", "room-b"):
            async with connect(ep.url_for("127.0.0.1", room=room)) as ws:
                assert (await receive(ws))["session"] == room
        with pytest.raises(InvalidStatus) as refused:
            async with connect(ep.url_for("127.0.0.1", room="later")):
                pass
        assert refused.value.response.status_code == 503
        assert refused.value.response.headers["Retry-After"] == "5"
        assert b"waiting for its sensors" in refused.value.response.body
        # Two rooms: /ws names none of them, and an unknown room is not found.
        for path in ("/ws", "/ws/nope"):
            with pytest.raises(InvalidStatus) as missing:
                async with connect(f"ws://127.0.0.1:{ep.port}{path}"):
                    pass
            assert missing.value.response.status_code == 404
    finally:
        await ep.stop()

"""Fan-out to many websocket clients: 50 that read and one that never does.

Real connections to the real endpoint. Every reading client receives every ``sync``
update in order; the client that never reads is handled by the documented policy (its
bounded queue drops the oldest ``physio`` first, every drop counted, the count kept after
it leaves); the server's memory for it stays bounded by that queue.
"""

from __future__ import annotations

import asyncio
import json
import socket

import pytest
from websockets.asyncio.client import connect

from server.hub import Hub
from server.protocol import MessageFactory
from server.ws import RoomChannel, WebsocketConfig, WebsocketEndpoint
from tests.integration.fixed_rooms import FixedRooms

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

READERS = 50
UPDATES = 300  # five minutes of 1 s synchrony updates
PHYSIO_PER_UPDATE = 8  # high-rate batches between updates


async def test_fifty_readers_get_every_update_and_a_stuck_client_stays_bounded() -> None:
    hub = Hub()
    factory = MessageFactory(session="room-1", clock=lambda: 0.0)
    channel = RoomChannel(hub=hub, messages=factory, hello=lambda: factory("hello"))
    endpoint = WebsocketEndpoint(
        rooms=FixedRooms({"room-1": channel}), config=WebsocketConfig(port=0)
    )
    await endpoint.start()
    received: list[list[int]] = [[] for _ in range(READERS)]

    async def reader(index: int, ready: asyncio.Event) -> None:
        async with connect(endpoint.url, max_size=2**20) as ws:
            assert json.loads(await ws.recv())["type"] == "hello"
            ready.set()
            while len(received[index]) < UPDATES:
                raw = await ws.recv()
                if '"type":"sync"' in raw:  # decode only what is checked
                    received[index].append(json.loads(raw)["n"])

    try:
        # The stuck client: connects, then never reads. A small receive buffer (set before
        # connecting, so the TCP window is small) stands for a client on a slow link: the
        # kernel cannot absorb the backlog, so the server-side queue has to handle it.
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.connect(("127.0.0.1", endpoint.port))
        stuck = await connect(endpoint.url, sock=sock, max_size=2**20, max_queue=1)
        readys = [asyncio.Event() for _ in range(READERS)]
        readers = [asyncio.create_task(reader(i, readys[i])) for i in range(READERS)]
        await asyncio.wait_for(asyncio.gather(*(r.wait() for r in readys)), 30)
        # A physio batch of a few seconds of several signals: with the others, some
        # some 6 MB in all, more than the kernel's socket buffers can hold for a stuck client.
        payload = [float(k) + 0.123456 for k in range(500)]
        for n in range(UPDATES):
            for _ in range(PHYSIO_PER_UPDATE):
                hub.publish(factory("physio", t=float(n), values=payload))
            hub.publish(factory("sync", t=float(n), n=n))
            if n % 20 == 0:
                await asyncio.sleep(0)  # let the senders run, as the service loop does
        await asyncio.wait_for(asyncio.gather(*readers), 60)
        assert all(got == list(range(UPDATES)) for got in received)
        # The stuck client's queue is bounded; what it could not take was dropped oldest-
        # physio-first and counted.
        depths = hub.queue_depths()
        assert len(depths) == 1, depths  # the readers left; the stuck client remains
        (stuck_depth,) = depths.values()
        assert stuck_depth <= 256 + 1024  # ConsumerQueue's default limits
        assert hub.dropped > 0
        await stuck.close()
        await asyncio.sleep(0.2)
        assert hub.consumer_count == 0 and hub.dropped > 0  # the count outlives the client
    finally:
        await endpoint.stop()

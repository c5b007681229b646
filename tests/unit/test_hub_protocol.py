"""Hub fan-out policy and protocol encoding, without a network."""

from __future__ import annotations

import json

import numpy as np
import pytest

from server.errors import ProtocolError
from server.hub import Hub
from server.protocol import (
    MAX_CLIENT_MESSAGE_BYTES,
    MessageFactory,
    decode_client_message,
    encode,
    make_message,
)


def msg(kind: str, n: int) -> dict[str, object]:
    return make_message(kind, session="s", t=float(n), n=n)


async def test_slow_consumer_loses_oldest_physio_first_and_never_blocks_publisher() -> None:
    hub = Hub()
    slow = hub.subscribe("slow", max_droppable=3, max_events=10)
    for n in range(6):
        hub.publish(msg("physio", n))
    hub.publish(msg("sync", 99))
    assert slow.dropped == 3
    got = [(await slow.get()).message for _ in range(len(slow))]
    assert [m["n"] for m in got] == [3, 4, 5, 99]  # order of publication is kept


async def test_every_consumer_gets_every_message_when_keeping_up() -> None:
    hub = Hub()
    a, b = hub.subscribe("a"), hub.subscribe("b")
    for n in range(5):
        hub.publish(msg("sync", n))
    assert [(await a.get()).message["n"] for _ in range(5)] == list(range(5))
    assert [(await b.get()).message["n"] for _ in range(5)] == list(range(5))
    hub.unsubscribe(a)
    assert hub.consumer_count == 1


def test_messages_carry_header_and_never_nan() -> None:
    factory = MessageFactory(session="room-1", clock=lambda: 12.5)
    message = factory("sync", r=np.float64(np.nan), values=np.array([1.0, np.inf]))
    decoded = json.loads(encode(message))
    assert decoded == {
        "v": 1,
        "type": "sync",
        "session": "room-1",
        "t": 12.5,
        "r": None,
        "values": [1.0, None],
    }


@pytest.mark.parametrize(
    ("raw", "fragment"),
    [
        ("not json", "not valid JSON"),
        ("[1, 2]", "not a JSON object"),
        ('{"v": 2, "type": "ping"}', "unsupported protocol version 2"),
        ('{"type": "ping"}', "no 'v' field"),
        ('{"v": 1}', "no string 'type'"),
        ("x" * (MAX_CLIENT_MESSAGE_BYTES + 1), "exceeds the 4096-byte limit"),
    ],
)
def test_bad_client_messages_are_rejected_with_a_reason(raw: str, fragment: str) -> None:
    with pytest.raises(ProtocolError, match=fragment):
        decode_client_message(raw)


def test_valid_client_message_is_accepted() -> None:
    assert decode_client_message('{"v": 1, "type": "ping"}')["type"] == "ping"


async def test_each_message_is_encoded_once_for_all_consumers() -> None:
    hub = Hub()
    queues = [hub.subscribe(f"c{i}") for i in range(10)]
    hub.publish(msg("sync", 1))
    received = [await q.get() for q in queues]
    # One shared object, so one encoding; and it is the message's JSON.
    assert len({id(p) for p in received}) == 1
    assert received[0].text is received[-1].text
    assert json.loads(received[0].text)["n"] == 1
    assert hub.backlog()[0] is received[0]


def test_dropped_count_survives_the_slow_consumer_leaving() -> None:
    hub = Hub()
    slow = hub.subscribe("slow", max_droppable=2)
    for n in range(5):
        hub.publish(msg("physio", n))
    assert hub.dropped == 3
    hub.unsubscribe(slow)
    hub.unsubscribe(slow)  # twice: counted once
    assert hub.dropped == 3
    assert hub.queue_depths() == {}

"""The walking skeleton end to end over real LSL and a real websocket.

Simulator outlets -> streamer inlets -> dyad pipeline -> hub -> websocket client, for 30 s
of real time. The sample counters carried by every simulated stream prove that nothing
was lost or duplicated on the way, and the websocket client sees the same counters in
the server's ``health`` messages.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import uuid

import pytest
from websockets.asyncio.client import connect

from dsp.types import Role, SignalKind
from server.rooms import assemble_session
from server.ws import RoomChannel, WebsocketConfig, WebsocketEndpoint
from streamer.inlet import open_session_inlets
from streamer.scenario import Episode, Scenario
from streamer.session import simulator_session
from streamer.simulate import DyadSimulator
from tests.integration.fixed_rooms import FixedRooms

pytestmark = pytest.mark.integration

RUN_S = 30.0


async def test_thirty_seconds_of_live_chain_lose_nothing_and_stream_synchrony() -> None:
    prefix = f"test-chain-{uuid.uuid4().hex[:8]}"
    scenario = Scenario(
        duration_s=120.0,
        seed=3,
        episodes=(
            Episode(start_s=0.0, end_s=120.0, coupling=0.9, leader=Role.THERAPIST, lag_s=1.0),
        ),
    )
    # A short window so estimates (not only "warming up") arrive within the 30 s run.
    session = dataclasses.replace(
        simulator_session(prefix),
        synchrony={"window_s": 10.0, "lag_s": 2.0, "step_s": 1.0, "grid_hz": 4.0},
    )
    with DyadSimulator(scenario, source_prefix=prefix) as simulator:
        inlets = await asyncio.to_thread(open_session_inlets, session, timeout_s=10.0)
        parts = assemble_session(session, sources=inlets)
        channel = RoomChannel(hub=parts.hub, messages=parts.messages, hello=parts.service.hello)
        endpoint = WebsocketEndpoint(
            rooms=FixedRooms({session.room: channel}), config=WebsocketConfig(port=0)
        )
        await endpoint.start()
        received: list[dict[str, object]] = []

        async def listen() -> None:
            async with connect(endpoint.url) as ws:
                async for raw in ws:
                    received.append(json.loads(raw))

        listener = asyncio.create_task(listen())
        summary = await parts.service.run(duration_s=RUN_S)
        await asyncio.sleep(0.5)  # let the final health message reach the client
        listener.cancel()
        await endpoint.stop()
        sent = simulator.samples_sent

    assert received[0]["type"] == "hello"
    assert all(m["v"] == 1 and {"type", "session", "t"} <= m.keys() for m in received)

    for role in Role:
        for signal in SignalKind:
            key = f"{role.value}-{signal.value}"
            stats = summary.streams[key]
            assert stats["lost"] == 0 and stats["duplicated"] == 0, (key, stats)
            # ~30 s of samples arrived (allow for the inlet opening after the outlets)
            rate = 256.0 if signal is SignalKind.ECG else 32.0
            assert int(stats["received"]) >= 0.8 * RUN_S * rate, (key, stats)
            assert int(stats["received"]) <= sent[key]

    sync = [m for m in received if m["type"] == "sync"]
    signals = {m["signal"] for m in sync}
    assert signals == {"hr", "phasic"}
    estimates = [m for m in sync if m["estimate"]]
    assert estimates, "no synchrony estimate arrived during the run"
    assert all(isinstance(m["r"], float) for m in estimates)

    health = [m for m in received if m["type"] == "health"]
    last_health = health[-1]["streams"]
    assert isinstance(last_health, dict)
    assert all(s["lost"] == 0 and s["duplicated"] == 0 for s in last_health.values())
    physio_roles = {(m["role"], m["signal"]) for m in received if m["type"] == "physio"}
    assert {
        ("therapist", "hr"),
        ("client", "hr"),
        ("therapist", "scl"),
        ("client", "scl"),
    } <= physio_roles

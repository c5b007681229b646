"""Several rooms in one service, over real LSL, websockets and HTTP.

Four simulated dyads, one room each: every room's websocket and dashboard page carry only
that room; a room whose sensors appear late joins when they do; killing one room's
sensors leaves the other rooms at 0 lost samples; a room whose pipeline raises fails
alone. ``/health`` and ``/metrics`` say so, read with an independent Prometheus parser.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Sequence
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families
from websockets.asyncio.client import connect

from dsp.types import Frame, Role, SignalKind, StatusEvent
from dyadsync.app import ServeOptions, bind_ports, serve_rooms
from dyadsync.cli import example_session_path
from server.rooms import RoomPlan
from server.ws import WebsocketConfig
from streamer.scenario import Episode, Scenario
from streamer.session import SessionConfig, simulator_session
from streamer.simulate import DyadSimulator

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

DYADSYNC = str(Path(sys.executable).with_name("dyadsync"))

SCENARIO = Scenario(
    duration_s=300.0,
    seed=5,
    episodes=(Episode(start_s=0.0, end_s=300.0, coupling=0.8, leader=Role.CLIENT, lag_s=1.0),),
)


def _room_session(room: str, prefix: str) -> SessionConfig:
    return dataclasses.replace(
        simulator_session(prefix),
        room=room,
        synchrony={"window_s": 10.0, "lag_s": 2.0, "step_s": 1.0, "grid_hz": 4.0},
    )


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:  # 503 when degraded: still a document
        return error.code, error.read().decode()


async def _health(port: int) -> dict[str, object]:
    _, body = await asyncio.to_thread(_get, f"http://127.0.0.1:{port}/health")
    return json.loads(body)


async def _wait_for(port: int, room: str, state: str, *, within_s: float) -> dict[str, object]:
    deadline = time.monotonic() + within_s
    while True:
        health = await _health(port)
        if health["rooms"][room]["state"] == state:  # type: ignore[index]
            return health
        assert time.monotonic() < deadline, health
        await asyncio.sleep(0.3)


async def _collect(url: str, seconds: float) -> list[dict[str, object]]:
    messages: list[dict[str, object]] = []
    async with connect(url) as ws:
        end = time.monotonic() + seconds
        while (left := end - time.monotonic()) > 0:
            try:
                messages.append(json.loads(await asyncio.wait_for(ws.recv(), left)))
            except TimeoutError:
                break
    return messages


def _lost_by_room(metrics: str) -> dict[str, float]:
    lost: dict[str, float] = {}
    for family in text_string_to_metric_families(metrics):
        if family.name == "dyadsync_stream_samples_lost":
            for sample in family.samples:
                room = sample.labels["room"]
                lost[room] = lost.get(room, 0.0) + sample.value
    return lost


async def test_four_rooms_are_isolated_and_a_late_or_dead_room_holds_up_none() -> None:
    tag = uuid.uuid4().hex[:6]
    rooms = [f"room{i}" for i in range(1, 5)]
    prefixes = {room: f"test-rooms-{tag}-{room}" for room in rooms}
    plans = [RoomPlan(session=_room_session(r, prefixes[r]), discovery_s=1.0) for r in rooms]
    options = ServeOptions(websocket=WebsocketConfig(port=0), dashboard_port=0, duration_s=40.0)
    ports = bind_ports(options)
    ws_port = ports.websocket.getsockname()[1]
    page_port = ports.dashboard.getsockname()[1]
    early = [DyadSimulator(SCENARIO, source_prefix=prefixes[r]) for r in rooms[:3]]
    late = DyadSimulator(SCENARIO, source_prefix=prefixes["room4"])
    for simulator in early:
        simulator.start()
    try:
        serving = asyncio.create_task(serve_rooms(plans, options=options, ports=ports))
        health = await _wait_for(page_port, "room1", "running", within_s=15)
        assert health["rooms"]["room4"]["state"] == "waiting"  # type: ignore[index]
        # The sensors of room 4 appear late: it joins without a restart.
        late.start()
        await _wait_for(page_port, "room4", "running", within_s=15)
        for room in ("room1", "room2", "room3"):
            await _wait_for(page_port, room, "running", within_s=10)

        # Each room's websocket carries only that room.
        streams = await asyncio.gather(
            *(_collect(f"ws://127.0.0.1:{ws_port}/ws/{room}", 4.0) for room in rooms)
        )
        for room, messages in zip(rooms, streams, strict=True):
            assert messages[0]["type"] == "hello"
            assert {m["session"] for m in messages} == {room}
            assert any(m["type"] == "physio" for m in messages)
        # Each room's dashboard page is that room's; the rooms page lists all four.
        status, page = await asyncio.to_thread(
            _get, f"http://127.0.0.1:{page_port}/dashboard/room2"
        )
        assert status == 200 and "<title>dyadsync · room2</title>" in page
        status, landing = await asyncio.to_thread(_get, f"http://127.0.0.1:{page_port}/")
        assert status == 200 and all(f"/dashboard/{room}" in landing for room in rooms)

        # Room 4's sensors die; the service reports it and the other rooms lose nothing.
        late.stop()
        deadline = time.monotonic() + 10
        while True:
            status, body = await asyncio.to_thread(_get, f"http://127.0.0.1:{page_port}/health")
            streams4 = json.loads(body)["rooms"]["room4"]["streams"]
            if status == 503 and any(s["status"] == "stalled" for s in streams4.values()):
                break
            assert time.monotonic() < deadline, body
            await asyncio.sleep(0.5)
        await asyncio.sleep(3.0)
        _, metrics = await asyncio.to_thread(_get, f"http://127.0.0.1:{page_port}/metrics")
        lost = _lost_by_room(metrics)
        assert set(lost) == set(rooms) and all(lost[room] == 0 for room in rooms[:3]), lost
        summaries = await serving
    finally:
        for simulator in early:
            simulator.stop()
        late.stop()
    assert not summaries.failures, summaries.failures
    for room in rooms[:3]:
        summary = summaries[room]
        assert summary is not None
        for key, stats in summary.streams.items():
            assert stats["lost"] == 0 and int(stats["received"]) > 0, (room, key, stats)
            assert stats["status"] == "connected", (room, key, stats)
    dead = summaries["room4"]
    assert dead is not None and dead.updates_sent > 0


class _FailingSource:
    """A source whose device layer raises mid-session (an unforeseen bug in one room)."""

    def __init__(self, role: Role, signal: SignalKind, *, after_polls: int) -> None:
        self.role, self.signal, self.rate_hz = role, signal, 32.0
        self._left = after_polls

    def poll(self) -> tuple[list[Frame], list[StatusEvent]]:
        self._left -= 1
        if self._left < 0:
            raise RuntimeError("device layer bug")
        return [], []

    def close(self) -> None:
        pass


async def test_a_room_whose_pipeline_raises_fails_alone() -> None:
    prefix = f"test-rooms-{uuid.uuid4().hex[:6]}"
    good = RoomPlan(session=_room_session("good", prefix), discovery_s=1.0)
    bad_sources: Sequence[_FailingSource] = [
        _FailingSource(role, signal, after_polls=40) for role in Role for signal in SignalKind
    ]
    bad = RoomPlan(session=_room_session("bad", prefix + "-none"), sources=bad_sources)
    options = ServeOptions(websocket=WebsocketConfig(port=0), dashboard_port=0, duration_s=15.0)
    ports = bind_ports(options)
    page_port = ports.dashboard.getsockname()[1]
    with DyadSimulator(SCENARIO, source_prefix=prefix):
        serving = asyncio.create_task(serve_rooms([good, bad], options=options, ports=ports))
        health = await _wait_for(page_port, "bad", "failed", within_s=12)
        assert "device layer bug" in health["rooms"]["bad"]["detail"]  # type: ignore[index]
        assert health["status"] == "degraded"
        await _wait_for(page_port, "good", "running", within_s=12)
        summaries = await serving
    assert summaries["bad"] is None and "RuntimeError" in summaries.failures["bad"]
    summary = summaries["good"]
    assert summary is not None and summary.updates_sent > 0
    assert all(s["lost"] == 0 for s in summary.streams.values()), summary.streams


def test_run_with_two_session_files_serves_two_rooms(tmp_path: Path) -> None:
    tag = uuid.uuid4().hex[:6]
    sessions, simulators = [], []
    for room in ("left", "right"):
        prefix = f"test-cli-rooms-{tag}-{room}"
        text = Path(example_session_path()).read_text()
        text = text.replace('room = "simulator"', f'room = "{room}"')
        path = tmp_path / f"{room}.toml"
        path.write_text(text.replace("dyadsync-sim-", f"{prefix}-"))
        sessions.append(str(path))
        simulators.append(DyadSimulator(SCENARIO, source_prefix=prefix))
    for simulator in simulators:
        simulator.start()
    try:
        done = subprocess.run(
            [DYADSYNC, "run", *sessions, "--duration", "12", "--no-browser",
             "--ws-port", "0", "--dashboard-port", "0"],
            capture_output=True, text=True, timeout=90, check=False,
        )  # fmt: skip
    finally:
        for simulator in simulators:
            simulator.stop()
    assert done.returncode == 0, done.stderr[-2000:]
    lines = done.stdout.splitlines()
    assert lines[0].startswith("Dashboard: http://127.0.0.1:") and lines[0].endswith("/")
    for room in ("left", "right"):
        assert any(f"room {room}: " in line and f"/dashboard/{room}" in line for line in lines)
        summary = done.stdout.split(f"== room {room}\n")[1].split("== room")[0]
        rows = [
            row.split() for row in summary.splitlines() if row.startswith(("client-", "therapist-"))
        ]
        assert len(rows) == 4 and all(row[2] == "0" and int(row[1]) > 0 for row in rows), summary

"""The derived LSL outlets over a real live session, read back with real pylsl inlets.

Simulator outlets -> streamer inlets -> dyad pipeline -> hub -> (a) :class:`DerivedOutlets`
-> LSL -> inlets of this test, and (b) a plain hub consumer. For a minute of real time
every sample the outlets carry must be the message's, with the message's time stamps,
and nothing may be missing: the hub consumer's messages are the reference.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import time
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from typing import Any

import numpy as np
import pylsl
import pytest

from dsp.types import Role
from server.hub import ConsumerQueue
from server.lsl_outlets import DerivedOutlets
from server.protocol import Message
from server.recorder import SYNC_CHANNELS, sync_row
from server.rooms import assemble_session
from streamer.inlet import open_session_inlets
from streamer.scenario import Episode, Scenario
from streamer.session import simulator_session
from streamer.simulate import DyadSimulator

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

RUN_S = 60.0
# A short window, a small surrogate null and a lenient episode detector, so synchrony
# estimates, significance and an episode all arrive within the run.
SYNCHRONY = {
    "window_s": 10.0,
    "lag_s": 2.0,
    "step_s": 1.0,
    "grid_hz": 4.0,
    "surrogates": {"n_surrogates": 19, "min_shift_s": 8.0, "history_s": 60.0},
    "episodes": {"z_enter": 2.0, "z_exit": 1.0, "min_duration_s": 3.0},
}
PHYSIO_KEYS = [f"{role.value}-{signal}" for role in Role for signal in ("hr", "scl", "phasic")]
UNITS = {"hr": "bpm", "scl": "uS", "phasic": "uS"}
TYPES = {"hr": "HeartRate", "scl": "SkinConductanceLevel", "phasic": "PhasicSkinConductance"}


@dataclasses.dataclass
class Reader:
    """A test inlet on one derived outlet and everything pulled from it."""

    inlet: pylsl.StreamInlet
    header: ET.Element
    stamps: list[float] = dataclasses.field(default_factory=list)
    samples: list[Any] = dataclasses.field(default_factory=list)

    def pull(self) -> None:
        while True:
            samples, stamps = self.inlet.pull_chunk(timeout=0.0)
            if not stamps:
                return
            self.samples.extend(samples)
            self.stamps.extend(stamps)


@contextlib.contextmanager
def readers(source_ids: dict[str, str]) -> Iterator[dict[str, Reader]]:
    opened: dict[str, Reader] = {}
    try:
        for key, source_id in source_ids.items():
            found = pylsl.resolve_byprop("source_id", source_id, timeout=5.0)
            assert found, f"derived outlet {source_id} not visible"
            inlet = pylsl.StreamInlet(found[0], max_buflen=360)
            inlet.open_stream(timeout=5.0)
            header = ET.fromstring(inlet.info(timeout=5.0).as_xml())
            opened[key] = Reader(inlet=inlet, header=header)
        yield opened
    finally:
        for reader in opened.values():
            reader.inlet.close_stream()


def pull_all(opened: dict[str, Reader], expected: dict[str, int], timeout_s: float) -> None:
    """Pull until every reader has ``expected`` samples or ``timeout_s`` passed."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for reader in opened.values():
            reader.pull()
        if all(len(opened[key].stamps) >= n for key, n in expected.items()):
            return
        time.sleep(0.05)


async def collect(queue: ConsumerQueue) -> list[Message]:
    collected = []
    while len(queue):
        collected.append((await queue.get()).message)
    return collected


def channels(header: ET.Element) -> list[tuple[str, str, str]]:
    return [
        (c.findtext("label", ""), c.findtext("unit", ""), c.findtext("type", ""))
        for c in header.iterfind("desc/channels/channel")
    ]


async def test_a_minute_of_derived_outlets_matches_the_messages_sample_for_sample() -> None:
    tag = uuid.uuid4().hex[:8]
    prefix = f"test-lslout-{tag}"
    room = f"lslout-{tag}"
    session = dataclasses.replace(simulator_session(prefix), room=room, synchrony=SYNCHRONY)
    scenario = Scenario(
        duration_s=120.0,
        seed=5,
        episodes=(
            Episode(start_s=0.0, end_s=40.0, coupling=0.95, leader=Role.THERAPIST, lag_s=1.0),
        ),
    )
    with DyadSimulator(scenario, source_prefix=prefix):
        inlets = await asyncio.to_thread(open_session_inlets, session, timeout_s=10.0)
        parts = assemble_session(session, sources=inlets)
        reference = parts.hub.subscribe("test-reference", max_droppable=50_000, max_events=50_000)
        with (
            DerivedOutlets(
                hub=parts.hub, session=session, pipeline=parts.pipeline.config
            ) as outlets,
            readers(outlets.source_ids) as opened,
        ):
            forwarding = asyncio.create_task(outlets.run())
            try:
                await parts.service.run(duration_s=RUN_S)
                await outlets.drain()
            finally:
                forwarding.cancel()
            messages = await collect(reference)
            stats = outlets.stats
            await asyncio.to_thread(pull_all, opened, dict(stats.samples_pushed), timeout_s=10.0)

    assert stats.dropped_messages == 0 and stats.unrouted_messages == 0
    assert set(opened) == {*PHYSIO_KEYS, "sync-hr", "sync-phasic", "events"}
    for key, reader in opened.items():
        source_id = reader.header.findtext("source_id")
        assert source_id == f"dyadsync-out/{room}/{key}"
        assert reader.header.findtext("desc/acquisition/manufacturer") == "dyadsync"
        assert reader.header.findtext("desc/dyadsync/room") == room
        assert reader.header.findtext("desc/dyadsync/synchrony/window_s") == "10"
        assert reader.header.findtext("desc/dyadsync/synchrony/lag_s") == "2"
        assert reader.header.findtext("desc/dyadsync/synchrony/z_enter") == "2"
        # everything pushed arrived, nothing more
        assert len(reader.stamps) == stats.samples_pushed[key], key

    for key in PHYSIO_KEYS:
        role, signal = key.split("-")
        header = opened[key].header
        assert header.findtext("type") == TYPES[signal]
        assert header.findtext("channel_format") == "float32"
        assert float(header.findtext("nominal_srate", "")) == 4.0
        assert header.findtext("desc/dyadsync/role") == role
        assert channels(header) == [(key, UNITS[signal], TYPES[signal])]
        batches = [
            m
            for m in messages
            if m["type"] == "physio" and (m["role"], m["signal"]) == (role, signal)
        ]
        t_s = np.concatenate([np.asarray(m["t_s"], dtype=np.float64) for m in batches])
        values = np.concatenate([np.asarray(m["values"], dtype=np.float32) for m in batches])
        assert t_s.size >= 0.8 * RUN_S * 4.0, (key, t_s.size)
        np.testing.assert_array_equal(np.asarray(opened[key].stamps), t_s)
        np.testing.assert_array_equal(np.asarray(opened[key].samples)[:, 0], values)
        np.testing.assert_allclose(np.diff(t_s), 0.25, rtol=0, atol=1e-9)  # the 4 Hz grid
        assert np.isfinite(values).mean() > 0.5, key  # mostly valid, NaN where not

    for signal in ("hr", "phasic"):
        reader = opened[f"sync-{signal}"]
        assert reader.header.findtext("type") == "Synchrony"
        assert reader.header.findtext("channel_format") == "double64"
        assert float(reader.header.findtext("nominal_srate", "")) == 1.0
        labels = [label for label, _, _ in channels(reader.header)]
        assert labels == list(SYNC_CHANNELS)
        updates = [m for m in messages if m["type"] == "sync" and m["signal"] == signal]
        assert any(m["estimate"] for m in updates), signal
        np.testing.assert_array_equal(reader.stamps, [m["t"] for m in updates])
        np.testing.assert_array_equal(np.asarray(reader.samples), [sync_row(m) for m in updates])
        np.testing.assert_allclose(np.diff(reader.stamps), 1.0, rtol=0, atol=1e-9)  # step_s

    events = [m for m in messages if m["type"] in ("status", "episode")]
    reader = opened["events"]
    assert reader.header.findtext("type") == "Markers"
    assert reader.header.findtext("channel_format") == "string"
    assert float(reader.header.findtext("nominal_srate", "")) == 0.0
    assert [json.loads(sample[0]) for sample in reader.samples] == events
    assert reader.stamps == [m["t"] for m in events]
    kinds = {m["type"] for m in events}
    assert kinds == {"status", "episode"}, kinds
    print(f"pushed per outlet: {dict(stats.samples_pushed)}")
    print("events:", *(sample[0] for sample in reader.samples), sep="\n  ")

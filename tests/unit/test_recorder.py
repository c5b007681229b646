"""The session recorder writes what docs/recording.md promises, read back with pyxdf."""

from __future__ import annotations

import json
import math
import os
import stat
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pylsl
import pytest
import pyxdf

from server.protocol import make_message
from server.recorder import SYNC_CHANNELS, SessionRecorder, resolve_target
from streamer.errors import RecordingError
from streamer.inlet import RawChunk

STARTED = datetime(2026, 12, 2, 10, 0, 0, tzinfo=UTC)


class _Clock:
    def __init__(self) -> None:
        self.now_s = 1000.0

    def __call__(self) -> float:
        return self.now_s


def _header_xml(source_id: str) -> str:
    info = pylsl.StreamInfo("Jane's ECG", "ECG", 2, 256.0, "float32", source_id)
    info.desc().append_child("channels").append_child("channel").append_child_value("label", "ECG")
    return info.as_xml()


def _recorder(path: Path, clock: _Clock) -> SessionRecorder:
    return SessionRecorder(
        path=path,
        session_info={"room": "r1", "roles": ["therapist", "client"], "grid_hz": 4.0},
        grid_hz=4.0,
        step_s=1.0,
        started_utc=STARTED,
        clock=clock,
    )


def _streams(path: Path) -> dict[str, dict]:
    streams, _ = pyxdf.load_xdf(str(path), synchronize_clocks=False, dejitter_timestamps=False)
    return {s["info"]["name"][0]: s for s in streams}


def _raw(start: int, n: int, segment: int, header: str) -> RawChunk:
    k = np.arange(start, start + n, dtype=np.float64)
    return RawChunk(
        timestamps_s=1000.0 + k / 256.0,
        data=np.column_stack([np.sin(k / 10.0), k]),
        segment=segment,
        header_xml=header,
    )


def test_raw_streams_derived_series_sync_and_events_round_trip(tmp_path: Path) -> None:
    clock = _Clock()
    path = tmp_path / "session.xdf"
    recorder = _recorder(path, clock)
    header = _header_xml("polar-1")
    desc = {"kind": "raw", "role": "therapist", "signal": "ecg", "device_config": "polar_h10",
            "value_channel": "0", "counter_channel": "1", "unit": "mV"}  # fmt: skip
    recorder.record_raw(key="therapist-ecg", desc=desc, chunk=_raw(0, 300, 0, header))
    recorder.record_raw(key="therapist-ecg", desc=desc, chunk=_raw(300, 200, 1, header))
    physio = make_message(
        "physio", session="r1", t=1001.0, role="client", signal="hr",
        t_s=np.array([1000.5, 1000.75, 1001.0]), values=np.array([70.0, np.nan, 71.5]),
        valid=np.array([True, False, True]),
    )  # fmt: skip
    sync = make_message(
        "sync", session="r1", t=1040.0, signal="hr", estimate=True, reason=None, r=0.25,
        z=1.5, z_lag0=0.25, trough_z=-0.5, best_lag_s=2.0, leader="therapist", null_z=3.2,
        p=0.01, anti_null_z=-1.0, anti_p=0.9, concordance=None, state="coupled",
        window_center_s=1022.5,
    )  # fmt: skip
    status = make_message("status", session="r1", t=1002.0, role="client", signal="ecg",
                          kind="stalled", detail="no samples for 2.0 s")  # fmt: skip
    for message in (physio, sync, status, make_message("health", session="r1", t=1.0)):
        recorder.record_message(message)
    summary = recorder.close()

    assert summary.failure is None and summary.samples == {"therapist-ecg": 500}
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    streams = _streams(path)
    raw = streams["therapist-ecg"]
    # The stream keeps its LSL header (type, channels, format, source_id, desc), but the
    # name becomes the role and the hostname is dropped (either may name a person).
    info = raw["info"]
    assert info["type"] == ["ECG"] and info["channel_count"] == ["2"]
    assert info["channel_format"] == ["float32"] and info["source_id"] == ["polar-1"]
    assert "hostname" not in info
    dyadsync = info["desc"][0]["dyadsync"][0]
    assert dyadsync["role"] == ["therapist"] and dyadsync["counter_channel"] == ["1"]
    assert info["desc"][0]["channels"][0]["channel"][0]["label"] == ["ECG"]
    np.testing.assert_array_equal(raw["time_series"][:, 1], np.arange(500))
    np.testing.assert_allclose(raw["time_stamps"], 1000.0 + np.arange(500) / 256.0, atol=0)

    hr = streams["dyadsync-client-hr"]
    np.testing.assert_array_equal(hr["time_stamps"], [1000.5, 1000.75, 1001.0])
    np.testing.assert_array_equal(hr["time_series"][:, 1], [1.0, 0.0, 1.0])
    assert math.isnan(hr["time_series"][1, 0]) and hr["time_series"][2, 0] == 71.5

    row = dict(zip(SYNC_CHANNELS, streams["dyadsync-sync-hr"]["time_series"][0], strict=True))
    assert row["z"] == 1.5 and row["null_z"] == 3.2 and row["state"] == 2.0
    assert row["leader"] == 1.0 and math.isnan(row["concordance"])

    events = [json.loads(x[0]) for x in streams["dyadsync-events"]["time_series"]]
    assert {"event": "segment", "stream": "therapist-ecg", "segment": 1,
            "first_sample": 300} in events  # fmt: skip
    assert any(e.get("kind") == "stalled" for e in events)
    session = json.loads(streams["dyadsync-session"]["time_series"][0][0])
    assert session["room"] == "r1"
    assert "health" not in {json.loads(x[0]).get("type") for x in
                            streams["dyadsync-events"]["time_series"]}  # fmt: skip


def test_existing_file_is_never_overwritten(tmp_path: Path) -> None:
    path = tmp_path / "taken.xdf"
    path.write_bytes(b"precious")
    with pytest.raises(RecordingError, match="never overwritten"):
        resolve_target(path, room="r1", started_utc=STARTED)
    with pytest.raises(RecordingError, match="already exists"):
        _recorder(path, _Clock())
    assert path.read_bytes() == b"precious"


def test_a_directory_target_gets_a_room_and_time_file_name(tmp_path: Path) -> None:
    path = resolve_target(tmp_path, room="room-2", started_utc=STARTED)
    assert path == tmp_path / "room-2_20261202T100000Z.xdf"


def test_data_reaches_the_file_within_a_second_while_recording(tmp_path: Path) -> None:
    """A SIGKILL may lose at most the last second: the recorder thread flushes on its own."""
    clock = _Clock()
    path = tmp_path / "live.xdf"
    recorder = _recorder(path, clock)
    header = _header_xml("polar-2")
    recorder.record_raw(key="client-ecg", desc={"kind": "raw"}, chunk=_raw(0, 256, 0, header))
    deadline = time.monotonic() + 3.0
    size_before = path.stat().st_size
    while time.monotonic() < deadline and path.stat().st_size <= size_before + 256 * 8:
        clock.now_s += 0.1
        time.sleep(0.1)
    assert path.stat().st_size > size_before + 256 * 8
    recorder.close()


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a tmpfs needs root (CI runs as root)")
def test_disk_full_raises_an_alarm_within_two_seconds_and_keeps_the_file(tmp_path: Path) -> None:
    import subprocess

    mount = tmp_path / "small"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mount)], check=True)
    try:
        clock = _Clock()
        recorder = _recorder(mount / "full.xdf", clock)
        header = _header_xml("polar-3")
        started = time.monotonic()
        alarms: list[tuple[str, str]] = []
        k = 0
        while not alarms and time.monotonic() - started < 5.0:
            recorder.record_raw(key="client-ecg", desc={"kind": "raw"},
                                chunk=_raw(k, 2560, 0, header))  # fmt: skip
            k += 2560
            clock.now_s += 0.1
            time.sleep(0.05)
            alarms = recorder.alarms()
        assert alarms, "no alarm within 5 s"
        assert alarms[0][0] == "failed" and "recording stopped" in alarms[0][1]
        assert time.monotonic() - started < 2.0 + 1.0  # 1 s to fill 64 kB, 2 s to alarm
        summary = recorder.close()
        assert summary.failure is not None and "full.xdf" in summary.failure
        from streamer.xdf_repair import repair_file

        report = repair_file(mount / "full.xdf", out=tmp_path / "kept.xdf")
        kept = _streams(tmp_path / "kept.xdf")["client-ecg"]
        assert kept["time_series"].shape[0] > 0
        np.testing.assert_array_equal(
            kept["time_series"][:, 1], np.arange(kept["time_series"].shape[0])
        )
        assert report is not None
    finally:
        subprocess.run(["umount", str(mount)], check=False)

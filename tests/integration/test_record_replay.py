"""Issue "Record and replay", end to end with the real command line: `dyadsync demo
--record` writes one XDF file per session that pyxdf reads with every sample, header and
result; a replay at max speed reproduces the recorded synchrony; the session store lists
it; a SIGKILLed recording repairs to all but its last second."""

from __future__ import annotations

import asyncio
import hashlib
import json
import math
import os
import random
import signal
import stat
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pylsl
import pytest
import pyxdf

from server.recorder import SYNC_CHANNELS, sync_row
from server.rooms import assemble_session
from server.service import ServiceConfig
from streamer.player import open_replay
from tests.integration.conftest import DEMO_RECORDING_S, DemoRecording

pytestmark = [pytest.mark.integration, pytest.mark.timeout(400)]

DYADSYNC = str(Path(sys.executable).with_name("dyadsync"))
RAW = ("therapist-ecg", "therapist-eda", "client-ecg", "client-eda")
RATE_HZ = {"ecg": 256.0, "eda": 32.0}


@dataclass(frozen=True)
class Recorded:
    path: Path
    store: Path
    summary: dict[str, int]  # stream -> samples received, from the run summary


def _demo(directory: Path, store: Path, *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [DYADSYNC, "demo", "--no-browser", "--ws-port", "0", "--dashboard-port", "0",
         "--record", str(directory), *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "DYADSYNC_STORE": str(store)},
    )  # fmt: skip


@pytest.fixture(scope="module")
def recorded(demo_recording: DemoRecording) -> Recorded:
    out = demo_recording.stdout
    received = {
        row[0]: int(row[1])
        for row in (line.split() for line in out.splitlines())
        if row and row[0] in RAW
    }
    assert f"Recording: {demo_recording.path}" in out
    return Recorded(path=demo_recording.path, store=demo_recording.store, summary=received)


def _load(path: Path, **options: Any) -> dict[str, dict[str, Any]]:
    streams, _ = pyxdf.load_xdf(str(path), **options)
    return {s["info"]["name"][0]: s for s in streams}


def test_every_raw_sample_is_recorded_with_its_header(recorded: Recorded) -> None:
    assert stat.S_IMODE(recorded.path.stat().st_mode) == 0o600
    streams = _load(recorded.path, synchronize_clocks=False, dejitter_timestamps=False)
    for key in RAW:
        stream = streams[key]
        info = stream["info"]
        role, signal_kind = key.split("-")
        assert info["type"] == [{"ecg": "ECG", "eda": "EDA"}[signal_kind]], info["type"]
        assert (
            info["channel_count"] == ["2"]
            and float(info["nominal_srate"][0]) == RATE_HZ[signal_kind]
        )
        assert info["source_id"][0].endswith(f"-{role}-{signal_kind}")
        assert "hostname" not in info  # a laptop's name may be a person's
        ours = info["desc"][0]["dyadsync"][0]
        assert ours["role"] == [role] and ours["signal"] == [signal_kind]
        assert ours["kind"] == ["raw"] and ours["counter_channel"] == ["1"]
        # Every sample the session received, once, in order (the counter channel; the
        # first is whatever the simulator had reached when the inlet connected).
        counters = stream["time_series"][:, 1]
        np.testing.assert_array_equal(counters, counters[0] + np.arange(counters.shape[0]))
        assert counters.shape[0] == recorded.summary[key]
        for kind in ("hr", "scl", "phasic"):
            assert streams[f"dyadsync-{role}-{kind}"]["time_series"].shape[1] == 2


def test_timestamps_are_the_senders_to_a_millisecond(recorded: Recorded) -> None:
    """The simulator stamps sample k at start + k / rate on this machine's LSL clock; the
    recorded (pipeline) stamps must be those, and pyxdf's default clock handling must
    not move them by more than 1 ms either."""
    exact = _load(recorded.path, synchronize_clocks=False, dejitter_timestamps=False)
    default = _load(recorded.path)
    for key in RAW:
        rate = RATE_HZ[key.split("-")[1]]
        stamps = exact[key]["time_stamps"]
        k = exact[key]["time_series"][:, 1]
        offset = stamps - k / rate
        assert np.ptp(offset) < 1e-3, (key, np.ptp(offset))
        assert np.max(np.abs(default[key]["time_stamps"] - stamps)) < 1e-3


def _sync_rows(streams: dict[str, dict[str, Any]], signal_kind: str) -> tuple[Any, Any]:
    stream = streams[f"dyadsync-sync-{signal_kind}"]
    return stream["time_stamps"], stream["time_series"]


def _replayed_sync(path: Path) -> list[dict[str, Any]]:
    """Every `sync` message a replay at max speed publishes (no websocket needed)."""
    replay = open_replay(path, speed=math.inf)
    parts = assemble_session(
        replay.session,
        sources=replay.sources,
        mode="replay",
        clock=replay.now_s,
        service_config=ServiceConfig(poll_interval_s=0.0),
    )
    consumer = parts.hub.subscribe("test", max_events=1_000_000, max_droppable=1_000_000)

    async def run() -> list[dict[str, Any]]:
        await parts.service.run(until=lambda: replay.finished)
        messages = []
        while len(consumer):
            messages.append((await consumer.get()).message)
        return [m for m in messages if m["type"] == "sync"]

    return asyncio.run(run())


def test_a_replay_at_max_speed_reproduces_the_recorded_synchrony(recorded: Recorded) -> None:
    streams = _load(recorded.path, synchronize_clocks=False, dejitter_timestamps=False)
    replayed = _replayed_sync(recorded.path)
    estimates = 0
    significant = 0
    for kind in ("hr", "phasic"):
        live_t, live_rows = _sync_rows(streams, kind)
        mine = [m for m in replayed if m["signal"] == kind]
        assert len(mine) == live_t.shape[0] > 60
        np.testing.assert_array_equal([m["t"] for m in mine], live_t)
        rows = np.array([sync_row(m) for m in mine])
        np.testing.assert_allclose(rows, live_rows, rtol=0, atol=1e-9, equal_nan=True)
        estimates += int(np.sum(live_rows[:, SYNC_CHANNELS.index("estimate")]))
        significant += int(np.sum(np.isfinite(live_rows[:, SYNC_CHANNELS.index("null_z")])))
    # The comparison covered real estimates and significance, not only "no estimate" rows.
    assert estimates > 100 and significant > 20, (estimates, significant)


def test_the_session_store_lists_the_recording_with_its_checksum(recorded: Recorded) -> None:
    env = {**os.environ, "DYADSYNC_STORE": str(recorded.store)}
    listed = subprocess.run(
        [DYADSYNC, "sessions", "--json"], capture_output=True, text=True, env=env, check=True
    )
    sessions = json.loads(listed.stdout)
    assert len(sessions) == 1
    row = sessions[0]
    assert row["room"] == "demo" and row["file_path"] == str(recorded.path.resolve())
    assert row["file_sha256"] == hashlib.sha256(recorded.path.read_bytes()).hexdigest()
    assert row["duration_s"] == pytest.approx(DEMO_RECORDING_S, abs=15)
    table = subprocess.run([DYADSYNC, "sessions"], capture_output=True, text=True, env=env)
    assert row["session_id"] in table.stdout and table.returncode == 0
    assert row["coregulation"]["hr"]["entries"] >= 0  # the summary was stored at the end


def test_recording_refuses_an_existing_file_before_starting(tmp_path: Path) -> None:
    taken = tmp_path / "taken.xdf"
    taken.write_bytes(b"keep me")
    demo = _demo(taken, tmp_path / "store.sqlite3", "--duration", "30")
    started = time.monotonic()
    _, err = demo.communicate(timeout=60)
    assert demo.returncode == 2, err
    assert "--record" in err and "never overwritten" in err
    assert "Waiting up to" not in err and time.monotonic() - started < 20
    assert taken.read_bytes() == b"keep me"


def test_a_killed_recording_repairs_and_loses_at_most_its_last_second(tmp_path: Path) -> None:
    rng = random.Random(8)
    for attempt in range(3):
        directory = tmp_path / f"kill{attempt}"
        directory.mkdir()
        demo = _demo(directory, tmp_path / "store.sqlite3")
        try:
            assert demo.stdout is not None
            demo.stdout.readline()  # "Dashboard: ...": the session is running
            time.sleep(rng.uniform(2.0, 12.0))
            demo.send_signal(signal.SIGKILL)
            killed_at = pylsl.local_clock()
            demo.wait(timeout=10)
        finally:
            if demo.poll() is None:
                demo.kill()
        (original,) = directory.glob("demo_*.xdf")
        repaired = tmp_path / f"repaired{attempt}.xdf"
        done = subprocess.run(
            [DYADSYNC, "repair", str(original), "--out", str(repaired)],
            capture_output=True,
            text=True,
        )
        assert done.returncode == 0, done.stderr
        streams = _load(repaired, synchronize_clocks=False, dejitter_timestamps=False)
        for key in RAW:
            stamps = streams[key]["time_stamps"]
            counters = streams[key]["time_series"][:, 1]
            np.testing.assert_array_equal(counters, counters[0] + np.arange(counters.shape[0]))
            # The newest sample kept was sent at most a second (plus the simulator's
            # 0.1 s chunk and one 50 ms poll) before the kill.
            assert killed_at - stamps[-1] <= 1.0 + 0.15, (key, killed_at - stamps[-1])

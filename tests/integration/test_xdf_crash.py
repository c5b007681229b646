"""The recording survives what real sessions suffer: a SIGKILLed recorder (at 20 random
moments) and a disk that fills up. Afterwards every file loads in pyxdf (after repair at
worst) and only the last second of pushed samples may be missing, proven with counters.

The recorder that gets killed is a forked child (:func:`_child`): it writes a 256 Hz
counter stream and a marker stream in real time and reports through a pipe what it has
pushed so far.
"""

from __future__ import annotations

import os
import random
import re
import select
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TextIO

import numpy as np
import pytest

from streamer.errors import RecordingError
from streamer.xdf_format import scan_xdf
from streamer.xdf_read import load_recording
from streamer.xdf_repair import repair_file
from streamer.xdf_writer import XdfWriter

pytestmark = pytest.mark.integration

RATE_HZ = 256
RAW: dict[str, Any] = {"synchronize_clocks": False, "dejitter_timestamps": False}


def _child(path: Path, reports: TextIO) -> None:
    """Record in real time until killed: sample k carries k in its counter channel and the
    stamp t0 + k / 256 (monotonic clock); every 10th loop adds a marker "m<j>"."""
    writer = XdfWriter.open(path)
    samples = writer.add_stream(
        name="counter",
        type="Test",
        channel_count=2,
        nominal_srate=RATE_HZ,
        channel_format="double64",
    )
    markers = writer.add_stream(
        name="markers", type="Markers", channel_count=1, nominal_srate=0, channel_format="string"
    )
    t0 = time.monotonic()
    writer.tick(t0)
    print(f"READY {t0!r}", file=reports, flush=True)
    sent = marked = loops = 0
    while True:
        now = time.monotonic()
        due = int((now - t0) * RATE_HZ)
        if due > sent:
            k = np.arange(sent, due)
            writer.push(samples, t0 + k / RATE_HZ, np.column_stack([np.sin(k / 10.0), k]))
            sent = due
        if loops % 10 == 0:
            writer.push(markers, [now], [[f"m{marked}"]])
            marked += 1
        loops += 1
        writer.tick(now)
        # what has been handed to the writer, and when (the parent's clock is the same)
        print(f"{sent} {marked} {now!r}", file=reports, flush=True)
        time.sleep(0.01)


class _Recorder:
    """A forked recorder process (forked, not spawned: importing dsp takes seconds on a
    busy machine) and what it reported before it died."""

    def __init__(self, path: Path) -> None:
        self.path = path
        read_fd, write_fd = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: record until SIGKILL, never return into pytest
            os.close(read_fd)
            try:
                _child(path, os.fdopen(write_fd, "w"))
            finally:
                os._exit(1)
        os.close(write_fd)
        self.pid = pid
        self.reports = os.fdopen(read_fd)
        ready, _, _ = select.select([self.reports], [], [], 30.0)
        line = self.reports.readline() if ready else ""
        if not line.startswith("READY"):
            self._reap()
            raise RuntimeError(f"recorder child did not start (said {line!r})")
        self.t0 = float(line.split()[1])
        self.killed_at = 0.0

    def kill(self) -> list[tuple[int, int, float]]:
        """SIGKILL now; returns the child's reports (samples, markers, time) in order."""
        self.killed_at = time.monotonic()
        remaining = self._reap()
        reports = []
        for line in remaining.splitlines():
            if re.fullmatch(r"\d+ \d+ [0-9.e+-]+", line):  # the last line may be cut
                sent, marked, when = line.split()
                reports.append((int(sent), int(marked), float(when)))
        return reports

    def _reap(self) -> str:
        os.kill(self.pid, signal.SIGKILL)
        remaining = self.reports.read()
        self.reports.close()
        os.waitpid(self.pid, 0)
        return remaining


def _pushed_at(reports: list[tuple[int, int, float]], index: int, column: int) -> float | None:
    """When the item ``index`` (samples: column 0, markers: 1) was pushed, if it was."""
    for report in reports:
        if report[column] > index:
            return report[2]
    return None


def test_sigkill_at_20_random_moments_loses_at_most_the_last_second(tmp_path: Path) -> None:
    rng = random.Random(20260405)
    delays = [rng.uniform(0.2, 3.0) for _ in range(20)]
    results = []
    for batch in range(0, len(delays), 4):  # four recorders at a time keeps this ~15 s
        recorders = [
            (_Recorder(tmp_path / f"kill{batch + i}.xdf"), delay)
            for i, delay in enumerate(delays[batch : batch + 4])
        ]
        started = time.monotonic()
        for recorder, delay in sorted(recorders, key=lambda item: item[1]):
            time.sleep(max(0.0, started + delay - time.monotonic()))
            results.append((recorder, recorder.kill()))
    for recorder, reports in results:
        assert reports, "the child reported nothing before it was killed"
        # The killed file itself loads (partially at worst); repair completes it.
        assert load_recording(recorder.path, **RAW).streams
        report = repair_file(recorder.path)
        repaired = load_recording(report.output, **RAW)
        assert repaired.complete
        streams = {stream["info"]["name"][0]: stream for stream in repaired.streams}
        counter = streams["counter"]["time_series"][:, 1]
        kept = len(counter)
        np.testing.assert_array_equal(counter, np.arange(kept))  # no gap, no duplicate
        np.testing.assert_allclose(
            streams["counter"]["time_stamps"], recorder.t0 + np.arange(kept) / RATE_HZ, atol=1e-9
        )
        marks = streams["markers"]["time_series"]
        assert marks == [[f"m{j}"] for j in range(len(marks))]
        for column, first_lost in ((0, kept), (1, len(marks))):
            pushed = _pushed_at(reports, first_lost, column)
            if pushed is not None:  # something pushed before the kill is missing...
                lost_s = recorder.killed_at - pushed
                assert lost_s <= 1.0, f"{recorder.path}: lost {lost_s:.3f} s of pushed data"


@pytest.fixture
def tiny_disk(tmp_path: Path) -> Iterator[Path]:
    """A 256 KiB tmpfs (needs root, as in CI) that the test can fill."""
    mount_point = tmp_path / "tiny"
    mount_point.mkdir()
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=256k,mode=0700", "tmpfs", str(mount_point)], check=True
    )
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", str(mount_point)], check=True)


def test_full_disk_raises_at_the_failing_write_and_the_file_stays_readable(
    tiny_disk: Path, tmp_path: Path
) -> None:
    path = tiny_disk / "session.xdf"
    writer = XdfWriter.open(path)
    sid = writer.add_stream(
        name="ecg", type="ECG", channel_count=4, nominal_srate=RATE_HZ, channel_format="double64"
    )
    sample_bytes = 1 + 8 + 4 * 8
    per_step = RATE_HZ // 10
    pushed = 0
    with pytest.raises(RecordingError) as caught:
        for step in range(10_000):  # 0.1 s steps of session time, far more than fits
            k = np.arange(pushed, pushed + per_step)
            writer.push(sid, k / RATE_HZ, np.column_stack([k, k, k, k]))
            pushed += per_step
            writer.tick(step / 10)
    message = str(caught.value)
    assert str(path) in message and "free disk space" in message
    # Raised at the first write that did not fit: all but the last flush's bytes fit.
    flush_bytes = RATE_HZ // 2 * sample_bytes
    assert (pushed * sample_bytes - 256 * 1024) < 2 * flush_bytes
    # The half-written chunk was cut off, so the file is readable as it is.
    assert path.stat().st_size == writer.bytes_written
    assert scan_xdf(path.read_bytes()).problem is None
    written = writer.sample_count(sid)
    assert written > 0.9 * 256 * 1024 / sample_bytes
    with pytest.raises(RecordingError, match="stopped at that failure"):
        writer.tick(99999.0)
    writer.close()  # closes the descriptor; the failure was already reported
    report = repair_file(path, out=tmp_path / "repaired.xdf")  # the full disk has no room
    stream = load_recording(report.output, **RAW).streams[0]
    np.testing.assert_array_equal(stream["time_series"][:, 0], np.arange(written))
    assert report.streams[0].footer_added and report.streams[0].samples == written

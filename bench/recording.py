"""Benchmark of the XDF recorder's writer (streamer.xdf_writer.XdfWriter).

Records a simulated session as fast as possible, fed the way the service feeds it (every
stream polled every 20 ms, ``tick`` every 100 ms, fsync every 5 s of session time):
two 256 Hz ECG and two 32 Hz EDA raw streams (float32, signal + counter), four 4 Hz
physio streams, two 1 Hz 14-channel synchrony streams and a marker stream. Prints the
CPU seconds per recorded hour and the throughput, against baselines run on the same
bytes in the same process:

* raw ``os.write`` of the finished file's bytes in the same 0.5 s pieces, with the same
  fsyncs: the I/O floor no writer can beat;
* a naive writer fed the same pushes that packs each sample with ``struct.pack`` (no
  numpy, no checks, no fsync, numeric streams only): what vectorising saves;
* ``pyxdf.load_xdf`` of the file: what reading it back costs.

    python bench/recording.py [--quick] [--minutes N]
"""

from __future__ import annotations

import argparse
import os
import struct
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import pyxdf

from streamer.xdf_format import Tag, encode_chunk, encode_varlen
from streamer.xdf_writer import XdfWriter

POLL_S = 0.02
TICK_S = 0.1
# name, rate Hz, channels, format
STREAMS = (
    ("therapist-ecg", 256.0, 2, "float32"),
    ("client-ecg", 256.0, 2, "float32"),
    ("therapist-eda", 32.0, 2, "float32"),
    ("client-eda", 32.0, 2, "float32"),
    *(
        (f"dyadsync-{role}-{sig}", 4.0, 2, "double64")
        for role in ("therapist", "client")
        for sig in ("hr", "scl")
    ),
    ("dyadsync-sync-hr", 1.0, 14, "double64"),
    ("dyadsync-sync-phasic", 1.0, 14, "double64"),
)


def session_data(minutes: float) -> list[tuple[np.ndarray, np.ndarray]]:
    """(stamps, values) per stream for the whole session, made before timing starts."""
    rng = np.random.default_rng(1)
    data = []
    for _, rate, channels, fmt in STREAMS:
        n = int(minutes * 60 * rate)
        stamps = 1000.0 + np.arange(n) / rate
        values = rng.normal(size=(n, channels))
        values[:, -1 if channels == 2 else 0] = np.arange(n)
        data.append((stamps, values.astype(np.float32 if fmt == "float32" else np.float64)))
    return data


class NaiveWriter:
    """Baseline: the same pushes and chunk layout, but each sample packed with
    ``struct.pack`` in Python (no numpy, no checks), written every 0.5 s in ``tick``."""

    def __init__(self, path: Path) -> None:
        self.fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        self.packers: list[Callable[..., bytes]] = []
        self.pending: list[list[bytes]] = []
        self.last_flush = -1.0

    def add_stream(self, *, channel_count: int, channel_format: str, **_: object) -> int:
        kind = {"float32": "f", "double64": "d"}.get(channel_format)
        self.packers.append(struct.Struct("<Bd" + (kind or "d") * channel_count).pack)
        self.pending.append([])
        return len(self.packers) - 1

    def push(self, stream_id: int, stamps: object, values: object) -> None:
        pack = self.packers[stream_id]
        if isinstance(values, np.ndarray):
            rows = [
                pack(8, t, *row)
                for t, row in zip(np.asarray(stamps).tolist(), values.tolist(), strict=True)
            ]
            self.pending[stream_id].extend(rows)

    def tick(self, now: float) -> None:
        if now - self.last_flush < 0.5:
            return
        self.last_flush = now
        for stream_id, rows in enumerate(self.pending):
            if rows:
                head = struct.pack("<I", stream_id) + encode_varlen(len(rows))
                os.write(self.fd, encode_chunk(tag=Tag.SAMPLES, content=head + b"".join(rows)))
                rows.clear()

    def close(self) -> None:
        os.close(self.fd)


def record(
    writer: Any, data: list[tuple[np.ndarray, np.ndarray]], minutes: float
) -> tuple[float, float]:
    """Feed ``writer`` like the service feeds the recorder; returns (cpu s, wall s)."""
    steps = int(minutes * 60 / POLL_S)
    poll_times = 1000.0 + np.arange(1, steps + 1) * POLL_S
    # what each 20 ms poll delivers, worked out before timing starts
    due = [np.searchsorted(stamps, poll_times, side="right").tolist() for stamps, _ in data]
    per_tick = round(TICK_S / POLL_S)
    cpu, wall = time.process_time(), time.perf_counter()
    ids = [
        writer.add_stream(
            name=name, type="bench", channel_count=ch, nominal_srate=rate, channel_format=fmt
        )
        for name, rate, ch, fmt in STREAMS
    ]
    markers = writer.add_stream(
        name="dyadsync-events", type="Markers", channel_count=1, nominal_srate=0,
        channel_format="string",
    )  # fmt: skip
    sent = [0] * len(STREAMS)
    for step in range(steps):
        for index, (stamps, values) in enumerate(data):
            until = due[index][step]
            if until > sent[index]:
                writer.push(ids[index], stamps[sent[index] : until], values[sent[index] : until])
                sent[index] = until
        if step % 500 == 0:  # an event every 10 s
            writer.push(markers, [poll_times[step]], [['{"event": "status"}']])
        if step % per_tick == 0:
            writer.tick(float(poll_times[step]))
    writer.close()
    return time.process_time() - cpu, time.perf_counter() - wall


def raw_writes(content: bytes, path: Path, minutes: float) -> tuple[float, float]:
    """The same bytes in 0.5 s pieces with an fsync every 5 s: the I/O floor."""
    pieces = int(minutes * 60 / 0.5)
    size = len(content) // pieces + 1
    cpu, wall = time.process_time(), time.perf_counter()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        for piece in range(pieces):
            os.write(fd, content[piece * size : (piece + 1) * size])
            if piece % 10 == 9:
                os.fsync(fd)
        os.fsync(fd)
    finally:
        os.close(fd)
    return time.process_time() - cpu, time.perf_counter() - wall


def timed(action: Callable[[], object]) -> tuple[float, float]:
    cpu, wall = time.process_time(), time.perf_counter()
    action()
    return time.process_time() - cpu, time.perf_counter() - wall


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="a 5-minute session (CI)")
    parser.add_argument("--minutes", type=float, default=60.0, help="session length (default 60)")
    args = parser.parse_args()
    minutes = 5.0 if args.quick else args.minutes
    data = session_data(minutes)
    samples = sum(len(stamps) for stamps, _ in data)
    hours = minutes / 60
    with tempfile.TemporaryDirectory(dir=os.environ.get("TMPDIR")) as tmp:
        path = Path(tmp) / "bench.xdf"
        rows = [("XdfWriter (push + tick + fsync)", *record(XdfWriter.open(path), data, minutes))]
        content = path.read_bytes()
        rows.append(
            (
                "baseline: raw os.write of the same bytes",
                *raw_writes(content, Path(tmp) / "raw.xdf", minutes),
            )
        )
        naive = NaiveWriter(Path(tmp) / "naive.xdf")
        rows.append(("baseline: per-sample struct.pack writer", *record(naive, data, minutes)))
        rows.append(("pyxdf.load_xdf of the file", *timed(lambda: pyxdf.load_xdf(path))))
    megabytes = len(content) / 1e6
    print(
        f"session: {minutes:g} min, {len(STREAMS) + 1} streams, {samples} samples, "
        f"file {megabytes:.1f} MB"
    )
    print(f"{'what':52} {'CPU s':>8} {'wall s':>8} {'CPU s per rec. hour':>20} {'MB/s':>8}")
    for what, cpu, wall in rows:
        print(f"{what:52} {cpu:8.3f} {wall:8.3f} {cpu / hours:20.3f} {megabytes / wall:8.1f}")
    writer_cpu = rows[0][1]
    print(
        f"writer CPU per recorded hour: {writer_cpu / hours:.2f} s "
        f"= {100 * writer_cpu / (hours * 3600):.3f} % of one core"
    )


if __name__ == "__main__":
    main()

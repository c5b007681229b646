"""A device-shaped LSL outlet in its own process, for ingest tests (SIGKILL/SIGSTOP-able).

Run as ``python -m tests.integration.lsl_outlet_proc --source-id X ...``, or from a test
through :class:`OutletProcess` (which also SIGKILLs/SIGSTOPs it); :class:`InletWatch`
polls a :class:`~streamer.inlet.SensorInlet` like the server does and records what came.

Sample ``k`` carries a known raw value in the signal channel, ``raw_base + (k % raw_period) *
raw_step``, so a test can compute the expected converted value from the datasheet
formula on its own; the counter channel (if any) carries ``k``. Samples are stamped
``t0 + k / rate`` on the LSL clock (plus ``--jump-by-s`` once ``--jump-at`` samples have
been sent) and pushed in chunks paced in real time, so after SIGSTOP/SIGCONT the outlet
catches up with a burst and no sample is skipped.
"""

from __future__ import annotations

import argparse
import os
import select
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pylsl

_REPO = Path(__file__).resolve().parents[2]

_FORMATS = {
    "double64": (pylsl.cf_double64, np.float64),
    "float32": (pylsl.cf_float32, np.float32),
    "int32": (pylsl.cf_int32, np.int32),
    "int16": (pylsl.cf_int16, np.int16),
}


def _parse() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--source-id", required=True)
    p.add_argument("--name", default="test-stream")
    p.add_argument("--type", default="ECG")
    p.add_argument("--channels", type=int, default=2)
    p.add_argument("--rate", type=float, default=100.0)
    p.add_argument("--chunk", type=int, default=10)
    p.add_argument("--format", choices=sorted(_FORMATS), default="double64")
    p.add_argument("--signal-channels", default="0", help="comma-separated; same raw values")
    p.add_argument("--counter-channel", type=int, default=1, help="-1: no counter")
    p.add_argument("--raw-base", type=float, default=1.0)
    p.add_argument("--raw-step", type=float, default=0.01)
    p.add_argument("--raw-period", type=int, default=100)
    p.add_argument("--labels", default="", help="comma-separated channel labels")
    p.add_argument("--units", default="", help="comma-separated channel units")
    p.add_argument("--desc", action="append", default=[], help="path=value, e.g. a/b=c")
    p.add_argument("--jump-at", type=int, default=-1, help="sample index of a timestamp jump")
    p.add_argument("--jump-by-s", type=float, default=0.0)
    p.add_argument("--nan-at", type=int, default=-1, help="first sample of a NaN burst")
    p.add_argument("--nan-count", type=int, default=0)
    p.add_argument("--nan-time-at", type=int, default=-1, help="first sample with a NaN stamp")
    p.add_argument("--nan-time-count", type=int, default=0)
    p.add_argument("--start-counter", type=int, default=0)
    return p.parse_args()


def _info(args: argparse.Namespace) -> pylsl.StreamInfo:
    fmt, _ = _FORMATS[args.format]
    info = pylsl.StreamInfo(args.name, args.type, args.channels, args.rate, fmt, args.source_id)
    desc = info.desc()
    labels = args.labels.split(",") if args.labels else []
    units = args.units.split(",") if args.units else []
    if labels or units:
        channels = desc.append_child("channels")
        for index in range(args.channels):
            channel = channels.append_child("channel")
            if index < len(labels):
                channel.append_child_value("label", labels[index])
            if index < len(units):
                channel.append_child_value("unit", units[index])
    for item in args.desc:
        path, value = item.split("=", 1)
        parts = path.split("/")
        node = desc
        for part in parts[:-1]:
            child = node.child(part)
            node = child if not child.empty() else node.append_child(part)
        node.append_child_value(parts[-1], value)
    return info


def main() -> None:
    args = _parse()
    _, dtype = _FORMATS[args.format]
    outlet = pylsl.StreamOutlet(_info(args), chunk_size=args.chunk)
    print("READY", flush=True)
    t0 = pylsl.local_clock()
    sent = 0
    signal_channels = [int(c) for c in args.signal_channels.split(",")]
    while True:
        due = int((pylsl.local_clock() - t0) * args.rate)
        while sent + args.chunk <= due:
            k = np.arange(sent, sent + args.chunk)
            block = np.zeros((args.chunk, args.channels), dtype=np.float64)
            raw = args.raw_base + (k % args.raw_period) * args.raw_step
            if args.nan_count and args.nan_at >= 0:
                burst = (k >= args.nan_at) & (k < args.nan_at + args.nan_count)
                raw[burst] = np.nan
            for channel in signal_channels:
                block[:, channel] = raw
            if args.counter_channel >= 0:
                block[:, args.counter_channel] = k + args.start_counter
            stamps = t0 + k / args.rate
            if args.jump_at >= 0:
                stamps = stamps + np.where(k >= args.jump_at, args.jump_by_s, 0.0)
            if args.nan_time_count and args.nan_time_at >= 0:
                untimed = (k >= args.nan_time_at) & (k < args.nan_time_at + args.nan_time_count)
                stamps = np.where(untimed, np.nan, stamps)
            outlet.push_chunk(block.astype(dtype).tolist(), stamps.tolist())
            sent += args.chunk
        time.sleep(min(0.01, args.chunk / args.rate / 2))


def unique_source_id(tag: str) -> str:
    """A source_id no other test (or engineer) on this machine uses."""
    return f"dyadsync-test-{tag}-{os.getpid()}-{uuid.uuid4().hex[:8]}"


class OutletProcess:
    """This script running in a child process; options as keyword arguments
    (``rate=130, signal_channels="0"``). Waits until the outlet exists."""

    def __init__(self, source_id: str, **options: Any) -> None:
        args = [sys.executable, "-m", "tests.integration.lsl_outlet_proc", "--source-id", source_id]
        for key, value in options.items():
            values = value if isinstance(value, list) else [value]
            for item in values:
                args += [f"--{key.replace('_', '-')}", str(item)]
        self.proc = subprocess.Popen(
            args, cwd=_REPO, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
        )
        assert self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], 30.0)
        if not ready or self.proc.stdout.readline().strip() != "READY":
            self.close()
            raise RuntimeError(f"outlet process did not start: {args}")

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def pause(self) -> None:
        self.proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        self.proc.send_signal(signal.SIGCONT)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)
            self.proc.kill()
            self.proc.wait()


class InletWatch:
    """Polls inlets every 20 ms (like the server) and keeps frames and timed events."""

    def __init__(self, *inlets: Any) -> None:
        self.inlets = inlets
        self.frames: list[Any] = []
        self.events: list[tuple[float, Any]] = []  # (time.monotonic(), StatusEvent)

    def poll(self) -> None:
        for inlet in self.inlets:
            started = time.perf_counter()
            frames, events = inlet.poll()
            self.max_poll_s = max(getattr(self, "max_poll_s", 0.0), time.perf_counter() - started)
            self.frames.extend(frames)
            now = time.monotonic()
            self.events.extend((now, event) for event in events)

    def until(self, condition: Callable[[], bool], timeout_s: float) -> float:
        """Poll until ``condition()``; returns the time.monotonic() it became true."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            self.poll()
            if condition():
                return time.monotonic()
            time.sleep(0.02)
        kinds = [(round(t, 2), e.kind.value, e.detail) for t, e in self.events]
        raise AssertionError(f"condition not met within {timeout_s} s; events: {kinds}")

    def run(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            self.poll()
            time.sleep(0.02)

    def first(self, kind: Any, *, after: float = 0.0) -> tuple[float, Any] | None:
        for when, event in self.events:
            if event.kind == kind and when >= after:
                return when, event
        return None

    def samples(self, *, segment: int | None = None) -> int:
        return sum(
            f.values.shape[0] for f in self.frames if segment is None or f.segment == segment
        )


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        sys.exit(0)

"""Benchmark of the ingest clock handling (and, without --quick, live LSL reliability).

Part 1 (always): timestamp error against the true sampling instants for device-like
streams whose bridges stamp whole Bluetooth packets on arrival, for the raw timestamps
(baseline: what an inlet without smoothing delivers) and for streamer.clock.Dejitter;
plus Dejitter's throughput against a straightforward per-sample recursive least-squares
loop (baseline, same model, checked to give the same timestamps).

Part 2 (full mode only): real pylsl outlets in separate processes; time from SIGSTOP to
the `stalled` event and from restarting a SIGKILLed outlet to the first new frame.

    python bench/ingest_clock.py [--quick]
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from streamer.clock import Dejitter

DEVICES = (
    # name, rate Hz, samples per packet, latency jitter s
    ("Polar H10-like", 130.0, 73, 0.030),
    ("simulator-like", 256.0, 26, 0.005),
    ("E4 EDA-like", 4.0, 1, 0.040),
)


def packet_stamped(
    rate_hz: float, packet: int, jitter_s: float, duration_s: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """True times (sender clock 0.02 % fast) and packet-arrival timestamps."""
    rng = np.random.default_rng(seed)
    n = int(rate_hz * duration_s)
    true = 500.0 + np.arange(n) / rate_hz * 1.0002
    raw = true.copy()
    for start in range(0, n, packet):
        stop = min(start + packet, n)
        raw[start:stop] = true[stop - 1] + 0.01 + rng.uniform(0.0, jitter_s)
    return true, raw


def naive_rls(raw: np.ndarray, rate_hz: float, halftime_s: float = 90.0) -> np.ndarray:
    """Baseline: the same exponentially weighted line fit, one sample at a time."""
    forget = 0.5 ** (1.0 / (halftime_s * rate_hz))
    nominal = 1.0 / rate_hz
    w = sx = sy = sxx = sxy = 0.0
    out = np.empty_like(raw)
    t0 = raw[0]
    for i, t in enumerate(raw):
        x, y = float(i), float(t - t0)
        w, sx, sy = forget * w + 1, forget * sx + x, forget * sy + y
        sxx, sxy = forget * sxx + x * x, forget * sxy + x * y
        prior = (2 * rate_hz) ** 2 * w * w / 12  # slope prior worth ~2 s of samples
        slope = (w * sxy - sx * sy + prior * nominal) / (w * sxx - sx * sx + prior)
        slope = min(max(slope, 0.95 * nominal), 1.05 * nominal)
        out[i] = (sy - slope * sx) / w + slope * x + t0
        if i and out[i] <= out[i - 1]:
            out[i] = out[i - 1] + 1e-6  # the same strictly-increasing guard
    return out


def accuracy_and_speed(duration_s: float) -> list[tuple[str, ...]]:
    rows: list[tuple[str, ...]] = []
    for index, (name, rate, packet, jitter) in enumerate(DEVICES):
        true, raw = packet_stamped(rate, packet, jitter, duration_s, seed=index)
        settled = slice(int(rate * min(30.0, duration_s / 3)), None)

        dejitter = Dejitter(rate_hz=rate)
        started = time.perf_counter()
        ours = np.concatenate(
            [dejitter.push(raw[i : i + packet]) for i in range(0, raw.size, packet)]
        )
        ours_s = time.perf_counter() - started
        started = time.perf_counter()
        baseline = naive_rls(raw, rate)
        naive_s = time.perf_counter() - started
        agree = float(np.max(np.abs(baseline - ours)))

        raw_err = raw[settled] - true[settled]
        our_err = ours[settled] - true[settled]
        rows.append(
            (
                name,
                f"{1000 * np.std(raw_err):.2f}",
                f"{1000 * np.std(our_err):.2f}",
                f"{1000 * np.std(np.diff(raw)):.2f}",
                f"{1000 * np.std(np.diff(ours)):.3f}",
                f"{raw.size / ours_s / 1e6:.2f}",
                f"{raw.size / naive_s / 1e6:.2f}",
                f"{agree:.1e}",
            )
        )
    return rows


def _more_samples(watch: Any, count: int, *, segment: int | None = None) -> Callable[[], bool]:
    return lambda: bool(watch.samples(segment=segment) > count)


def _has_event(watch: Any, kind: Any) -> Callable[[], bool]:
    return lambda: watch.first(kind) is not None


def live_reliability(repeats: int) -> list[tuple[str, ...]]:
    """Stall and reconnect latencies over real LSL (outlets in child processes)."""
    from dsp.types import Role, SignalKind, StatusKind
    from streamer.devices import parse_device_config
    from streamer.inlet import SensorInlet
    from tests.integration.lsl_outlet_proc import InletWatch, OutletProcess, unique_source_id

    device = parse_device_config(
        {"device": {"manufacturer": "bench", "model": "ecg"},
         "signals": {"ecg": {"channel_index": 0, "counter_channel_index": 1, "unit": "mV",
                             "chunk_samples": 5}}},
        source="<bench>", default_name="bench",
    )  # fmt: skip
    stall_s, reconnect_s, poll_s = [], [], []
    for _ in range(repeats):
        sid = unique_source_id("bench")
        outlet = OutletProcess(sid, rate=100.0, chunk=5)
        inlet = SensorInlet(role=Role.CLIENT, signal=SignalKind.ECG, device=device, source_id=sid)
        watch = InletWatch(inlet)
        try:
            watch.until(_more_samples(watch, 20), timeout_s=15)
            outlet.pause()
            paused = time.monotonic()
            found = watch.until(_has_event(watch, StatusKind.STALLED), 5)
            stall_s.append(found - paused)
            outlet.resume()
            outlet.kill()
            outlet = OutletProcess(sid, rate=100.0, chunk=5)
            restarted = time.monotonic()
            resumed = watch.until(_more_samples(watch, 0, segment=1), 10)
            reconnect_s.append(resumed - restarted)
            poll_s.append(watch.max_poll_s)
        finally:
            inlet.close()
            outlet.close()
    return [
        ("SIGSTOP -> stalled event (s)", f"{np.median(stall_s):.2f}", f"{max(stall_s):.2f}", "2.0"),
        ("restart -> first new frame (s)", f"{np.median(reconnect_s):.2f}",
         f"{max(reconnect_s):.2f}", "5.0"),
        ("longest poll() call (ms)", f"{1000 * np.median(poll_s):.2f}",
         f"{1000 * max(poll_s):.2f}", "a few"),
    ]  # fmt: skip


def print_table(headers: tuple[str, ...], rows: list[tuple[str, ...]]) -> None:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
    for row in (headers, tuple("-" * w for w in widths), *rows):
        print("  ".join(cell.rjust(width) for cell, width in zip(row, widths, strict=True)))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short synthetic part only (CI)")
    args = parser.parse_args()
    duration_s = 120.0 if args.quick else 1800.0
    print(f"Timestamp error vs true sampling instants ({duration_s:g} s per device)")
    print_table(
        ("stream", "raw err ms", "dejitter err ms", "raw dt sd ms", "dejitter dt sd ms",
         "ours Msamples/s", "naive Msamples/s", "max |ours-naive| s"),
        accuracy_and_speed(duration_s),
    )  # fmt: skip
    if not args.quick:
        print()
        print("Live LSL reliability (outlets in child processes), 5 runs")
        print_table(("measure", "median", "worst", "required"), live_reliability(5))
    return 0


if __name__ == "__main__":
    sys.exit(main())

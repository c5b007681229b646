"""Benchmark of the XDF player (streamer/player.py): 1x schedule error and max-speed throughput.

Part 1: a 4-stream dyad recording (ECG 256 Hz + EDA 32 Hz per person, written with
XdfWriter) replayed at 1x for ``--schedule-s`` seconds, polling only and with every frame
pushed through the DyadPipeline, as the service does (on a shared machine the pipeline
rows also show other processes' load: the load average is printed). Schedule error =
wall time a chunk was released minus its absolute target ``start + (t_last - t0)``, for
every 0.1 s chunk of every stream. Player: sleeps until ``Replay.next_due_s()`` (absolute
targets, as ``publish_replay``). Baseline in the same run: the naive player,
``time.sleep(chunk_s)`` between releases (relative sleeps: oversleep and processing time
accumulate, so it drifts).

Part 2: a synthetic 60-minute recording (the demo scenario looped six times) opened and
replayed at max speed through the full DyadPipeline (``flush()`` at the end if the
pipeline has it); recorded seconds per wall second. Acceptance: under a minute.

    python bench/replay.py [--quick]
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dsp.pipeline import DyadPipeline
from dsp.types import Role, SignalKind
from server.rooms import pipeline_config
from streamer.player import Replay, open_replay
from streamer.scenario import builtin_scenario_path, load_scenario
from streamer.synth import synthesize
from streamer.xdf_writer import XdfWriter
from tests.recordings import add_raw_stream

CHUNK_S = 0.1


def write_recording(path: Path, *, duration_s: float) -> Path:
    """Our recording format: the demo scenario (looped) as four raw simulator streams."""
    scenario = load_scenario(builtin_scenario_path())
    rates = {SignalKind.ECG: scenario.ecg_rate_hz, SignalKind.EDA: scenario.eda_rate_hz}
    t0 = 1000.0
    with XdfWriter.open(path) as writer:
        ids = {
            (role, signal): add_raw_stream(
                writer, role=role, signal=signal, rate_hz=rates[signal], source_prefix="bench"
            )
            for role in Role
            for signal in SignalKind
        }
        sent = dict.fromkeys(ids, 0)
        passes = math.ceil(duration_s / scenario.duration_s)
        for index in range(passes):
            signals = synthesize(scenario, pass_index=index)
            offset = t0 + index * scenario.duration_s
            for (role, signal), stream_id in ids.items():
                if signal is SignalKind.ECG:
                    t, x = signals.ecg_t_s, signals.ecg_mv[role]
                else:
                    t, x = signals.eda_t_s, signals.eda_us[role]
                keep = t + index * scenario.duration_s < duration_s
                t, x = t[keep], x[keep]
                counters = sent[(role, signal)] + np.arange(t.shape[0])
                writer.push(stream_id, offset + t, np.column_stack([x, counters]))
                sent[(role, signal)] += t.shape[0]
            writer.tick(offset + scenario.duration_s)
    return path


def new_pipeline(replay: Replay) -> DyadPipeline:
    rates = {(s.role, s.signal): s.rate_hz for s in replay.sources}
    return DyadPipeline(stream_rates_hz=rates, config=pipeline_config(replay.session))


def run_scheduled(
    path: Path, *, naive: bool, process: bool, wall: Callable[[], float] = time.perf_counter
) -> np.ndarray:
    """Schedule errors (s) of every chunk at 1x, with the player or the naive baseline."""
    believed = [0.0]  # the naive player's idea of elapsed time: sleeps x chunk_s
    replay = open_replay(path, clock=(lambda: believed[0]) if naive else wall, chunk_s=CHUNK_S)
    pipeline = new_pipeline(replay)
    t0 = replay.clock.t0_s
    start = wall()
    if naive:
        replay.clock.position_s()  # the naive player starts its count now
    errors: list[np.ndarray] = []
    while not replay.finished:
        if naive:
            time.sleep(CHUNK_S)
            believed[0] += CHUNK_S
        else:
            due = replay.next_due_s()
            if due is None:
                break
            delay = due - wall()
            if delay > 0:
                time.sleep(delay)
        # Release from every source first, then process: the pipeline's own time is not the
        # player's schedule error (it only delays the next wake-up if it overruns).
        released = [(source, source.poll()[0], wall()) for source in replay.sources]
        for source, frames, when in released:
            for frame in frames:
                assert frame.counters is not None
                # the last sample of each 0.1 s chunk (and the stream's very last sample)
                ends = ((frame.counters + 1) % source.chunk_samples == 0) | (
                    frame.counters == source.stream.timestamps_s.shape[0] - 1
                )
                errors.append(when - (start + (frame.timestamps_s[ends] - t0)))
                if process:
                    pipeline.push(frame)
    return np.concatenate(errors)


def run_max_speed(path: Path) -> tuple[float, float, float, int]:
    """(open s, replay + pipeline s, recorded s, synchrony updates) at max speed."""
    started = time.perf_counter()
    replay = open_replay(path, speed=math.inf)
    opened = time.perf_counter()
    pipeline = new_pipeline(replay)
    updates = 0
    while not replay.finished:
        for source in replay.sources:
            frames, _ = source.poll()
            for frame in frames:
                updates += len(pipeline.push(frame).sync)
    flush = getattr(pipeline, "flush", None)
    if flush is not None:
        updates += len(flush().sync)
    done = time.perf_counter()
    return opened - started, done - opened, replay.duration_s, updates


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="10 s at 1x, 5-minute recording")
    parser.add_argument("--schedule-s", type=float, default=None, help="1x duration (60)")
    args = parser.parse_args()
    schedule_s = args.schedule_s or (10.0 if args.quick else 60.0)
    long_s = 300.0 if args.quick else 3600.0
    with tempfile.TemporaryDirectory() as tmp:
        short = write_recording(Path(tmp) / "short.xdf", duration_s=schedule_s)
        load = f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores"
        print(f"1x schedule error, 4 streams, {schedule_s:.0f} s, 0.1 s chunks ({load})")
        columns = ("chunks", "p50 ms", "p95 ms", "p99 ms", "max ms")
        print(f"{'scheduler':<36} " + " ".join(f"{c:>8}" for c in columns))
        for label, naive, process in (
            ("player, poll only", False, False),
            ("player + DyadPipeline", False, True),
            ("baseline: sleep(chunk_s) + pipeline", True, True),
        ):
            ms = run_scheduled(short, naive=naive, process=process) * 1e3
            p50, p95, p99 = np.percentile(ms, [50, 95, 99])
            print(f"{label:<36} {ms.size:>8} {p50:>8.2f} {p95:>8.2f} {p99:>8.2f} {ms.max():>8.2f}")

        long = write_recording(Path(tmp) / "long.xdf", duration_s=long_s)
        size_mb = long.stat().st_size / 1e6
        open_s, run_s, recorded_s, updates = run_max_speed(long)
        total = open_s + run_s
        print()
        print(
            f"max speed, {recorded_s / 60:.0f}-minute recording ({size_mb:.0f} MB; 2x256 Hz ECG + "
            "2x32 Hz EDA), full DyadPipeline"
        )
        print(f"{'open (pyxdf)':<22} {open_s:>8.2f} s")
        print(f"{'replay + pipeline':<22} {run_s:>8.2f} s   ({updates} synchrony updates)")
        print(f"{'total':<22} {total:>8.2f} s   = {recorded_s / total:,.0f} recorded s per wall s")
        print(f"(load average after: {os.getloadavg()[0]:.1f})")


if __name__ == "__main__":
    main()

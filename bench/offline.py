"""Benchmark of offline analysis (``analysis.session.analyze_recording``) against NeuroKit2.

One run writes a two-person recording (ECG 256 Hz + EDA 32 Hz per person, NeuroKit2's
simulators via ``tests/recordings.neurokit_person``, written as the live recorder writes
it: pushes every 0.1 s, Samples chunks every 0.5 s, ClockOffsets and Boundaries), then
times on the same file and signals:

(a) ``analyze_recording`` end to end (open + replay through the live pipeline +
    synchrony and significance), split into reading (``load_recording``) and the rest;
(b) the same with pyxdf's own per-sample decoding forced (``vectorise=False``: the
    reader before the numpy fast path);
(c) NeuroKit2 ``ecg_process`` on both ECGs + ``eda_process`` on both EDAs;
(d) NeuroKit2's peaks-only route: ``ecg_clean`` + ``ecg_peaks`` + ``signal_rate`` on both
    ECGs, + ``eda_process`` on both EDAs.

Every row is warmed up on a one-minute recording first, so none pays for first imports.
Then (a) is repeated with other replay chunk sizes (``open_replay(chunk_s=...)``) and the
synchrony updates are checked to be identical across them (the DSP is chunking-invariant).
The reader and the chunk size are swapped in by patching the names ``analyze_recording``
and ``open_replay`` look up; nothing else changes. Targets: (a) < 5 s, and >= 10x faster
than (c).

    python bench/offline.py [--minutes 60] [--quick]
"""

from __future__ import annotations

import argparse
import functools
import math
import os
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import analysis.session
import streamer.player
from analysis.session import SessionAnalysis, analyze_recording
from dsp.pipeline import Derived
from dsp.types import Role, SignalKind
from streamer.player import DEFAULT_CHUNK_S
from streamer.xdf_read import Recording, load_recording
from streamer.xdf_writer import XdfWriter
from tests.recordings import Person, add_raw_stream, neurokit_person

T0_S = 1000.0
TICK_S = 0.1  # the recorder's tick: the writer flushes every 0.5 s of it
CHUNK_SIZES_S = (DEFAULT_CHUNK_S, 0.25, 0.5, 1.0, 2.0)


def load_average() -> str:
    one, five, _ = os.getloadavg()
    return f"load average {one:.2f} (5 min {five:.2f}) on {os.cpu_count()} cores"


def write_recording(path: Path, people: dict[Role, Person]) -> Path:
    """``people`` as our four raw streams, pushed and ticked the way a live session is."""
    with XdfWriter.open(path) as writer:
        streams = []
        for role, person in people.items():
            for signal, rate_hz, values in (
                (SignalKind.ECG, person.ecg_rate_hz, person.ecg_mv),
                (SignalKind.EDA, person.eda_rate_hz, person.eda_us),
            ):
                stream_id = add_raw_stream(
                    writer, role=role, signal=signal, rate_hz=rate_hz, source_prefix="bench"
                )
                streams.append((stream_id, rate_hz, values))
        duration_s = min(values.shape[0] / rate_hz for _, rate_hz, values in streams)
        for step in range(math.ceil(duration_s / TICK_S)):
            for stream_id, rate_hz, values in streams:
                start, stop = (round(s * TICK_S * rate_hz) for s in (step, step + 1))
                stop = min(stop, values.shape[0])
                if stop > start:
                    counters = np.arange(start, stop, dtype=float)
                    writer.push(
                        stream_id,
                        T0_S + counters / rate_hz,
                        np.column_stack([values[start:stop], counters]),
                    )
            writer.tick(T0_S + (step + 1) * TICK_S)
    return path


@dataclass(frozen=True, slots=True)
class Timed:
    """One analysis run: wall seconds in total and in reading, and what it published."""

    total_s: float
    read_s: float
    analysis: SessionAnalysis
    recording: Recording


@contextmanager
def patched(module: Any, name: str, replacement: Any) -> Iterator[None]:
    original = getattr(module, name)
    setattr(module, name, replacement)
    try:
        yield
    finally:
        setattr(module, name, original)


def timed_analysis(path: Path, *, vectorise: bool, chunk_s: float, repeat: int) -> Timed:
    """The fastest of ``repeat`` runs of :func:`analysis_once`."""
    runs = [analysis_once(path, vectorise=vectorise, chunk_s=chunk_s) for _ in range(repeat)]
    return min(runs, key=lambda run: run.total_s)


def analysis_once(path: Path, *, vectorise: bool, chunk_s: float) -> Timed:
    """``analyze_recording(path)`` with the reader's fast path on or off and the replay's
    chunk size set, timing the read inside it."""
    reads: list[tuple[float, Recording]] = []

    def timed_load(*args: Any, **kwargs: Any) -> Recording:
        started = time.perf_counter()
        recording = load_recording(*args, vectorise=vectorise, **kwargs)
        reads.append((time.perf_counter() - started, recording))
        return recording

    open_replay = functools.partial(streamer.player.open_replay, chunk_s=chunk_s)
    with (
        patched(streamer.player, "load_recording", timed_load),
        patched(analysis.session, "open_replay", open_replay),
    ):
        started = time.perf_counter()
        result = analyze_recording(path)
        total_s = time.perf_counter() - started
    ((read_s, recording),) = reads
    return Timed(total_s=total_s, read_s=read_s, analysis=result, recording=recording)


def neurokit_full(people: Sequence[Person]) -> None:
    import neurokit2 as nk

    for person in people:
        nk.ecg_process(person.ecg_mv, sampling_rate=person.ecg_rate_hz)
        nk.eda_process(person.eda_us, sampling_rate=person.eda_rate_hz)


def neurokit_peaks(people: Sequence[Person]) -> None:
    import neurokit2 as nk

    for person in people:
        rate = person.ecg_rate_hz
        cleaned = nk.ecg_clean(person.ecg_mv, sampling_rate=rate)
        _, info = nk.ecg_peaks(cleaned, sampling_rate=rate)
        nk.signal_rate(info["ECG_R_Peaks"], sampling_rate=rate, desired_length=cleaned.size)
        nk.eda_process(person.eda_us, sampling_rate=person.eda_rate_hz)


def wall_s(work: Callable[[], object], *, repeat: int) -> float:
    """The fastest of ``repeat`` runs of ``work``, in seconds."""
    best_s = math.inf
    for _ in range(repeat):
        started = time.perf_counter()
        work()
        best_s = min(best_s, time.perf_counter() - started)
    return best_s


def sync_updates(result: SessionAnalysis) -> dict[Derived, list[dict[str, Any]]]:
    return {signal: [dict(m) for m in result.sync(signal)] for signal in Derived}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=60.0, help="recording length (60)")
    parser.add_argument("--quick", action="store_true", help="a 3-minute recording")
    parser.add_argument(
        "--repeat", type=int, default=1, help="runs per row, the fastest is shown (1)"
    )
    args = parser.parse_args()
    repeat = max(1, args.repeat)
    minutes = 3.0 if args.quick else args.minutes
    duration_s = minutes * 60.0
    print(
        f"offline analysis of a {minutes:g}-minute dyad recording, fastest of {repeat} "
        f"run(s) per row ({load_average()})"
    )

    started = time.perf_counter()
    people = {
        Role.THERAPIST: neurokit_person(duration_s=duration_s, seed=11, heart_rate_bpm=68.0),
        Role.CLIENT: neurokit_person(duration_s=duration_s, seed=12, heart_rate_bpm=77.0),
    }
    simulated_s = time.perf_counter() - started
    with tempfile.TemporaryDirectory() as tmp:
        path = write_recording(Path(tmp) / "dyad.xdf", people)
        written_s = time.perf_counter() - started - simulated_s
        samples = sum(p.ecg_mv.size + p.eda_us.size for p in people.values())
        print(
            f"NeuroKit2 simulators (tests/recordings.neurokit_person) {simulated_s:.1f} s, "
            f"written as the recorder writes {written_s:.1f} s: "
            f"{samples / 1e6:.2f} M samples, {path.stat().st_size / 1e6:.0f} MB"
        )

        # Warm-ups on one minute, so no row pays for first imports and first calls.
        warm = {
            Role.THERAPIST: neurokit_person(duration_s=60, seed=1),
            Role.CLIENT: neurokit_person(duration_s=60, seed=2),
        }
        analysis_once(
            write_recording(Path(tmp) / "warm.xdf", warm), vectorise=True, chunk_s=DEFAULT_CHUNK_S
        )
        neurokit_full(list(warm.values()))
        neurokit_peaks(list(warm.values()))

        fast = timed_analysis(path, vectorise=True, chunk_s=DEFAULT_CHUNK_S, repeat=repeat)
        baseline = timed_analysis(path, vectorise=False, chunk_s=DEFAULT_CHUNK_S, repeat=repeat)
        assert fast.recording.numeric_chunks_per_sample == 0, "our file left the fast path"
        if sync_updates(fast.analysis) != sync_updates(baseline.analysis):
            raise SystemExit("the fast reader changed the synchrony updates")
        signals = list(people.values())
        full_s = wall_s(lambda: neurokit_full(signals), repeat=repeat)
        peaks_s = wall_s(lambda: neurokit_peaks(signals), repeat=repeat)

        n_sync = sum(len(v) for v in sync_updates(fast.analysis).values())
        print()
        print(f"{'':<52} {'total s':>8} {'read s':>8} {'rest s':>8}")
        for label, run in (
            ("(a) analyze_recording, numpy fast reader", fast),
            ("(b) analyze_recording, pyxdf's reader (before)", baseline),
        ):
            rest_s = run.total_s - run.read_s
            print(f"{label:<52} {run.total_s:>8.2f} {run.read_s:>8.2f} {rest_s:>8.2f}")
        print(f"{'(c) NeuroKit2 ecg_process x2 + eda_process x2':<52} {full_s:>8.2f}")
        print(f"{'(d) NeuroKit2 ecg_clean+ecg_peaks+signal_rate x2 + eda':<52} {peaks_s:>8.2f}")
        print(
            f"({n_sync} synchrony updates; {fast.recording.numeric_chunks_vectorised} numeric "
            f"chunks decoded by numpy; {load_average()})"
        )
        print()
        verdict = "PASS" if fast.total_s < 5.0 else "FAIL"
        print(f"target (a) < 5 s: {fast.total_s:.2f} s -> {verdict}")
        speedup = full_s / fast.total_s
        verdict = "PASS" if speedup >= 10.0 else "FAIL"
        print(f"target (a) >= 10x faster than (c): {speedup:.1f}x -> {verdict}")
        print(f"(a) vs (b): reading {baseline.read_s / fast.read_s:.1f}x faster, "
              f"end to end {baseline.total_s / fast.total_s:.2f}x; vs (d): "
              f"{peaks_s / fast.total_s:.2f}x")  # fmt: skip

        print()
        print(f"replay chunk size (open_replay chunk_s), numpy reader ({load_average()})")
        print(f"{'chunk_s':>8} {'total s':>8} {'rest s':>8}  sync updates")
        reference = sync_updates(fast.analysis)
        for chunk_s in CHUNK_SIZES_S:
            run = (
                fast
                if chunk_s == DEFAULT_CHUNK_S
                else timed_analysis(path, vectorise=True, chunk_s=chunk_s, repeat=repeat)
            )
            same = sync_updates(run.analysis) == reference
            identity = "identical" if same else "DIFFERENT"
            print(
                f"{chunk_s:>8g} {run.total_s:>8.2f} {run.total_s - run.read_s:>8.2f}  "
                f"{identity} to chunk_s={DEFAULT_CHUNK_S:g}"
            )
        print(f"({load_average()})")


if __name__ == "__main__":
    main()

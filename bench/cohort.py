"""Cohort analysis on Dask: sessions per minute with 1 and 2 workers, beside a serial run.

Writes ``--sessions`` recordings of ``--minutes`` each: half truly coupled dyads (the
client is the therapist's own NeuroKit2 signals 2 s later, plus sensor noise), half two
independent NeuroKit2 people. Analyses the whole cohort serially and on a local Dask
cluster with 1 and 2 workers (``analysis.cohort.analyze_cohort``: every session through
the live pipeline, then the pseudo-dyad control), checks that the three give identical
files, and runs the pseudo-dyad control within each half: coupled sessions should beat
their pseudo-dyads (small p), independent ones should not.

    python bench/cohort.py [--sessions 40] [--minutes 50] [--quick]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from analysis.cohort import Cohort, analyze_cohort, pseudo_dyad_control, write_cohort  # noqa: E402
from dsp.types import Role  # noqa: E402
from tests.recordings import follower_dyad, neurokit_person, write_dyad_recording  # noqa: E402


def _write_cohort(folder: Path, *, sessions: int, minutes: float) -> None:
    duration_s = minutes * 60.0
    for index in range(sessions):
        if index % 2 == 0:
            people = follower_dyad(duration_s=duration_s, seed=100 + index)
            name = f"coupled{index:02d}.xdf"
        else:
            people = {
                Role.THERAPIST: neurokit_person(duration_s=duration_s, seed=200 + index),
                Role.CLIENT: neurokit_person(
                    duration_s=duration_s, seed=300 + index, heart_rate_bpm=60.0 + index % 25
                ),
            }
            name = f"independent{index:02d}.xdf"
        write_dyad_recording(folder / name, people)


def _files(cohort: Cohort, folder: Path) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in write_cohort(cohort, folder)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=40)
    parser.add_argument("--minutes", type=float, default=50.0)
    parser.add_argument("--quick", action="store_true", help="8 sessions of 3 minutes")
    args = parser.parse_args()
    sessions, minutes = (8, 3.0) if args.quick else (args.sessions, args.minutes)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "recordings"
        folder.mkdir()
        started = time.perf_counter()
        _write_cohort(folder, sessions=sessions, minutes=minutes)
        written_s = time.perf_counter() - started
        print(f"{sessions} sessions of {minutes:g} min written in {written_s:.0f} s")
        runs: dict[str, Cohort] = {}
        print(f"{'run':22s} {'seconds':>8s} {'sessions/min':>13s}")
        for name, scheduler, workers in (
            ("serial", "serial", 1),
            ("local Dask, 1 worker", "local", 1),
            ("local Dask, 2 workers", "local", 2),
        ):
            started = time.perf_counter()
            runs[name] = analyze_cohort(folder, scheduler=scheduler, n_workers=workers)
            seconds = time.perf_counter() - started
            print(f"{name:22s} {seconds:8.1f} {sessions / seconds * 60:13.2f}", flush=True)
        outputs = [_files(cohort, Path(tmp) / name) for name, cohort in runs.items()]
        identical = all(other == outputs[0] for other in outputs[1:])
        print(f"identical files from the three runs: {identical}")
        results = runs["local Dask, 2 workers"].results
        for group in ("coupled", "independent"):
            members = [r for r in results if r.session.path.name.startswith(group)]
            control = pseudo_dyad_control(members)
            for signal in control.signals:
                c = signal.comparison
                print(
                    f"{group:12s} {signal.signal.value:7s} real {c.mean_real:.3f} vs pseudo "
                    f"{c.mean_pseudo:.3f} (n={c.n_real}/{c.n_pseudo}): d {c.cohens_d:.2f}, "
                    f"p {c.p_value:.4f}"
                )
    print(f"load average {os.getloadavg()[0]:.2f} (2 cores)")


if __name__ == "__main__":
    main()

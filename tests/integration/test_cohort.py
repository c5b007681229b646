"""``dyadsync cohort``: many recordings analysed serially, on a local Dask cluster and on an
external scheduler, with the pseudo-dyad control.

Two cohorts of 90 s recordings in our XDF format:

- *independent*: four NeuroKit2 dyads (each person simulated with its own seed) and one
  dyad of two real people (NeuroKit2's example recordings), plus one corrupt file;
- *coupled*: five dyads whose client is the therapist's own signals 2 s later plus
  independent sensor noise (client follows therapist), so every real dyad is truly coupled.

What a fair calibration test is: in the independent cohort, the "real" pairing of
therapists and clients is arbitrary. Every assignment of the five clients to the five
therapists is an equally valid real cohort under the null hypothesis, so instead of
checking one p-value (which would fail for 5 % of seeds even when the method is right),
the test computes the p of all 120 assignments from the same pair statistics and checks
that small p-values are not more frequent than their level.
"""

from __future__ import annotations

import argparse
import csv
import itertools
import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from analysis import cohort_cli
from analysis.cohort import (
    OUTPUT_FILES,
    Cohort,
    PseudoDyadControl,
    SessionResult,
    analyze_cohort,
    cohort_sessions,
    compare_real_pseudo,
    pseudo_dyad_control,
    task_runner,
    write_cohort,
)
from dsp.exceptions import ConfigError
from dsp.pipeline import Derived
from dsp.types import FloatArray, Role
from server.store import SessionStore, sha256_file
from tests.recordings import follower_dyad, neurokit_person, real_person, write_dyad_recording

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

DURATION_S = 90
CLIENT_DELAY_S = 2
PERMUTATIONS = 999
SIGNALS = (Derived.HR, Derived.PHASIC)


@dataclass(frozen=True, slots=True)
class Cohorts:
    independent: Path
    coupled: Path


@pytest.fixture(scope="module")
def cohorts(tmp_path_factory: pytest.TempPathFactory) -> Cohorts:
    root = tmp_path_factory.mktemp("cohorts")
    independent, coupled = root / "independent", root / "coupled"
    independent.mkdir()
    coupled.mkdir()
    for i in range(4):
        write_dyad_recording(
            independent / f"nk{i}.xdf",
            {
                Role.THERAPIST: neurokit_person(duration_s=DURATION_S, seed=10 + i),
                Role.CLIENT: neurokit_person(
                    duration_s=DURATION_S, seed=20 + i, heart_rate_bpm=60.0 + 5 * i
                ),
            },
        )
    write_dyad_recording(
        independent / "real.xdf",
        {
            Role.THERAPIST: real_person("bio_resting_8min_100hz", duration_s=DURATION_S),
            Role.CLIENT: real_person("bio_eventrelated_100hz", duration_s=DURATION_S),
        },
    )
    # Magic bytes, then garbage: a file that looks like XDF but cannot be read.
    (independent / "corrupt.xdf").write_bytes(b"XDF:" + np.random.default_rng(0).bytes(4000))
    for i in range(5):
        write_dyad_recording(
            coupled / f"follow{i}.xdf",
            follower_dyad(duration_s=DURATION_S, seed=30 + i, delay_s=CLIENT_DELAY_S),
        )
    return Cohorts(independent=independent, coupled=coupled)


@pytest.fixture(scope="module")
def serial(cohorts: Cohorts) -> Cohort:
    return analyze_cohort(cohorts.independent, scheduler="serial", n_permutations=PERMUTATIONS)


@pytest.fixture(scope="module")
def coupled(cohorts: Cohorts) -> Cohort:
    return analyze_cohort(cohorts.coupled, scheduler="serial", n_permutations=PERMUTATIONS)


@pytest.fixture
def external_scheduler() -> Iterator[str]:
    """A real LocalCluster the test starts (2 single-threaded workers), as a lab's would be."""
    from distributed import LocalCluster

    cluster = LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        processes=True,
        host="127.0.0.1",
        dashboard_address=None,
        scheduler_kwargs={"dashboard_address": "127.0.0.1:0"},
    )
    try:
        yield cluster.scheduler_address
    finally:
        cluster.close()


def _files(out: Path) -> dict[str, bytes]:
    return {name: (out / name).read_bytes() for name in OUTPUT_FILES}


def _assert_same_results(a: Cohort, b: Cohort) -> None:
    assert [r.session for r in a.results] == [r.session for r in b.results]
    for x, y in zip(a.results, b.results, strict=True):
        assert (x.error, x.summary, x.settings) == (y.error, y.summary, y.settings)
        assert repr(x.duration_s) == repr(y.duration_s)  # repr: NaN equals NaN
        assert (x.series or {}).keys() == (y.series or {}).keys()
        for key, values in (x.series or {}).items():
            np.testing.assert_array_equal(values, (y.series or {})[key])
    assert _control_key(a.control) == _control_key(b.control)


def _control_key(control: PseudoDyadControl) -> object:
    """Everything the control holds, with floats as repr (exact, and NaN equals NaN)."""
    return (
        control.sessions,
        control.settings,
        control.unavailable,
        [
            (
                s.signal,
                repr(s.comparison),
                [(p.therapist_session, p.client_session, repr(p.peak_z), p.windows)
                 for p in s.pairs],
            )
            for s in control.signals
        ],
    )  # fmt: skip


def test_a_row_per_session_and_an_error_row(serial: Cohort, tmp_path: Path) -> None:
    ids = [r.session.session_id for r in serial.results]
    assert ids == ["corrupt", "nk0", "nk1", "nk2", "nk3", "real"]  # file names, sorted
    corrupt = serial.results[0]
    assert not corrupt.ok and "not a readable XDF recording" in corrupt.error
    assert corrupt.error.startswith("corrupt.xdf: ")  # the file's name, never its folder
    assert all(r.ok and r.summary is not None for r in serial.results[1:])
    write_cohort(serial, tmp_path)
    with (tmp_path / "cohort.csv").open() as file:
        rows = list(csv.DictReader(file))
    assert [row["session_id"] for row in rows] == ids
    assert "not a readable XDF recording" in rows[0]["error"]
    assert rows[0]["duration_s"] == "" and rows[0]["hr.synchrony.mean_r"] == ""
    for row, result in zip(rows[1:], serial.results[1:], strict=True):
        assert row["error"] == ""
        assert float(row["duration_s"]) == result.duration_s > 80
        summary_hr = result.summary["signals"]["hr"]  # type: ignore[index]
        assert float(row["hr.synchrony.mean_r"]) == summary_hr["synchrony"]["mean_r"]
    document = json.loads((tmp_path / "cohort.json").read_text())
    assert document["sessions"] == 6 and document["analysed"] == 5
    assert [f["session_id"] for f in document["failed"]] == ["corrupt"]
    assert document["aggregates"]["duration_s"]["n"] == 5
    assert "Pseudo-dyad control" in (tmp_path / "cohort.md").read_text()


def test_pseudo_dyads_are_every_therapist_with_every_other_client(serial: Cohort) -> None:
    analysed = [r.session.session_id for r in serial.results if r.ok]
    n = len(analysed)
    assert n == 5
    assert [s.signal for s in serial.control.signals] == list(SIGNALS)
    for signal in serial.control.signals:
        real = [(p.therapist_session, p.client_session) for p in signal.pairs if p.real]
        pseudo = [(p.therapist_session, p.client_session) for p in signal.pairs if not p.real]
        assert real == [(s, s) for s in analysed]
        assert sorted(pseudo) == sorted(itertools.permutations(analysed, 2))
        assert len(pseudo) == n * (n - 1)
        assert signal.comparison.n_real == n and signal.comparison.n_pseudo == n * (n - 1)
        assert all(p.windows > 0 for p in signal.pairs)
        assert signal.comparison.n_permutations == PERMUTATIONS


def test_serial_dask_and_external_scheduler_agree_exactly(
    cohorts: Cohorts, serial: Cohort, external_scheduler: str, tmp_path: Path
) -> None:
    local = analyze_cohort(
        cohorts.independent, scheduler="local", n_workers=2, n_permutations=PERMUTATIONS
    )
    done: list[str] = []
    remote = analyze_cohort(
        cohorts.independent,
        scheduler=external_scheduler,
        n_permutations=PERMUTATIONS,
        on_result=lambda r: done.append(r.session.session_id),
    )
    assert sorted(done) == sorted(r.session.session_id for r in serial.results)
    for other in (local, remote):
        _assert_same_results(serial, other)
    outputs = {}
    for name, cohort in (("serial", serial), ("local", local), ("remote", remote)):
        outputs[name] = _files(write_cohort(cohort, tmp_path / name)[0].parent)
    assert outputs["serial"] == outputs["local"] == outputs["remote"]


def _pair_matrix(
    results: list[SessionResult], control: PseudoDyadControl, signal: Derived
) -> FloatArray:
    """M[i, j]: the statistic of therapist i with client j (sessions in order)."""
    ids = [r.session.session_id for r in results if r.ok]
    matrix = np.full((len(ids), len(ids)), np.nan)
    (found,) = [s for s in control.signals if s.signal is signal]
    for pair in found.pairs:
        matrix[ids.index(pair.therapist_session), ids.index(pair.client_session)] = pair.peak_z
    return matrix


def _p_of_assignment(matrix: FloatArray, clients: tuple[int, ...], seed: int) -> float:
    """p when therapist i's "real" client is clients[i]; every other pair is pseudo."""
    real_mask = np.zeros(matrix.shape, dtype=bool)
    real_mask[np.arange(len(clients)), clients] = True
    return compare_real_pseudo(
        matrix[real_mask], matrix[~real_mask], n_permutations=PERMUTATIONS, seed=seed
    ).p_value


def test_coupled_dyads_beat_pseudo_dyads(coupled: Cohort) -> None:
    assert all(r.ok for r in coupled.results)
    for signal in coupled.control.signals:
        c = signal.comparison
        assert c.mean_real > c.mean_pseudo
        assert c.cohens_d > 2.0, signal
        # 5 real among 25: the smallest possible exact p is 1/53130; with 999 shuffles the
        # p is at its floor 1/1000 when no shuffle reaches the real split.
        assert c.p_value <= 0.01, signal
        # A 2 s follower peaks at a positive lag; the real dyads are the top five pairs.
        real = sorted(p.peak_z for p in signal.pairs if p.real)
        pseudo = sorted(p.peak_z for p in signal.pairs if not p.real)
        assert real[0] > pseudo[-1], signal


def test_independent_people_are_calibrated(serial: Cohort) -> None:
    results = list(serial.results)
    n = sum(r.ok for r in results)
    for signal in SIGNALS:
        matrix = _pair_matrix(results, serial.control, signal)
        assert np.isfinite(matrix).all()
        p_values = np.array(
            [_p_of_assignment(matrix, a, seed=0) for a in itertools.permutations(range(n))]
        )
        assert p_values.size == 120
        # Under the null, P(p <= alpha) <= alpha; slack for 120 correlated assignments.
        for alpha in (0.05, 0.1):
            assert np.mean(p_values <= alpha) <= alpha + 0.05, (signal, alpha, p_values)
        # The recorded pairing is one of them: no significant difference either.
        recorded = next(s for s in serial.control.signals if s.signal is signal).comparison
        assert recorded.p_value > 0.05, (signal, recorded)


def test_deterministic_with_the_seed(serial: Cohort) -> None:
    again = pseudo_dyad_control(serial.results, n_permutations=PERMUTATIONS, seed=0)
    assert _control_key(again) == _control_key(serial.control)
    other = pseudo_dyad_control(serial.results, n_permutations=PERMUTATIONS, seed=1)
    for a, b in zip(serial.control.signals, other.signals, strict=True):
        assert a.pairs == b.pairs
        assert (a.comparison.mean_real, a.comparison.cohens_d) == (
            b.comparison.mean_real,
            b.comparison.cohens_d,
        )
        assert b.comparison.seed == 1
        # Another seed is another Monte Carlo draw of the same p (SE ~ 0.016 at 999).
        assert abs(a.comparison.p_value - b.comparison.p_value) < 0.08


def test_a_session_store_as_source_gives_rooms(cohorts: Cohorts, tmp_path: Path) -> None:
    files = sorted(cohorts.coupled.glob("*.xdf"))[:3]
    started = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
    with SessionStore(tmp_path / "sessions.sqlite3") as store:
        for index, path in enumerate(files):
            session_id = f"R{index % 2}_{index}"
            store.begin_session(
                session_id=session_id,
                room=f"R{index % 2}",
                started_utc=started + timedelta(hours=index),
                started_lsl_s=1000.0,
                file_path=path,
                settings={},
                streams=[],
            )
            store.end_session(
                session_id=session_id,
                ended_utc=started + timedelta(hours=index, minutes=2),
                duration_s=90.0,
                file_sha256=sha256_file(path),
                coregulation={},
            )
    sessions = cohort_sessions(tmp_path / "sessions.sqlite3")
    assert [(s.session_id, s.room, s.path) for s in sessions] == [
        (f"R{i % 2}_{i}", f"R{i % 2}", path) for i, path in enumerate(files)
    ]
    # Through the command line, serially, quiet.
    parser = argparse.ArgumentParser(prog="dyadsync")
    cohort_cli.add_parser(parser.add_subparsers(dest="command"))
    out = tmp_path / "out"
    args = parser.parse_args(
        ["cohort", str(tmp_path / "sessions.sqlite3"), "--out", str(out), "--serial",
         "--quiet", "--permutations", "99"]
    )  # fmt: skip
    assert cohort_cli.run(args) == 0
    with (out / "cohort.csv").open() as file:
        rows = list(csv.DictReader(file))
    assert [(row["session_id"], row["room"], row["file"]) for row in rows] == [
        (s.session_id, s.room, s.path.name) for s in sessions
    ]
    assert all(row["error"] == "" for row in rows)


def test_a_scheduler_that_is_not_an_address_is_refused() -> None:
    with pytest.raises(ConfigError, match="'serial', 'local' or a scheduler address"):
        task_runner("localhost:8786")


def test_a_recording_is_not_a_cohort(cohorts: Cohorts) -> None:
    with pytest.raises(ConfigError, match="is one recording; give the folder"):
        cohort_sessions(cohorts.coupled / "follow0.xdf")

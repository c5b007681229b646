"""Our windowed cross-correlation against rMEA 1.3.0 on real psychotherapy dyad 200.

The reference tables were produced by rMEA itself (``dyads/rmea/reference/make_reference.R``);
rMEA's s1 (x) is the patient and s2 (y) the therapist, so a = patient, b = therapist here.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dsp.types import FloatArray
from dsp.xcorr import StreamingCrossCorrelation, windowed_cross_correlation
from tests import paths

pytestmark = pytest.mark.data

FS_HZ = 25.0


def _dyad200() -> tuple[FloatArray, FloatArray]:
    table = np.loadtxt(paths.testdata("dyads/rmea/normal/200_01.txt"), skiprows=1)
    return table[:, 0], table[:, 1]  # columns: pat th


def _read_csv(name: str) -> tuple[list[str], list[list[str]]]:
    path: Path = paths.testdata(f"dyads/rmea/reference/{name}")
    with path.open(newline="") as handle:
        rows = list(csv.reader(handle))
    return rows[0], rows[1:]


def _full_table(name: str) -> tuple[FloatArray, FloatArray, list[str]]:
    header, rows = _read_csv(name)
    lags_s = np.array([float(h.removeprefix("lag")) for h in header[2:]])
    values = np.array([[float(v) for v in row[2:]] for row in rows])
    return values, lags_s, [row[0] for row in rows]


def _hms(seconds: float) -> str:
    whole = round(seconds)
    return f"{whole // 3600:02d}:{whole % 3600 // 60:02d}:{whole % 60:02d}"


@pytest.mark.parametrize(
    ("name", "window_s", "step_s", "absolute"),
    [
        ("dyad200_raw_lag5_win30_inc10_fullccf.csv", 30.0, 10.0, False),
        ("dyad200_raw_lag5_win60_inc30_ABS_fullccf.csv", 60.0, 30.0, True),
    ],
)
def test_full_window_by_lag_table_matches_rmea(
    name: str, window_s: float, step_s: float, absolute: bool
) -> None:
    patient, therapist = _dyad200()
    expected, expected_lags_s, starts = _full_table(name)
    ours = windowed_cross_correlation(
        patient, therapist, FS_HZ, window_s=window_s, lag_s=5.0, step_s=step_s, absolute=absolute
    )
    assert ours.values.shape == expected.shape
    np.testing.assert_allclose(ours.lags_s, expected_lags_s, atol=1e-12)
    assert [_hms(s) for s in ours.window_start_s] == starts
    assert np.max(np.abs(ours.values - expected)) <= 1e-9


def test_per_window_summaries_match_rmea() -> None:
    patient, therapist = _dyad200()
    header, rows = _read_csv("dyad200_raw_lag5_win30_inc10_ccfRes.csv")
    assert header == ["lag_zero", "all_lags", "s1_lead", "s2_lead", "bestLag"]
    expected = np.array([[float(v) for v in row] for row in rows])
    summary = windowed_cross_correlation(
        patient, therapist, FS_HZ, window_s=30.0, lag_s=5.0, step_s=10.0
    ).summaries()
    ours = np.column_stack(
        [summary.lag_zero, summary.all_lags, summary.a_leads, summary.b_leads, summary.best_lag_s]
    )
    assert np.max(np.abs(ours - expected)) <= 1e-9


def test_readme_spot_values_of_window_one() -> None:
    """The values quoted in the data README (checked by hand against rMEA)."""
    patient, therapist = _dyad200()
    ours = windowed_cross_correlation(
        patient, therapist, FS_HZ, window_s=30.0, lag_s=5.0, step_s=10.0
    )
    at = {lag: int(np.flatnonzero(np.isclose(ours.lags_s, lag))[0]) for lag in (0.0, 1.0, -1.0)}
    assert ours.values[0, at[0.0]] == pytest.approx(-0.0985699886, abs=1e-10)
    assert ours.values[0, at[1.0]] == pytest.approx(-0.0291816563, abs=1e-10)
    assert ours.values[0, at[-1.0]] == pytest.approx(-0.1891706891, abs=1e-10)


@settings(max_examples=8, deadline=None)
@given(cuts=st.lists(st.integers(1, 14_999), max_size=60, unique=True))
def test_streaming_in_random_chunks_reproduces_rmea_table(cuts: list[int]) -> None:
    patient, therapist = _dyad200()
    expected, _, _ = _full_table("dyad200_raw_lag5_win30_inc10_fullccf.csv")
    stream = StreamingCrossCorrelation(FS_HZ, window_s=30.0, lag_s=5.0, step_s=10.0)
    edges = sorted(cuts)
    parts = [
        stream.push(a, b).values
        for a, b in zip(np.split(patient, edges), np.split(therapist, edges), strict=True)
    ]
    assert np.max(np.abs(np.vstack(parts) - expected)) <= 1e-9

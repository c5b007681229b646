"""RPeakDetector / detect_r_peaks on synthetic ECG with known beats, chunking and garbage."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dsp.ecg import RPeakConfig, RPeakDetector, RPeaks, detect_r_peaks
from dsp.exceptions import ConfigError, SignalError
from tests.unit.test_ecg_synthetic import regular_beats, synthetic_ecg

_DURATION_S = 30.0
_BEATS_S = regular_beats(hr_bpm=72.0, duration_s=_DURATION_S, seed=3)


def _push_in_chunks(
    detector: RPeakDetector, t: np.ndarray, x: np.ndarray, cuts: list[int]
) -> RPeaks:
    parts = [
        detector.push(tc, xc) for tc, xc in zip(np.split(t, cuts), np.split(x, cuts), strict=True)
    ]
    return RPeaks(*(np.concatenate([getattr(p, f) for p in parts]) for f in RPeaks._fields))


def _match(found_s: np.ndarray, truth_s: np.ndarray, tolerance_s: float) -> tuple[int, int, float]:
    """(missed, extra, worst |error|) pairing each true beat with the nearest detection."""
    errors = [float(np.min(np.abs(found_s - b))) if found_s.size else np.inf for b in truth_s]
    missed = sum(e > tolerance_s for e in errors)
    extra = found_s.size - (len(truth_s) - missed)
    worst = max((e for e in errors if e <= tolerance_s), default=0.0)
    return missed, extra, worst


@pytest.mark.parametrize("fs_hz", [100.0, 130.0, 250.0, 512.0, 1000.0, 2000.0])
@pytest.mark.parametrize("polarity", [1.0, -1.0])
def test_finds_every_beat_at_every_wearable_rate(fs_hz: float, polarity: float) -> None:
    ecg = polarity * synthetic_ecg(fs_hz=fs_hz, beat_times_s=_BEATS_S, duration_s=_DURATION_S)
    found_s = detect_r_peaks(ecg, fs_hz) / fs_hz
    # The last beat within lookahead of the end cannot be final yet.
    truth_s = _BEATS_S[_BEATS_S < _DURATION_S - 0.5]
    missed, extra, worst_s = _match(found_s, truth_s, tolerance_s=0.075)
    assert (missed, extra) == (0, 0)
    assert worst_s <= max(0.012, 1.5 / fs_hz)


def test_delays_are_reported_and_bounded() -> None:
    fs_hz = 250.0
    ecg = synthetic_ecg(fs_hz=fs_hz, beat_times_s=_BEATS_S, duration_s=_DURATION_S)
    detector = RPeakDetector(fs_hz)
    peaks = detector.push(np.arange(ecg.size) / fs_hz, ecg)
    assert np.all(peaks.delays_s >= 0.0)
    assert np.all(peaks.delays_s <= detector.max_delay_s)
    assert float(np.median(peaks.delays_s)) <= 0.4
    np.testing.assert_array_equal(peaks.times_s, peaks.indices / fs_hz)


def test_a_small_beat_is_recovered_by_search_back_later() -> None:
    fs_hz = 250.0
    beats_s = np.arange(0.5, 20.0, 0.8)
    ecg = synthetic_ecg(fs_hz=fs_hz, beat_times_s=beats_s, duration_s=20.5, noise_mv=0.005)
    weak_s = beats_s[15]
    one_beat = synthetic_ecg(
        fs_hz=fs_hz, beat_times_s=np.array([weak_s]), duration_s=20.5, noise_mv=0
    )
    no_beat = synthetic_ecg(fs_hz=fs_hz, beat_times_s=np.array([]), duration_s=20.5, noise_mv=0)
    # 45 % amplitude = 20 % energy: under the primary threshold, over the search-back one.
    ecg -= 0.55 * (one_beat - no_beat)
    detector = RPeakDetector(fs_hz)
    peaks = detector.push(np.arange(ecg.size) / fs_hz, ecg)
    missed, extra, _ = _match(peaks.times_s, beats_s[beats_s < 20.0], tolerance_s=0.05)
    assert (missed, extra) == (0, 0)
    weak = int(np.argmin(np.abs(peaks.times_s - weak_s)))
    assert peaks.delays_s[weak] > 0.8  # found only after the search-back deadline
    assert peaks.delays_s[weak] <= detector.max_delay_s


_FS_CHUNKING = 250.0
_ECG_CHUNKING = synthetic_ecg(
    fs_hz=_FS_CHUNKING, beat_times_s=_BEATS_S[_BEATS_S < 14.5], duration_s=15.0
)
_T_CHUNKING = np.arange(_ECG_CHUNKING.size) / _FS_CHUNKING
_ONE_SHOT = RPeakDetector(_FS_CHUNKING).push(_T_CHUNKING, _ECG_CHUNKING)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cuts=st.lists(st.integers(min_value=0, max_value=_ECG_CHUNKING.size), max_size=40))
def test_any_chunking_gives_exactly_the_one_shot_output(cuts: list[int]) -> None:
    chunked = _push_in_chunks(RPeakDetector(_FS_CHUNKING), _T_CHUNKING, _ECG_CHUNKING, sorted(cuts))
    assert len(_ONE_SHOT.indices) > 10
    for field in RPeaks._fields:
        np.testing.assert_array_equal(getattr(chunked, field), getattr(_ONE_SHOT, field))


def test_non_finite_stretch_restarts_detection_without_inventing_beats() -> None:
    fs_hz = 250.0
    ecg = synthetic_ecg(fs_hz=fs_hz, beat_times_s=_BEATS_S, duration_s=_DURATION_S)
    bad = slice(round(10.0 * fs_hz), round(12.0 * fs_hz))
    ecg[bad] = np.nan
    ecg[round(20.0 * fs_hz)] = np.inf
    found = detect_r_peaks(ecg, fs_hz)
    assert not np.any((found >= bad.start) & (found < bad.stop))
    assert np.all(np.isfinite(ecg[found]))
    # Beats come back once the learning phase after each break is over.
    truth_s = _BEATS_S[(_BEATS_S > 14.5) & (_BEATS_S < 19.5)]
    missed, _, _ = _match(found / fs_hz, truth_s, tolerance_s=0.05)
    assert missed == 0
    # ... and every detection is a true beat.
    _, extra, _ = _match(found / fs_hz, _BEATS_S, tolerance_s=0.05)
    assert extra == 0


def test_timestamp_gap_splits_segments() -> None:
    fs_hz = 250.0
    ecg = synthetic_ecg(fs_hz=fs_hz, beat_times_s=_BEATS_S, duration_s=_DURATION_S)
    t = np.arange(ecg.size) / fs_hz
    t[round(15.0 * fs_hz) :] += 60.0  # one minute without samples
    peaks = RPeakDetector(fs_hz).push(t, ecg)
    assert not np.any((peaks.times_s > 15.0) & (peaks.times_s < 75.0))
    assert np.sum(peaks.times_s > 78.0) >= 10


@pytest.mark.parametrize("second_chunk_start", [0.0, 0.996, 0.5])
def test_non_increasing_timestamps_raise_signal_error(second_chunk_start: float) -> None:
    detector = RPeakDetector(250.0)
    detector.push(np.arange(250) / 250.0, np.zeros(250))
    with pytest.raises(SignalError, match="strictly increase"):
        detector.push(second_chunk_start + np.arange(10) / 250.0, np.zeros(10))


def test_duplicate_timestamp_inside_a_chunk_raises() -> None:
    with pytest.raises(SignalError, match="strictly increase"):
        RPeakDetector(250.0).push(np.array([0.0, 0.004, 0.004]), np.zeros(3))


def test_non_finite_timestamps_raise() -> None:
    with pytest.raises(SignalError, match="NaN/inf"):
        RPeakDetector(250.0).push(np.array([0.0, np.nan]), np.zeros(2))


def test_shape_mismatch_raises() -> None:
    with pytest.raises(SignalError, match="equal length"):
        RPeakDetector(250.0).push(np.zeros(3), np.zeros(4))
    with pytest.raises(SignalError, match="1-D"):
        detect_r_peaks(np.zeros((10, 2)), 250.0)


def test_flat_line_gives_no_beats_and_finality_keeps_up() -> None:
    fs_hz = 130.0
    detector = RPeakDetector(fs_hz)
    t = np.arange(round(20 * fs_hz)) / fs_hz
    peaks = detector.push(t, np.full(t.size, 0.7))
    assert peaks.indices.size == 0
    assert detector.final_through_s >= t[-1] - 3.0


def test_finality_watermark_never_exceeded_by_later_peaks() -> None:
    fs_hz = 250.0
    ecg = synthetic_ecg(fs_hz=fs_hz, beat_times_s=_BEATS_S, duration_s=_DURATION_S, noise_mv=0.05)
    t = np.arange(ecg.size) / fs_hz
    detector = RPeakDetector(fs_hz)
    watermark = -np.inf
    for start in range(0, ecg.size, 37):
        peaks = detector.push(t[start : start + 37], ecg[start : start + 37])
        assert np.all(peaks.times_s >= watermark)
        assert detector.final_through_s >= watermark
        watermark = detector.final_through_s
    assert watermark >= t[-1] - 3.0


def test_empty_chunks_are_accepted() -> None:
    detector = RPeakDetector(250.0)
    assert detector.push(np.empty(0), np.empty(0)).indices.size == 0
    assert detector.push([], []).indices.dtype == np.int64


@settings(max_examples=30, deadline=None)
@given(
    values=st.lists(
        st.one_of(
            st.floats(allow_nan=True, allow_infinity=True, width=64),
            st.floats(min_value=-5, max_value=5),
        ),
        max_size=600,
    ),
    cut=st.integers(min_value=0, max_value=600),
)
def test_garbage_values_never_crash_and_yield_finite_peaks(values: list[float], cut: int) -> None:
    x = np.asarray(values, dtype=np.float64)
    t = np.arange(x.size) / 130.0
    detector = RPeakDetector(130.0)
    with np.errstate(all="ignore"):
        first = detector.push(t[:cut], x[:cut])
        second = detector.push(t[cut:], x[cut:])
    for peaks in (first, second):
        assert np.all((peaks.indices >= 0) & (peaks.indices < x.size))
        assert np.all(np.isfinite(x[peaks.indices]))


@pytest.mark.parametrize(
    ("kwargs", "key"),
    [
        ({"band_hz": (15.0, 5.0)}, "band_hz"),
        ({"lookahead_s": 0.0}, "lookahead_s"),
        ({"twave_s": 0.1}, "twave_s"),
        ({"r_search_s": (0.05, 0.25)}, "r_search_s"),
        ({"searchback_rr_factor": 1.0}, "searchback_rr_factor"),
        ({"max_gap_intervals": 1.0}, "max_gap_intervals"),
        ({"min_qrs_mv": float("nan")}, "min_qrs_mv"),
    ],
)
def test_config_validation_names_the_key(kwargs: dict[str, object], key: str) -> None:
    with pytest.raises(ConfigError) as excinfo:
        RPeakConfig(**kwargs)  # type: ignore[arg-type]
    assert excinfo.value.key == key


@pytest.mark.parametrize("fs_hz", [0.0, 20.0, float("nan"), 1e6])
def test_unsupported_rate_is_a_config_error(fs_hz: float) -> None:
    with pytest.raises(ConfigError, match="fs_hz"):
        RPeakDetector(fs_hz)


def test_reset_restarts_detection_and_reports_the_new_segment() -> None:
    fs_hz = 250.0
    ecg = synthetic_ecg(fs_hz=fs_hz, beat_times_s=_BEATS_S, duration_s=_DURATION_S)
    t = np.arange(ecg.size) / fs_hz
    detector = RPeakDetector(fs_hz)
    first = detector.push(t[:2500], ecg[:2500])
    assert detector.segment_starts_s == (0.0,)
    detector.push(t[2500:2600], ecg[2500:2600])
    assert detector.segment_starts_s == ()
    detector.reset()
    later = detector.push(t[2600:], ecg[2600:])
    assert detector.segment_starts_s == (t[2600],)
    assert first.indices.size >= 10
    # Beats right after the restart are still found (reported after the learning phase).
    truth_s = _BEATS_S[(t[2600] + 0.05 < _BEATS_S) & (_BEATS_S < _DURATION_S - 0.5)]
    missed, extra, _ = _match(later.times_s, truth_s, tolerance_s=0.05)
    assert (missed, extra) == (0, 0)


def test_out_of_range_samples_are_treated_as_unusable() -> None:
    fs_hz = 250.0
    ecg = synthetic_ecg(fs_hz=fs_hz, beat_times_s=_BEATS_S, duration_s=_DURATION_S)
    ecg[round(12.0 * fs_hz) : round(12.5 * fs_hz)] = 1e6  # unit error / rail noise
    detector = RPeakDetector(fs_hz)
    peaks = detector.push(np.arange(ecg.size) / fs_hz, ecg)
    assert detector.segment_starts_s == (0.0, 12.5)
    assert np.all(np.abs(ecg[peaks.indices]) < 10.0)

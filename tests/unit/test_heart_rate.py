"""HeartRateProcessor and BeatCorrector on synthetic ECG / beat series with known truth."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dsp.exceptions import ConfigError, SignalError
from dsp.heart_rate import (
    BeatCorrector,
    HeartRateConfig,
    HeartRateOutput,
    HeartRateProcessor,
    HrReason,
)
from dsp.types import GridSamples
from tests.unit.test_ecg_synthetic import regular_beats, synthetic_ecg

_FS_HZ = 250.0


def _run(x: np.ndarray, t: np.ndarray, cuts: list[int] | None = None) -> HeartRateOutput:
    """Push ``x`` (optionally cut into chunks) and concatenate everything that came out."""
    processor = HeartRateProcessor(_FS_HZ)
    bounds = [0, *sorted(cuts or []), x.size]
    outputs = [processor.push(t[a:b], x[a:b]) for a, b in itertools.pairwise(bounds)]
    return concat_outputs(outputs)


def concat_outputs(outputs: list[HeartRateOutput]) -> HeartRateOutput:
    """Everything several pushes returned, as if it came from one push."""
    hr = GridSamples(
        t_s=np.concatenate([o.hr.t_s for o in outputs]),
        values=np.concatenate([o.hr.values for o in outputs]),
        valid=np.concatenate([o.hr.valid for o in outputs]),
    )
    return HeartRateOutput(
        hr=hr,
        reasons=sum((o.reasons for o in outputs), ()),
        beats_t_s=np.concatenate([o.beats_t_s for o in outputs]),
        ibi_s=np.concatenate([o.ibi_s for o in outputs]),
        ibi_valid=np.concatenate([o.ibi_valid for o in outputs]),
    )


def _true_hr(beats_s: np.ndarray, grid_s: np.ndarray) -> np.ndarray:
    """Instantaneous HR of the true beats, linearly interpolated (what the grid should show)."""
    return np.interp(grid_s, beats_s[1:], 60.0 / np.diff(beats_s))


def _assert_grid_is_contiguous(out: HeartRateOutput, grid_hz: float = 4.0) -> None:
    k = np.round(out.hr.t_s * grid_hz).astype(np.int64)
    np.testing.assert_array_equal(out.hr.t_s, k / grid_hz)
    assert np.all(np.diff(k) == 1)
    assert len(out.reasons) == len(out.hr)
    assert all((r is None) == v for r, v in zip(out.reasons, out.hr.valid, strict=True))
    assert np.all(np.isnan(out.hr.values[~out.hr.valid]))


_DURATION_S = 60.0
_BEATS_S = regular_beats(hr_bpm=72.0, duration_s=_DURATION_S, jitter_s=0.03, seed=5)
_ECG = synthetic_ecg(fs_hz=_FS_HZ, beat_times_s=_BEATS_S, duration_s=_DURATION_S)
_T = 1000.0 + np.arange(_ECG.size) / _FS_HZ  # LSL clocks do not start at 0
_TRUE_BEATS_S = 1000.0 + _BEATS_S


def test_clean_ecg_gives_the_true_heart_rate_on_the_grid() -> None:
    out = _run(_ECG, _T)
    _assert_grid_is_contiguous(out)
    assert out.hr.t_s[0] <= _T[0] + 0.25
    # Everything up to the second-to-last beat is final (the last one awaits its successor).
    assert out.hr.t_s[-1] >= _TRUE_BEATS_S[-2] - 0.25
    # Valid from the second beat after the learning phase to the end.
    settled = out.hr.t_s > _T[0] + 4.0
    assert np.all(out.hr.valid[settled])
    truth = _true_hr(_TRUE_BEATS_S, out.hr.t_s[settled])
    assert np.max(np.abs(out.hr.values[settled] - truth)) < 1.5
    np.testing.assert_allclose(
        out.beats_t_s[out.ibi_valid][-20:], _TRUE_BEATS_S[-21:-1], atol=0.008
    )


_GARBAGE_BEATS_S = regular_beats(hr_bpm=80.0, duration_s=30.0, seed=8)


def _garbage_ecg() -> tuple[np.ndarray, np.ndarray]:
    """30 s of ECG with a flat stretch, a NaN burst and a timestamp gap."""
    x = synthetic_ecg(fs_hz=_FS_HZ, beat_times_s=_GARBAGE_BEATS_S, duration_s=30.0)
    t = 50.0 + np.arange(x.size) / _FS_HZ
    x[round(8 * _FS_HZ) : round(11 * _FS_HZ)] = 0.2  # flat: electrode off
    x[round(15 * _FS_HZ) : round(15.2 * _FS_HZ)] = np.nan
    t[round(22 * _FS_HZ) :] += 5.0  # five seconds without samples
    return x, t


_GARBAGE_X, _GARBAGE_T = _garbage_ecg()
_GARBAGE_ONE_SHOT = _run(_GARBAGE_X, _GARBAGE_T)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cuts=st.lists(st.integers(min_value=0, max_value=_GARBAGE_X.size), max_size=30, unique=True))
def test_any_chunking_gives_exactly_the_one_shot_output(cuts: list[int]) -> None:
    chunked = _run(_GARBAGE_X, _GARBAGE_T, cuts)
    one_shot = _GARBAGE_ONE_SHOT
    np.testing.assert_array_equal(chunked.hr.t_s, one_shot.hr.t_s)
    np.testing.assert_array_equal(chunked.hr.values, one_shot.hr.values)
    np.testing.assert_array_equal(chunked.hr.valid, one_shot.hr.valid)
    assert chunked.reasons == one_shot.reasons
    np.testing.assert_array_equal(chunked.beats_t_s, one_shot.beats_t_s)
    np.testing.assert_array_equal(chunked.ibi_s, one_shot.ibi_s)


def _reasons_between(out: HeartRateOutput, start_s: float, stop_s: float) -> set[HrReason | None]:
    inside = (out.hr.t_s >= start_s) & (out.hr.t_s < stop_s)
    return {r for r, keep in zip(out.reasons, inside, strict=True) if keep}


def test_flat_line_nan_and_gap_are_flagged_and_never_bridged() -> None:
    out = _GARBAGE_ONE_SHOT
    _assert_grid_is_contiguous(out)
    assert _reasons_between(out, 59.2, 59.9) == {HrReason.FLAT_LINE}  # window all flat
    # Where the quality window straddles the edge, a constant at the window's extreme looks
    # like clipping; either way it is flagged.
    edge = {HrReason.FLAT_LINE, HrReason.SATURATION, HrReason.NO_BEATS}
    assert _reasons_between(out, 58.0, 61.0) <= edge
    assert HrReason.INVALID_SAMPLES in _reasons_between(out, 65.0, 65.2)
    assert _reasons_between(out, 72.5, 76.5) == {HrReason.GAP}
    # Never bridged: no heart rate between the last true beat before each problem and the
    # first true beat after it.
    true_beats_s = 50.0 + _GARBAGE_BEATS_S + np.where(_GARBAGE_BEATS_S >= 22.0, 5.0, 0.0)
    for start_s, stop_s in ((58.0, 61.0), (65.0, 65.2), (72.0, 77.0)):
        before_s = true_beats_s[true_beats_s < start_s][-1]
        after_s = true_beats_s[true_beats_s > stop_s][0]
        assert not np.any(out.hr.valid[(out.hr.t_s > before_s) & (out.hr.t_s < after_s)])
    # ... and the heart rate comes back after each.
    for start_s, stop_s in ((62.5, 63.9), (66.5, 70.5), (78.5, 82.0)):
        assert np.all(out.hr.valid[(out.hr.t_s >= start_s) & (out.hr.t_s < stop_s)])


def test_output_keeps_flowing_during_a_flat_line() -> None:
    processor = HeartRateProcessor(_FS_HZ)
    n_good = round(20 * _FS_HZ)
    processor.push(_T[:n_good], _ECG[:n_good])
    newest_s = _T[n_good - 1]
    for second in range(15):
        t = newest_s + (np.arange(round(_FS_HZ)) + 1) / _FS_HZ
        out = processor.push(t, np.full(t.size, 0.5))
        newest_s = float(t[-1])
        if second >= 4:
            assert out.hr.t_s[-1] >= newest_s - 3.0
            assert set(out.reasons) == {HrReason.FLAT_LINE}


def test_clipped_signal_is_flagged_as_saturation() -> None:
    x = np.minimum(_ECG, 0.05)  # amplifier rail just above the baseline
    out = _run(x, _T)
    assert np.mean([r == HrReason.SATURATION for r in out.reasons]) > 0.8


def test_an_ectopic_beat_is_corrected_and_heart_rate_stays_valid() -> None:
    beats_s = np.arange(0.5, 40.0, 0.8)
    beats_s[30] -= 0.3  # premature beat with compensatory pause
    x = synthetic_ecg(fs_hz=_FS_HZ, beat_times_s=beats_s, duration_s=40.5)
    out = _run(x, np.arange(x.size) / _FS_HZ)
    around = (out.hr.t_s > beats_s[28]) & (out.hr.t_s < beats_s[33])
    assert np.all(out.hr.valid[around])
    np.testing.assert_allclose(out.hr.values[around], 75.0, atol=2.0)


def test_a_long_pause_is_implausible_not_interpolated() -> None:
    beats_s = np.concatenate([np.arange(0.5, 20.0, 0.8), np.arange(24.5, 40.0, 0.8)])
    x = synthetic_ecg(fs_hz=_FS_HZ, beat_times_s=beats_s, duration_s=40.5)
    out = _run(x, np.arange(x.size) / _FS_HZ)
    pause = (out.hr.t_s > 19.8) & (out.hr.t_s < 24.4)
    assert not np.any(out.hr.valid[pause])
    assert np.all(out.hr.valid[(out.hr.t_s > 27.0) & (out.hr.t_s < 37.0)])


def _correct(
    beats_s: np.ndarray, similar: np.ndarray | None = None
) -> list[tuple[float, float, HrReason | None]]:
    corrector = BeatCorrector(HeartRateConfig())
    points = []
    for i, beat_s in enumerate(beats_s):
        flag = True if similar is None else bool(similar[i])
        points.extend(corrector.add(float(beat_s), similar=flag))
    return [(p.t_s, p.ibi_s, p.reason) for p in points]


_RNG = np.random.default_rng(11)
_REGULAR_S = np.cumsum(0.8 + 0.02 * _RNG.standard_normal(60))


def test_corrector_passes_a_regular_series_unchanged() -> None:
    points = _correct(_REGULAR_S)
    np.testing.assert_array_equal([p[0] for p in points], _REGULAR_S[1:-1])
    np.testing.assert_allclose([p[1] for p in points], np.diff(_REGULAR_S)[:-1])
    assert all(p[2] is None for p in points)


def test_corrector_removes_an_extra_beat() -> None:
    extra_s = 0.5 * (_REGULAR_S[30] + _REGULAR_S[31]) - 0.15
    beats_s = np.sort(np.append(_REGULAR_S, extra_s))
    times = [p[0] for p in _correct(beats_s)]
    assert extra_s not in times
    np.testing.assert_array_equal(times, _REGULAR_S[1:-1])


def test_corrector_inserts_a_missed_beat() -> None:
    beats_s = np.delete(_REGULAR_S, 30)
    points = _correct(beats_s)
    inserted = [p for p in points if _REGULAR_S[29] < p[0] < _REGULAR_S[31]]
    assert len(inserted) == 1
    assert abs(inserted[0][0] - _REGULAR_S[30]) < 0.05
    assert all(p[2] is None for p in points)


def test_corrector_flags_intervals_of_dissimilar_beats() -> None:
    similar = np.ones(_REGULAR_S.size, dtype=bool)
    similar[20] = False
    reasons = {p[0]: p[2] for p in _correct(_REGULAR_S, similar)}
    assert reasons[float(_REGULAR_S[20])] == HrReason.ARTEFACT
    assert reasons[float(_REGULAR_S[21])] == HrReason.ARTEFACT
    assert reasons[float(_REGULAR_S[23])] is None


def test_corrector_flags_implausible_rates() -> None:
    fast_s = np.cumsum(np.full(20, 0.2))  # 300 bpm
    assert {p[2] for p in _correct(fast_s)} == {HrReason.IMPLAUSIBLE_HR}


def test_corrector_withholds_a_noisy_stretch() -> None:
    beats_s = _REGULAR_S.copy()
    beats_s[30:45] += _RNG.uniform(-0.3, 0.3, 15)  # beats all over the place
    points = _correct(np.sort(beats_s))
    noisy = [p for p in points if beats_s[34] < p[0] < beats_s[44]]
    assert noisy and all(p[2] is not None for p in noisy)


def test_non_increasing_timestamps_raise_and_leave_state_intact() -> None:
    processor = HeartRateProcessor(_FS_HZ)
    processor.push(_T[:1000], _ECG[:1000])
    with pytest.raises(SignalError, match="strictly increase"):
        processor.push(_T[500:600], _ECG[500:600])
    reference = HeartRateProcessor(_FS_HZ)
    first = reference.push(_T[:1000], _ECG[:1000])
    assert len(first.hr) >= 0
    a = processor.push(_T[1000:5000], _ECG[1000:5000])
    b = reference.push(_T[1000:5000], _ECG[1000:5000])
    np.testing.assert_array_equal(a.hr.values, b.hr.values)
    assert a.reasons == b.reasons


def test_empty_chunks_return_empty_output() -> None:
    out = HeartRateProcessor(_FS_HZ).push(np.empty(0), np.empty(0))
    assert len(out.hr) == 0 and out.reasons == () and out.beats_t_s.size == 0


@settings(max_examples=25, deadline=None)
@given(
    values=st.lists(st.floats(allow_nan=True, allow_infinity=True, width=64), max_size=800),
    cut=st.integers(min_value=0, max_value=800),
)
def test_garbage_values_never_crash_and_never_give_implausible_rates(
    values: list[float], cut: int
) -> None:
    x = np.asarray(values, dtype=np.float64)
    t = np.arange(x.size) / 130.0
    processor = HeartRateProcessor(130.0)
    with np.errstate(all="ignore"):
        outs = [processor.push(t[:cut], x[:cut]), processor.push(t[cut:], x[cut:])]
    for out in outs:
        valid = out.hr.values[out.hr.valid]
        assert np.all((valid >= 30.0) & (valid <= 220.0))


@pytest.mark.parametrize(
    ("kwargs", "key"),
    [
        ({"min_hr_bpm": 250.0}, "min_hr_bpm"),
        ({"max_bridge_s": 0.0}, "max_bridge_s"),
        ({"history_beats": 2}, "history_beats"),
        ({"saturation_fraction": 1.5}, "saturation_fraction"),
        ({"max_irregular_beats": 8}, "max_irregular_beats"),
        ({"flat_ptp_mv": float("inf")}, "flat_ptp_mv"),
    ],
)
def test_config_validation_names_the_key(kwargs: dict[str, object], key: str) -> None:
    with pytest.raises(ConfigError) as excinfo:
        HeartRateConfig(**kwargs)  # type: ignore[arg-type]
    assert excinfo.value.key == key


def test_bad_grid_rate_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="grid_hz"):
        HeartRateProcessor(_FS_HZ, grid_hz=0.0)

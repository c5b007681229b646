"""Windowed lagged cross-correlation: streaming == batch == a direct per-window computation."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dsp.exceptions import ConfigError, SignalError
from dsp.types import BoolArray, FloatArray
from dsp.xcorr import (
    LaggedComoments,
    StreamingCrossCorrelation,
    best_lag_per_row,
    fisher_z_capped,
    windowed_cross_correlation,
)


def direct_table(
    a: FloatArray, b: FloatArray, *, win: int, lag: int, inc: int, valid: BoolArray | None = None
) -> FloatArray:
    """Pearson r per window and lag straight from rMEA's definition (np.corrcoef, no sums).

    NaN where a pair is invalid or a side is constant, as the module documents.
    """
    flagged = np.ones(a.size, dtype=bool) if valid is None else valid
    ok_a = np.isfinite(a) & flagged
    ok_b = np.isfinite(b) & flagged
    n_windows = max(0, -(-(a.size - win - lag + 1) // inc))
    out = np.full((n_windows, 2 * lag + 1), np.nan)
    for w in range(n_windows):
        start = w * inc
        for j, k in enumerate(range(-lag, lag + 1)):
            ia = start + max(-k, 0) + np.arange(win)
            ib = start + max(k, 0) + np.arange(win)
            if not (ok_a[ia].all() and ok_b[ib].all()):
                continue
            x, y = a[ia], b[ib]
            if np.ptp(x) == 0 or np.ptp(y) == 0:
                continue
            out[w, j] = np.corrcoef(x, y)[0, 1]
    return out


def _chunks(n: int, cuts: list[int]) -> list[slice]:
    edges = [0, *sorted({c % (n + 1) for c in cuts}), n]
    return [slice(lo, hi) for lo, hi in itertools.pairwise(edges)]


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    n=st.integers(0, 160),
    win=st.integers(2, 20),
    lag=st.integers(0, 6),
    inc=st.integers(1, 25),
    cuts=st.lists(st.integers(0, 200), max_size=12),
    bad_fraction=st.sampled_from([0.0, 0.0, 0.02, 0.1]),
    recompute_every=st.sampled_from([1, 3, 64]),
)
def test_streaming_any_chunking_equals_batch_and_direct(
    seed: int,
    n: int,
    win: int,
    lag: int,
    inc: int,
    cuts: list[int],
    bad_fraction: float,
    recompute_every: int,
) -> None:
    rng = np.random.default_rng(seed)
    a = np.cumsum(rng.normal(size=n)) + 50.0
    b = 0.5 * np.roll(a, 2) + rng.normal(size=n) + 3.0
    valid = rng.uniform(size=n) >= bad_fraction
    a[rng.uniform(size=n) < bad_fraction / 2] = np.nan
    b[rng.uniform(size=n) < bad_fraction / 2] = np.inf
    fs_hz = 4.0
    expected = direct_table(a, b, win=win, lag=lag, inc=inc, valid=valid)

    def fresh() -> StreamingCrossCorrelation:
        return StreamingCrossCorrelation(
            fs_hz,
            window_s=win / fs_hz,
            lag_s=lag / fs_hz,
            step_s=inc / fs_hz,
            fisher_z=False,
            recompute_every=recompute_every,
        )

    stream = fresh()
    parts = [stream.push(a[s], b[s], valid=valid[s]) for s in _chunks(n, cuts)]
    streamed = np.vstack([p.values for p in parts])
    starts = np.concatenate([p.window_start_s for p in parts])

    batch = fresh().push(a, b, valid=valid)
    assert streamed.shape == expected.shape == batch.values.shape
    np.testing.assert_array_equal(np.isnan(streamed), np.isnan(expected))
    np.testing.assert_allclose(streamed, expected, atol=1e-9, rtol=0)
    np.testing.assert_array_equal(streamed, batch.values)  # bit-identical across chunkings
    np.testing.assert_allclose(starts, np.arange(expected.shape[0]) * inc / fs_hz)


def test_large_offset_long_series_stays_exact() -> None:
    """Heart-rate-like values (large mean, small variance) over many slides: no drift."""
    rng = np.random.default_rng(1)
    n = 6000
    a = 1e5 + np.cumsum(rng.normal(size=n)) * 0.01
    b = 1e5 + 0.3 * a + rng.normal(size=n) * 0.01
    ours = windowed_cross_correlation(
        a, b, 4.0, window_s=30.0, lag_s=5.0, step_s=0.25, fisher_z=False
    )
    expected = direct_table(a[:1200], b[:1200], win=120, lag=20, inc=1)
    np.testing.assert_allclose(ours.values[: expected.shape[0]], expected, atol=1e-9, rtol=0)
    tail = direct_table(a[-400:], b[-400:], win=120, lag=20, inc=1)
    np.testing.assert_allclose(ours.values[-tail.shape[0] :], tail, atol=1e-9, rtol=0)


def test_level_steps_inside_the_span_stay_exact_for_any_chunking() -> None:
    """Level jumps far larger than the spread (windows drift from the reference level):
    the drift test must fall back to exact sums, whatever the chunking (live grid: 4 Hz,
    window 30 s, lag 5 s, step 1 s)."""
    rng = np.random.default_rng(5)
    n = 800
    a = np.cumsum(rng.normal(size=n)) * 0.01 + np.where(np.arange(n) < 300, 0.0, 1e4)
    b = 0.5 * np.roll(a, 3) + rng.normal(size=n) * 0.01 + np.where(np.arange(n) < 500, 7e3, 0)

    def live() -> StreamingCrossCorrelation:
        return StreamingCrossCorrelation(4.0, window_s=30.0, lag_s=5.0, step_s=1.0, fisher_z=False)

    whole = live().push(a, b).values
    np.testing.assert_allclose(whole, direct_table(a, b, win=120, lag=20, inc=4), atol=1e-9)
    stream = live()
    parts = [stream.push(a[i : i + 4], b[i : i + 4]).values for i in range(0, n, 4)]
    np.testing.assert_array_equal(np.vstack(parts), whole)


@pytest.mark.parametrize("gap_n", [1, 7, 400])
def test_skip_equals_appending_unusable_samples(gap_n: int) -> None:
    """A gap skipped without materialising it gives the same correlations as the same
    samples appended as invalid, before and after the gap has left the span."""
    rng = np.random.default_rng(gap_n)
    n = 300 + gap_n + 300
    a, b = rng.normal(size=n), rng.normal(size=n)
    skipped = LaggedComoments(window_n=40, lag_n=8, max_slide_n=4)
    flagged = LaggedComoments(window_n=40, lag_n=8, max_slide_n=4)
    valid = np.ones(n, dtype=bool)
    valid[300 : 300 + gap_n] = False
    for lo in range(0, n, 4):
        hi = min(lo + 4, n)
        flagged.append(a[lo:hi], b[lo:hi], valid[lo:hi])
        if lo < 300 or lo >= 300 + gap_n:
            skipped.append(a[lo:hi], b[lo:hi], valid[lo:hi])
        else:
            skipped.skip(hi - lo)
        r_skipped, r_flagged = skipped.correlations(), flagged.correlations()
        np.testing.assert_array_equal(np.isnan(r_skipped), np.isnan(r_flagged))
        np.testing.assert_allclose(r_skipped, r_flagged, atol=1e-12, rtol=0)
    assert np.isfinite(r_skipped).all()  # the span has left the gap


def test_positive_lag_means_b_follows_a() -> None:
    rng = np.random.default_rng(2)
    a = rng.normal(size=400)
    b = np.concatenate([np.zeros(3), a[:-3]]) + 0.1 * rng.normal(size=400)  # b = a delayed 3
    cc = windowed_cross_correlation(a, b, 1.0, window_s=100.0, lag_s=5.0, step_s=50.0)
    assert np.all(cc.summaries().best_lag_s == 3.0)
    assert np.all(cc.summaries().a_leads > cc.summaries().b_leads)


def test_fisher_cap_and_absolute() -> None:
    a = np.arange(40, dtype=np.float64)
    cc = windowed_cross_correlation(a, -a, 1.0, window_s=10.0, lag_s=0.0, step_s=10.0)
    np.testing.assert_array_equal(cc.values, -10.0)  # r = -1 -> z capped at -10 (rMEA)
    cc_abs = windowed_cross_correlation(
        a, -a, 1.0, window_s=10.0, lag_s=0.0, step_s=10.0, absolute=True, z_cap=4.0
    )
    np.testing.assert_array_equal(cc_abs.values, 4.0)
    assert fisher_z_capped(np.array([0.5]))[0] == pytest.approx(0.5493061443340549)


def test_constant_side_gives_nan_not_a_number() -> None:
    a = np.r_[np.full(20, 3.0), np.arange(20.0)]
    b = np.arange(40.0) ** 1.5
    cc = windowed_cross_correlation(
        a, b, 1.0, window_s=10.0, lag_s=0.0, step_s=10.0, fisher_z=False
    )
    assert np.isnan(cc.values[:2]).all()
    assert np.isfinite(cc.values[2:]).all()


def test_summaries_ignore_nan_like_rmea() -> None:
    values = np.array([[np.nan, 0.2, 0.5], [np.nan, np.nan, np.nan], [0.3, 0.3, 0.1]])
    lags = np.array([-1.0, 0.0, 1.0])
    np.testing.assert_array_equal(best_lag_per_row(values, lags), [1.0, np.nan, -1.0])


def test_empty_and_short_input() -> None:
    stream = StreamingCrossCorrelation(4.0, window_s=5.0, lag_s=1.0, step_s=1.0)
    assert stream.push(np.empty(0), np.empty(0)).values.shape == (0, 9)
    assert stream.push(np.ones(10), np.ones(10)).n_windows == 0


def test_bad_shapes_raise_signal_error() -> None:
    stream = StreamingCrossCorrelation(4.0, window_s=5.0, lag_s=1.0, step_s=1.0)
    with pytest.raises(SignalError, match="equal length"):
        stream.push(np.ones(3), np.ones(4))
    with pytest.raises(SignalError, match="valid"):
        stream.push(np.ones(3), np.ones(3), valid=np.ones(2, dtype=bool))


@pytest.mark.parametrize(
    ("kwargs", "key"),
    [
        ({"window_s": 5.1, "lag_s": 1.0, "step_s": 1.0}, "window_s"),
        ({"window_s": 5.0, "lag_s": 0.1, "step_s": 1.0}, "lag_s"),
        ({"window_s": 5.0, "lag_s": 1.0, "step_s": 0.0}, "step_s"),
        ({"window_s": 0.25, "lag_s": 1.0, "step_s": 1.0}, "window_s"),
        ({"window_s": 5.0, "lag_s": 1.0, "step_s": 1.0, "z_cap": 0.0}, "z_cap"),
    ],
)
def test_config_errors_name_the_key(kwargs: dict[str, float], key: str) -> None:
    with pytest.raises(ConfigError, match=key):
        StreamingCrossCorrelation(4.0, **kwargs)  # type: ignore[arg-type]

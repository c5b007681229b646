"""Surrogate null, live z / empirical p and SUSY's effect size against direct computations."""

from __future__ import annotations

import math

import numpy as np
import pytest

from dsp.exceptions import ConfigError
from dsp.significance import (
    ShiftedSurrogates,
    SurrogateConfig,
    SusyEffectSize,
    empirical_p,
    surrogate_z,
)
from dsp.types import FloatArray

FS_HZ = 4.0
WINDOW_N, LAG_N = 40, 4
CONFIG = SurrogateConfig(n_surrogates=19, min_shift_s=5.0, history_s=40.0, min_spacing_s=0.5)


def direct_extremes(
    a: FloatArray, b: FloatArray, shifts_n: list[int], *, fixed_is_a: bool
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Per shift: max / min / mean over lags of capped Fisher z, from np.corrcoef."""
    fixed, shifted = (a, b) if fixed_is_a else (b, a)
    n = a.size
    start = n - LAG_N - WINDOW_N
    window = fixed[start : start + WINDOW_N]
    peaks, troughs, means = [], [], []
    for shift in shifts_n:
        zs = []
        for lag in range(-LAG_N, LAG_N + 1):
            s = start - shift - lag
            other = shifted[s : s + WINDOW_N]
            r = np.corrcoef(window, other)[0, 1]
            zs.append(np.clip(np.arctanh(r), -10, 10))
        peaks.append(max(zs))
        troughs.append(min(zs))
        means.append(float(np.mean(zs)))
    return np.array(peaks), np.array(troughs), np.array(means)


def test_surrogate_extremes_equal_direct_correlations() -> None:
    rng = np.random.default_rng(3)
    n = int(CONFIG.history_s * FS_HZ)
    a = 70 + np.cumsum(rng.normal(size=n))
    b = 80 + np.cumsum(rng.normal(size=n))
    null = ShiftedSurrogates(window_n=WINDOW_N, lag_n=LAG_N, fs_hz=FS_HZ, config=CONFIG).extremes(
        a, b
    )
    # Shifts documented in the module: spread evenly from min_shift to the longest that fits.
    min_shift = 20
    max_shift = n - WINDOW_N - 2 * LAG_N
    first = [min_shift + round(j * (max_shift - min_shift) / 9) for j in range(10)]
    second = first[:9]
    expected = [
        np.concatenate([x, y])
        for x, y in zip(
            direct_extremes(a, b, first, fixed_is_a=True),
            direct_extremes(a, b, second, fixed_is_a=False),
            strict=True,
        )
    ]
    np.testing.assert_allclose(null.peaks, expected[0], atol=1e-9)
    np.testing.assert_allclose(null.troughs, expected[1], atol=1e-9)
    np.testing.assert_allclose(null.means, expected[2], atol=1e-9)


def test_short_history_gives_no_null() -> None:
    surrogates = ShiftedSurrogates(window_n=WINDOW_N, lag_n=LAG_N, fs_hz=FS_HZ, config=CONFIG)
    short = np.arange(70, dtype=np.float64)
    null = surrogates.extremes(short, short[::-1].copy())
    assert np.isnan(null.peaks).all()
    assert not surrogates.enough(null.peaks)


def test_bad_samples_drop_only_the_surrogates_that_touch_them() -> None:
    rng = np.random.default_rng(4)
    n = int(CONFIG.history_s * FS_HZ)
    a, b = rng.normal(size=n), rng.normal(size=n)
    b[5] = np.nan  # oldest part of the history: only the largest shifts reach it
    surrogates = ShiftedSurrogates(window_n=WINDOW_N, lag_n=LAG_N, fs_hz=FS_HZ, config=CONFIG)
    null = surrogates.extremes(a, b)
    dropped = np.isnan(null.peaks)
    assert 0 < dropped.sum() < 10
    assert not dropped[10:].any()  # therapist-shifted half does not read b's old samples
    assert surrogates.enough(null.peaks)
    a_bad = a.copy()
    a_bad[-10] = np.inf  # inside the current window of a: the first half is gone
    null = surrogates.extremes(a_bad, b)
    assert np.isnan(null.peaks[:10]).all()


def test_empirical_p_and_z_by_hand() -> None:
    null = np.arange(99, dtype=np.float64)  # mean 49, sd sqrt(99*100/12)
    assert empirical_p(98.5, null) == pytest.approx(0.01)
    assert empirical_p(-1.0, null) == pytest.approx(1.0)
    assert empirical_p(49.0, null) == pytest.approx(51 / 100)
    assert surrogate_z(49.0 + math.sqrt(825.0), null) == pytest.approx(1.0)
    with_nan = np.r_[null, np.nan]
    assert empirical_p(98.5, with_nan) == pytest.approx(0.01)
    assert math.isnan(surrogate_z(1.0, np.full(5, 2.0)))  # zero spread: undefined
    assert math.isnan(empirical_p(math.nan, null))


def test_susy_effect_size_equals_pooled_formula() -> None:
    rng = np.random.default_rng(5)
    real = rng.normal(0.3, 0.1, size=50)
    pseudo = rng.normal(0.1, 0.2, size=(50, 19))
    pseudo[3, 4] = np.nan
    susy = SusyEffectSize()
    for r, p in zip(real, pseudo, strict=True):
        susy.add(float(r), p)
    pooled = pseudo[np.isfinite(pseudo)]
    expected = (real.mean() - pooled.mean()) / pooled.std(ddof=1)
    assert susy.effect_size() == pytest.approx(expected, rel=1e-12)
    assert math.isnan(SusyEffectSize().effect_size())


@pytest.mark.parametrize(
    ("kwargs", "key"),
    [
        ({"n_surrogates": 10}, "n_surrogates"),
        ({"min_shift_s": -1.0}, "min_shift_s"),
        ({"history_s": math.inf}, "history_s"),
        ({"min_valid_fraction": 0.0}, "min_valid_fraction"),
    ],
)
def test_config_errors(kwargs: dict[str, float], key: str) -> None:
    with pytest.raises(ConfigError, match=key):
        SurrogateConfig(**kwargs)  # type: ignore[arg-type]


def test_history_too_short_for_the_surrogates_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="history_s"):
        ShiftedSurrogates(window_n=120, lag_n=20, fs_hz=4.0, config=SurrogateConfig(history_s=60.0))

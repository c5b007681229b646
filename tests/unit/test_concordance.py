"""Marci concordance index: slopes, running correlations, log ratio — against np.polyfit."""

from __future__ import annotations

import math

import numpy as np
import pytest

from dsp.concordance import ConcordanceConfig, StreamingConcordance, concordance_index
from dsp.exceptions import ConfigError
from dsp.types import FloatArray

FS_HZ = 4.0


def direct_ci(a: FloatArray, b: FloatArray) -> tuple[FloatArray, float]:
    """CI after each 1 s step and the SSI, straight from Marci et al.'s recipe."""
    slope_n, corr_n, index_n, clip = 20, 15, 60, 5.0
    t = np.arange(slope_n) / FS_HZ
    slopes: list[tuple[float, float]] = []
    rs: list[float] = []
    ci: list[float] = []
    for end in range(3, a.size, 4):
        if end < slope_n - 1:
            continue
        seg = slice(end - slope_n + 1, end + 1)
        if np.isfinite(a[seg]).all() and np.isfinite(b[seg]).all():
            slopes.append((np.polyfit(t, a[seg], 1)[0], np.polyfit(t, b[seg], 1)[0]))
        else:
            slopes.append((math.nan, math.nan))
        last = np.array(slopes[-corr_n:])
        ok = len(last) == corr_n and np.isfinite(last).all()
        rs.append(float(np.corrcoef(last[:, 0], last[:, 1])[0, 1]) if ok else math.nan)
        window = np.array(rs[-index_n:])
        window = window[np.isfinite(window)]
        if window.size * 2 < index_n:
            ci.append(math.nan)
        else:
            ci.append(log_ratio(window[window > 0].sum(), window[window < 0].sum(), clip))
    all_r = np.array(rs)
    all_r = all_r[np.isfinite(all_r)]
    return np.array(ci), log_ratio(all_r[all_r > 0].sum(), all_r[all_r < 0].sum(), clip)


def log_ratio(positive: float, negative: float, clip: float) -> float:
    if negative == 0:
        return clip
    if positive == 0:
        return -clip
    return float(np.clip(np.log(positive / -negative), -clip, clip))


def test_ci_and_ssi_equal_the_direct_recipe() -> None:
    rng = np.random.default_rng(8)
    n = 4 * 240
    common = np.cumsum(rng.normal(size=n)) * 0.05
    a = 5 + common + np.cumsum(rng.normal(size=n)) * 0.05
    b = 7 + 0.5 * common + np.cumsum(rng.normal(size=n)) * 0.05
    a[400:410] = np.nan  # a gap in the middle: slopes, then correlations, go missing
    expected_ci, expected_ssi = direct_ci(a, b)
    result = concordance_index(a, b, FS_HZ)
    np.testing.assert_array_equal(np.isnan(result.ci), np.isnan(expected_ci))
    np.testing.assert_allclose(result.ci, expected_ci, atol=1e-9)
    assert result.ssi == pytest.approx(expected_ssi, abs=1e-9)
    np.testing.assert_allclose(
        result.t_s, (np.arange(5, n // 4 + 1) * 4 - 1) / FS_HZ
    )  # first: 20 samples
    assert np.isfinite(result.ci[-1]) and np.isnan(result.ci[:40]).all()


def test_identical_and_mirrored_signals_hit_the_clip() -> None:
    x = np.sin(np.arange(4 * 120) / 7.0) + np.arange(4 * 120) * 0.001
    assert concordance_index(x, 2 * x + 1, FS_HZ).ssi == 5.0
    assert concordance_index(x, -x, FS_HZ).ssi == -5.0


def test_flat_signal_has_no_index() -> None:
    x = np.sin(np.arange(4 * 120) / 7.0)
    result = concordance_index(x, np.ones_like(x), FS_HZ)
    assert np.isnan(result.ci).all()
    assert math.isnan(result.ssi)


def test_reset_forgets_slopes_but_not_the_session() -> None:
    stream = StreamingConcordance(FS_HZ, step_s=1.0, config=ConcordanceConfig(index_window_s=4.0))
    rng = np.random.default_rng(9)
    for _ in range(30):
        seg = rng.normal(size=20)
        stream.update(seg, seg + rng.normal(size=20) * 0.1)
    ssi = stream.ssi()
    assert ssi > 0
    stream.reset()
    assert math.isnan(stream.update(np.ones(20), np.ones(20)))
    assert stream.ssi() == ssi


@pytest.mark.parametrize(
    "key", ["slope_window_s", "correlation_window_s", "index_window_s", "clip"]
)
def test_config_errors(key: str) -> None:
    with pytest.raises(ConfigError, match=key):
        ConcordanceConfig(**{key: 0.0})

"""Marci's concordance index (CI) and single session index (SSI).

Marci, Ham, Moran & Orr 2007 (J. Nervous and Mental Disease 195(2):103-111) measured
therapist-patient skin-conductance concordance as follows, which this module reproduces on
the analysis grid:

1. the slope of each person's signal over a short window (``slope_window_s`` = 5 s), here
   re-estimated at every update (least squares over the window's grid samples);
2. the Pearson correlation of the two people's slopes over a running window
   (``correlation_window_s`` = 15 s, i.e. the last 15 slopes at 1 s steps);
3. ``CI = ln(sum of positive correlations / |sum of negative correlations|)`` over a
   stretch of session; over a whole session it is the SSI.

Live, the CI is taken over the trailing ``index_window_s`` (60 s, our choice: long enough to
hold 60 correlations, short enough to follow a session). The ratio explodes when one sum is
near zero, so the index is clipped to +-``clip`` (5: a 150:1 ratio; beyond it the ratio
reflects an empty sum, not stronger concordance).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from dsp.exceptions import ConfigError
from dsp.types import FloatArray
from dsp.validation import require_finite_positive
from dsp.xcorr import samples_in

__all__ = ["ConcordanceConfig", "ConcordanceResult", "StreamingConcordance", "concordance_index"]


@dataclass(frozen=True, slots=True, kw_only=True)
class ConcordanceConfig:
    """Windows of Marci et al. 2007 (5 s slopes, 15 s correlations) plus the live index window."""

    slope_window_s: float = 5.0
    correlation_window_s: float = 15.0
    index_window_s: float = 60.0
    clip: float = 5.0

    def __post_init__(self) -> None:
        require_finite_positive(
            self,
            ("slope_window_s", "correlation_window_s", "index_window_s", "clip"),
            section="concordance",
        )


def _log_ratio(positive_sum: float, negative_sum: float, clip: float) -> float:
    """ln(sum r+ / |sum r-|), clipped; NaN when both sums are zero."""
    if positive_sum <= 0 and negative_sum >= 0:
        return math.nan
    if negative_sum >= 0:
        return clip
    if positive_sum <= 0:
        return -clip
    return min(max(math.log(positive_sum / -negative_sum), -clip), clip)


class StreamingConcordance:
    """Updated once per step with each person's most recent ``slope_window_n`` samples."""

    __slots__ = (
        "_clip",
        "_correlations",
        "_n_updates",
        "_session_negative",
        "_session_positive",
        "_slope_weights",
        "_slopes",
    )

    def __init__(self, fs_hz: float, *, step_s: float, config: ConcordanceConfig) -> None:
        slope_n = samples_in(
            config.slope_window_s, fs_hz, key="concordance.slope_window_s", minimum=2
        )
        corr_n = int(round(config.correlation_window_s / step_s))
        index_n = int(round(config.index_window_s / step_s))
        if corr_n < 3 or index_n < 1:
            raise ConfigError(
                f"correlation_window_s={config.correlation_window_s} s must span >= 3 steps of "
                f"{step_s} s and index_window_s >= 1 step",
                key="concordance.correlation_window_s",
            )
        t = np.arange(slope_n) / fs_hz
        centred = t - t.mean()
        self._slope_weights = centred / float(centred @ centred)  # slope = weights @ x
        self._slopes = np.full((2, corr_n), np.nan)  # rows: a, b; column = update % corr_n
        self._correlations = np.full(index_n, np.nan)
        self._n_updates = 0
        self._clip = config.clip
        self._session_positive = 0.0
        self._session_negative = 0.0

    @property
    def slope_window_n(self) -> int:
        return int(self._slope_weights.shape[0])

    def update(self, a_recent: FloatArray, b_recent: FloatArray) -> float:
        """Add one step (NaN samples make this step's slope missing); return the live CI."""
        column = self._n_updates % self._slopes.shape[1]
        self._slopes[0, column] = float(self._slope_weights @ a_recent)
        self._slopes[1, column] = float(self._slope_weights @ b_recent)
        r = _pearson(self._slopes[0], self._slopes[1])
        self._correlations[self._n_updates % self._correlations.shape[0]] = r
        self._n_updates += 1
        if math.isfinite(r):
            if r > 0:
                self._session_positive += r
            else:
                self._session_negative += r
        window = self._correlations[np.isfinite(self._correlations)]
        if window.size * 2 < self._correlations.shape[0]:
            return math.nan  # less than half the index window holds correlations
        return _log_ratio(
            float(window[window > 0].sum()), float(window[window < 0].sum()), self._clip
        )

    def reset(self) -> None:
        """Forget slopes and correlations after a gap (the session sums are kept)."""
        self._slopes.fill(np.nan)
        self._correlations.fill(np.nan)

    def ssi(self) -> float:
        """Single session index: the CI over every correlation of the session so far."""
        return _log_ratio(self._session_positive, self._session_negative, self._clip)


def _pearson(x: FloatArray, y: FloatArray) -> float:
    if not (np.isfinite(x).all() and np.isfinite(y).all()):
        return math.nan
    xc = x - x.mean()
    yc = y - y.mean()
    denominator = math.sqrt(float(xc @ xc) * float(yc @ yc))
    return float(xc @ yc) / denominator if denominator > 0 else math.nan


@dataclass(frozen=True, slots=True)
class ConcordanceResult:
    """Live CI after each step (NaN until enough correlations) and the session's SSI."""

    t_s: FloatArray
    ci: FloatArray
    ssi: float


def concordance_index(
    a: FloatArray,
    b: FloatArray,
    fs_hz: float,
    *,
    step_s: float = 1.0,
    config: ConcordanceConfig | None = None,
) -> ConcordanceResult:
    """Batch CI/SSI of two aligned series (NaN = bad sample), one step every ``step_s``.

    Step ``k`` uses the samples ending at index ``(k + 1) * step_n - 1``; ``t_s`` is that
    sample's time from the first sample. Runs :class:`StreamingConcordance`.
    """
    config = config or ConcordanceConfig()
    step_n = samples_in(step_s, fs_hz, key="step_s", minimum=1)
    stream = StreamingConcordance(fs_hz, step_s=step_s, config=config)
    slope_n = stream.slope_window_n
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    ends = np.arange(step_n - 1, a.shape[0], step_n)
    ends = ends[ends >= slope_n - 1]
    ci = np.array(
        [stream.update(a[e - slope_n + 1 : e + 1], b[e - slope_n + 1 : e + 1]) for e in ends]
    )
    return ConcordanceResult(t_s=ends / fs_hz, ci=ci, ssi=stream.ssi())

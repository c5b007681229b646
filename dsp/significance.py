"""Is the observed synchrony above chance? A live surrogate null and SUSY's session effect size.

Surrogate design (live, cheap, documented choice)
-------------------------------------------------

A surrogate pairs one person's *current* window with the other person's window from
``D`` seconds earlier, ``D`` well beyond any lag searched (time-shifted pseudo-pairs; the
offline counterparts are circular shifts and segment shuffling, Moulder et al. 2018,
Psychological Methods 23(4); Ramseyer & Tschacher 2010). Whatever coupling exists between
the two people now cannot appear between "now" and "D seconds ago", while each person's own
dynamics (rate, variance, autocorrelation) are preserved, so the null has the right width.

Half of the ``n_surrogates`` keep the therapist's current window and shift the client's back,
the other half the reverse. The shifts ``D_j`` are spread evenly over the trailing history
(``min_shift_s`` to ``history_s - window - 2*lag``), so early in a session, while the history
is short, they are closer together; significance is withheld ("null warming up") until they
are at least ``min_spacing_s`` apart.

Each surrogate gets exactly the statistic the observed pair gets: the extreme Fisher z over
all lags ``-lag..+lag`` (maximum for in-phase coupling, minimum for anti-phase), so
searching over lags is accounted for. For a fixed current window, the correlations with the
other person's windows at *every* displacement are one sliding dot product
(:func:`numpy.correlate`) plus cumulative sums, recomputed from scratch at each update (exact,
no drift, no state to keep consistent across gaps): O(history x window) multiply-adds in
compiled code, a few tenths of a millisecond per update on the 4 Hz grid with 180 s of
history (``bench/synchrony.py`` measures the whole engine).

Live outputs: ``z = (observed - mean_null) / sd_null`` and the empirical
``p = (1 + #{null >= observed}) / (1 + M)`` (Davison & Hinkley 1997, eq. 4.11; North,
Curtis & Sham 2002), so M = 99 surrogates resolve p = 0.01 (Schreiber & Schmitz 2000).

Session effect size after SUSY (Tschacher & Meier 2020, "Surrogate Synchrony"):
``ES = (mean Z_real - mean Z_pseudo) / SD(Z_pseudo)`` with Z the all-lags mean Fisher z of a
window; :class:`SusyEffectSize` accumulates it over every update of a session.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from dsp.exceptions import ConfigError
from dsp.types import FloatArray, IntArray
from dsp.validation import require_finite_positive
from dsp.xcorr import CONSTANT_RELATIVE_VARIANCE, DEFAULT_Z_CAP, fisher_z_capped, window_sums

__all__ = [
    "NullExtremes",
    "ShiftedSurrogates",
    "SurrogateConfig",
    "SusyEffectSize",
    "empirical_p",
    "surrogate_z",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class SurrogateConfig:
    """How the live surrogate null is built (see the module docstring).

    ``n_surrogates`` (99): M >= 99 resolves p = 0.01 (Schreiber & Schmitz 2000).
    ``min_shift_s`` (20 s): smallest shift between the paired windows; with lags searched up
    to +-5 s, pairs stay >= 10 s apart beyond any searched lag, several autonomic time
    constants (HR and SCL arousal responses last seconds; Boucsein 2012).
    ``history_s`` (180 s): trailing history the shifted windows are taken from (three
    minutes: long enough for dozens of nearly independent 30 s windows, short enough to
    follow a session's changing baseline).
    ``min_spacing_s`` (0.5 s): while the history is short the shifts crowd together;
    significance waits until they are at least this far apart.
    ``min_valid_fraction`` (0.5): surrogates touching a gap or bad sample are dropped; with
    fewer than this fraction left there is no p-value.
    """

    n_surrogates: int = 99
    min_shift_s: float = 20.0
    history_s: float = 180.0
    min_spacing_s: float = 0.5
    min_valid_fraction: float = 0.5

    def __post_init__(self) -> None:
        if not (isinstance(self.n_surrogates, int) and self.n_surrogates >= 19):
            raise ConfigError(
                f"n_surrogates must be an integer >= 19 (p resolution 0.05), got "
                f"{self.n_surrogates!r}; use >= 99 for p = 0.01",
                key="surrogates.n_surrogates",
            )
        require_finite_positive(
            self, ("min_shift_s", "history_s", "min_spacing_s"), section="surrogates"
        )
        if not 0.0 < self.min_valid_fraction <= 1.0:
            raise ConfigError(
                f"min_valid_fraction must be in (0, 1], got {self.min_valid_fraction!r}",
                key="surrogates.min_valid_fraction",
            )


@dataclass(frozen=True, slots=True)
class NullExtremes:
    """Per surrogate: maximum, minimum and all-lags mean of Fisher z (NaN = dropped)."""

    peaks: FloatArray
    troughs: FloatArray
    means: FloatArray

    @staticmethod
    def unavailable(n: int) -> NullExtremes:
        nan = np.full(n, np.nan)
        return NullExtremes(peaks=nan, troughs=nan.copy(), means=nan.copy())


class ShiftedSurrogates:
    """Time-shifted surrogate pairs from the trailing history, recomputed at each update.

    Sample counts are on the analysis grid: windows of ``window_n`` samples, lags
    ``-lag_n..+lag_n``. :meth:`extremes` takes the chronological history (newest sample last)
    of both series with NaN where a sample is missing or bad.
    """

    __slots__ = (
        "_history_n",
        "_lag_n",
        "_min_shift_n",
        "_min_spacing_n",
        "_min_valid_n",
        "_n_first",
        "_n_second",
        "_window_n",
        "_z_cap",
    )

    def __init__(
        self,
        *,
        window_n: int,
        lag_n: int,
        fs_hz: float,
        config: SurrogateConfig,
        z_cap: float = DEFAULT_Z_CAP,
    ) -> None:
        self._window_n = window_n
        self._lag_n = lag_n
        self._z_cap = z_cap
        self._min_shift_n = max(int(round(config.min_shift_s * fs_hz)), lag_n + 1)
        self._min_spacing_n = max(1, int(round(config.min_spacing_s * fs_hz)))
        self._history_n = int(round(config.history_s * fs_hz))
        self._n_first = (config.n_surrogates + 1) // 2  # client shifted back
        self._n_second = config.n_surrogates // 2  # therapist shifted back
        self._min_valid_n = max(2, math.ceil(config.min_valid_fraction * config.n_surrogates))
        needed = window_n + 2 * lag_n + self._min_shift_n + self._min_spacing_n * self._n_first
        if self._history_n < needed:
            raise ConfigError(
                f"history_s={config.history_s!r} s is too short for {config.n_surrogates} "
                f"surrogates spaced >= {config.min_spacing_s} s beyond min_shift_s="
                f"{config.min_shift_s} s with this window and lag; it must be >= "
                f"{needed / fs_hz:g} s",
                key="surrogates.history_s",
            )

    @property
    def history_n(self) -> int:
        """Samples of history the full surrogate set needs."""
        return self._history_n

    @property
    def n_surrogates(self) -> int:
        return self._n_first + self._n_second

    def extremes(self, a_history: FloatArray, b_history: FloatArray) -> NullExtremes:
        """Null statistics for the newest window; unavailable (all NaN) while warming up.

        ``a_history``/``b_history``: equally long chronological arrays ending at the newest
        sample; at most :attr:`history_n` samples are used.
        """
        n = min(a_history.shape[0], self._history_n)
        max_shift_n = n - self._window_n - 2 * self._lag_n
        spread_n = max_shift_n - self._min_shift_n
        if spread_n < self._min_spacing_n * (self._n_first - 1):
            return NullExtremes.unavailable(self.n_surrogates)
        a = _WindowStats(a_history[-n:], self._window_n)
        b = _WindowStats(b_history[-n:], self._window_n)
        first = self._one_direction(a, b, self._shifts(spread_n, self._n_first))
        second = self._one_direction(b, a, self._shifts(spread_n, self._n_second))
        return NullExtremes(*(np.concatenate([x, y]) for x, y in zip(first, second, strict=True)))

    def _shifts(self, spread_n: int, count: int) -> IntArray:
        fractions = np.arange(count) / max(self._n_first - 1, 1)
        return self._min_shift_n + np.round(fractions * spread_n).astype(np.int64)

    def _one_direction(
        self, fixed: _WindowStats, shifted: _WindowStats, shifts: IntArray
    ) -> tuple[FloatArray, FloatArray, FloatArray]:
        """Keep ``fixed``'s window that ends ``lag_n`` before the newest sample (the one the
        observed positive lags use) and correlate it with ``shifted``'s windows displaced
        back by every ``shift + lag`` for lag in ``-lag_n..+lag_n``."""
        w, lag_n = self._window_n, self._lag_n
        start = fixed.values.shape[0] - lag_n - w  # window start index of the fixed window
        var_fixed = float(fixed.variance[start])
        if fixed.bad[start] > 0 or not var_fixed > 0:
            nan = np.full(shifts.shape[0], np.nan)
            return nan, nan.copy(), nan.copy()
        centred = fixed.values[start : start + w] - fixed.sums[start] / w
        # cov[i] = sum over the shifted window starting at i (its own mean drops out
        # because the fixed window is centred).
        cov = np.correlate(shifted.values, centred, mode="valid")
        usable = (shifted.bad == 0) & (shifted.variance > 0)
        r = np.full(cov.shape, np.nan)
        r[usable] = cov[usable] / np.sqrt(var_fixed * shifted.variance[usable])
        z = fisher_z_capped(r, self._z_cap)
        displacement = shifts[:, None] + np.arange(-lag_n, lag_n + 1)[None, :]
        table = z[start - displacement]
        return table.max(axis=1), table.min(axis=1), table.mean(axis=1)  # NaN propagates

    def enough(self, null: FloatArray) -> bool:
        """Whether enough surrogates survived for a p-value."""
        count = int(np.isfinite(null).sum())
        return count >= self._min_valid_n


class _WindowStats:
    """One series' history with NaN -> 0 (centred on its mean to avoid cancellation) and,
    for every window start ``i``, the window's sum, centred sum of squares and bad count."""

    __slots__ = ("bad", "sums", "values", "variance")

    def __init__(self, series: FloatArray, window_n: int) -> None:
        ok = np.isfinite(series)
        level = float(series[ok].mean()) if ok.any() else 0.0
        self.values = np.where(ok, series - level, 0.0)
        sums = window_sums(self.values, window_n)
        squares = window_sums(self.values * self.values, window_n)
        self.bad = window_sums((~ok).astype(np.float64), window_n)
        self.sums = sums
        variance = squares - sums * sums / window_n
        # Constant windows: the centred sum of squares is rounding noise, not variance.
        self.variance = np.where(variance > CONSTANT_RELATIVE_VARIANCE * squares, variance, 0.0)


def surrogate_z(observed: float, null: FloatArray) -> float:
    """``(observed - mean_null) / sd_null`` over the finite surrogates; NaN if undefined."""
    finite = null[np.isfinite(null)]
    if finite.size < 2 or not math.isfinite(observed):
        return math.nan
    sd = float(finite.std(ddof=1))
    return (observed - float(finite.mean())) / sd if sd > 0 else math.nan


def empirical_p(observed: float, null: FloatArray) -> float:
    """One-sided ``(1 + #{null >= observed}) / (1 + M)`` over the finite surrogates."""
    finite = null[np.isfinite(null)]
    if finite.size == 0 or not math.isfinite(observed):
        return math.nan
    return (1.0 + float(np.count_nonzero(finite >= observed))) / (1.0 + finite.size)


class SusyEffectSize:
    """Running SUSY effect size ``(mean Z_real - mean Z_pseudo) / SD(Z_pseudo)``.

    Welford's algorithm keeps mean and variance of all pseudo values without storing them.
    """

    __slots__ = ("_n_pseudo", "_n_real", "_pseudo_m2", "_pseudo_mean", "_real_sum")

    def __init__(self) -> None:
        self._n_real = 0
        self._real_sum = 0.0
        self._n_pseudo = 0
        self._pseudo_mean = 0.0
        self._pseudo_m2 = 0.0

    def add(self, real_z: float, pseudo_z: FloatArray) -> None:
        """One update: the observed all-lags mean z and the surrogates' (NaN ignored)."""
        if not math.isfinite(real_z):
            return
        pseudo = pseudo_z[np.isfinite(pseudo_z)]
        if pseudo.size == 0:
            return
        self._n_real += 1
        self._real_sum += real_z
        # Chan et al. parallel update of (count, mean, M2) with the new batch.
        batch_mean = float(pseudo.mean())
        batch_m2 = float(((pseudo - batch_mean) ** 2).sum())
        total = self._n_pseudo + pseudo.size
        delta = batch_mean - self._pseudo_mean
        self._pseudo_mean += delta * pseudo.size / total
        self._pseudo_m2 += batch_m2 + delta * delta * self._n_pseudo * pseudo.size / total
        self._n_pseudo = total

    def effect_size(self) -> float:
        if self._n_real == 0 or self._n_pseudo < 2:
            return math.nan
        sd = math.sqrt(self._pseudo_m2 / (self._n_pseudo - 1))
        if sd == 0:
            return math.nan
        return (self._real_sum / self._n_real - self._pseudo_mean) / sd

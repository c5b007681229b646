"""Windowed lagged cross-correlation (Boker et al. 2002), batch and incremental.

Conventions are rMEA's (Kleinbub & Ramseyer, rMEA 1.3.0, ``MEAccf``), so numbers can be
compared with published motion-energy and physiology studies:

* window ``w`` covers samples ``[w*inc, w*inc + win + lag)`` of both series;
* at lag ``+k`` samples the correlation pairs ``a[0:win]`` with ``b[k:k+win]`` (relative to
  the window start), at lag ``-k`` it pairs ``a[k:k+win]`` with ``b[0:win]``; so a **positive
  lag means b follows a** (rMEA: "high sync at positive lags implies that s2 follows s1");
* Fisher's ``z = atanh(r)`` capped at +-``z_cap`` (rMEA caps at 10), then optionally ``|z|``;
* ``n_windows = ceil((N - win - lag + 1) / inc)``.

Difference from rMEA on missing data: rMEA computes a window from the complete pairs while at
most half of it is missing; we never estimate from a partial window. A correlation is NaN when
any of its ``win`` pairs is invalid (NaN, inf, beyond +-1e100, or flagged ``valid=False``) or
when either side is constant, because a live display must say "no estimate" rather than show
a number built from part of the data.

Incremental algorithm (:class:`LaggedComoments`): for every lag it keeps the running sum of
cross products of the ``win`` pairs, with both series shifted by a reference level to avoid
cancellation (Chan, Golub & LeVeque 1983, "Algorithms for computing the sample variance").
Moving the window by ``s`` samples adds ``s`` pairs and removes ``s`` pairs per lag, and
updates each series' window sums by running differences: O(lags) work per new sample.
Every ``recompute_every`` updates, whenever the window jumped further than it can slide,
and whenever the reference level has drifted far from a window's mean, the sums are
recomputed exactly from the buffer, which bounds floating-point drift. Updates happen at
fixed sample indices, so the result is bit-for-bit identical whatever the input chunking.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from dsp.exceptions import ConfigError, SignalError
from dsp.sliding_buffer import SlidingBuffer
from dsp.types import BoolArray, FloatArray

__all__ = [
    "CrossCorrelation",
    "LaggedComoments",
    "StreamingCrossCorrelation",
    "WindowSummaries",
    "fisher_z_capped",
    "samples_in",
    "usable_values",
    "windowed_cross_correlation",
]

# rMEA's cap on Fisher's z (``fisher.r2z`` in rMEA_ccf.R): atanh(+-1) is infinite.
DEFAULT_Z_CAP = 10.0
# Exact recompute period, in updates. Drift of the sliding sums grows ~ sqrt(updates) * eps *
# (sum of squares); 64 keeps it below 1e-12 relative for physiological series at no
# measurable cost (one exact pass per 64 slides).
DEFAULT_RECOMPUTE_EVERY = 64
# Recompute exactly when a window's squared mean offset from the reference level exceeds
# this multiple of its variance: keeps the relative error of r near 1e-16 * 1e4.
_MAX_DRIFT = 1e4
# Largest magnitude accepted as a sample value (see usable_values).
_MAX_ABS_VALUE = 1e100
# A side whose centred sum of squares is below this fraction of its raw (shifted) sum of
# squares is treated as constant: its correlation would be rounding noise.
_CONSTANT_RELATIVE_VARIANCE = 1e-12


def samples_in(seconds: float, fs_hz: float, *, key: str, minimum: int = 0) -> int:
    """``seconds * fs_hz`` as an integer count of samples; ConfigError if it is not whole.

    rMEA multiplies seconds by the sampling rate and uses the result as an index, so
    durations must be whole numbers of samples to reproduce it.
    """
    if not (math.isfinite(fs_hz) and fs_hz > 0):
        raise ConfigError(f"sampling rate must be finite and > 0 Hz, got {fs_hz!r}", key="fs_hz")
    if not math.isfinite(seconds):
        raise ConfigError(f"{key} must be finite, got {seconds!r}", key=key)
    exact = seconds * fs_hz
    count = round(exact)
    if abs(exact - count) > 1e-6 * max(1.0, abs(exact)) or count < minimum:
        raise ConfigError(
            f"{key}={seconds!r} s at {fs_hz!r} Hz is {exact!r} samples; it must be a whole "
            f"number of samples >= {minimum}",
            key=key,
        )
    return int(count)


def usable_values(x: FloatArray) -> BoolArray:
    """Finite and small enough that sums of squares over a window cannot overflow float64;
    anything else (NaN, inf, |x| > 1e100: no physiological signal) counts as bad signal."""
    return np.abs(x) <= _MAX_ABS_VALUE  # False for NaN and inf


def fisher_z_capped(r: FloatArray, z_cap: float = DEFAULT_Z_CAP) -> FloatArray:
    """Fisher's z = atanh(r), capped at +-z_cap as rMEA does (r = +-1 gives +-z_cap)."""
    with np.errstate(divide="ignore"):
        z = np.arctanh(np.clip(r, -1.0, 1.0))
    return np.clip(z, -z_cap, z_cap)


class LaggedComoments:
    """Co-moments of the rMEA window pairs at every lag, slid along a linear buffer.

    For the span of ``window_n + lag_n`` samples ending at the newest sample, lag ``+d``
    pairs a[0:win] with b[d:d+win] and lag ``-d`` pairs a[d:d+win] with b[0:win] (span
    coordinates). Append samples with :meth:`append` (or :meth:`skip` over a gap), then
    :meth:`correlations` gives Pearson r for lags ``-lag_n..+lag_n`` at the newest sample:
    NaN where a lag's a- or b-window touches an invalid sample, or a side is constant.

    Moving the span by ``s`` samples reads only the ``s + lag`` samples entering and the
    ``s + lag`` leaving: the cross products of every lag change by two short sliding dot
    products (:func:`numpy.correlate`), and the sums of a, a^2, b, b^2 and invalid counts
    of the ``lag + 1`` window starts by a running difference: O(lags + s) per update.
    """

    __slots__ = (
        "_buffer",
        "_cross",
        "_lag_n",
        "_picks",
        "_recompute_every",
        "_ref",
        "_since_exact",
        "_slide_limit",
        "_span_n",
        "_starts",
        "_state_end",
        "_window_n",
    )

    def __init__(
        self,
        *,
        window_n: int,
        lag_n: int,
        max_slide_n: int,
        recompute_every: int = DEFAULT_RECOMPUTE_EVERY,
    ) -> None:
        if window_n < 2 or lag_n < 0:
            raise ConfigError(
                f"window must hold >= 2 samples and lag >= 0, got {window_n}, {lag_n}",
                key="window_s",
            )
        if recompute_every < 1:
            raise ConfigError(
                f"recompute_every must be >= 1 update, got {recompute_every}",
                key="recompute_every",
            )
        self._window_n = window_n
        self._lag_n = lag_n
        self._span_n = window_n + lag_n
        # Sliding by s reads the s samples leaving the oldest window; beyond a whole window
        # an exact recompute is cheaper anyway.
        self._slide_limit = max(1, min(max_slide_n, window_n - 1))
        self._buffer = SlidingBuffer(
            n_rows=4,  # a, b, a usable (1/0), b usable (1/0)
            keep=self._span_n + self._slide_limit,
            max_append=self._span_n + max(max_slide_n, 1),
        )
        lags = np.arange(-lag_n, lag_n + 1)
        # Window sums are kept for the lag + 1 window starts of the span, in rows
        # (a, b, a^2, b^2, a bad, b bad); for each lag pick the a-window starting at
        # max(-d, 0) and the b-window at max(d, 0) (flat indices into that table).
        starts = np.where(np.arange(6)[:, None] % 2 == 0, np.maximum(-lags, 0), np.maximum(lags, 0))
        self._picks = np.arange(6)[:, None] * (lag_n + 1) + starts
        self._cross = np.zeros(lags.size)  # sum of shifted a*b over each lag's pairs
        self._starts = np.zeros((6, lag_n + 1))  # window sums per window start (see _picks)
        self._recompute_every = recompute_every
        self._since_exact = 0
        self._state_end = -1  # absolute index the cross sums describe; -1 = none
        self._ref = np.zeros((2, 1))  # reference level of a and b

    def append(self, a: FloatArray, b: FloatArray, valid: BoolArray) -> None:
        """Write contiguous samples; NaN/inf or ``valid=False`` make a sample unusable."""
        step = self._buffer.max_append
        for lo in range(0, a.shape[0], step):
            part = slice(lo, lo + step)
            ok = valid[part]
            rows = [a[part], b[part], ok & usable_values(a[part]), ok & usable_values(b[part])]
            self._buffer.append(np.vstack(rows))

    def skip(self, n: int) -> None:
        """Advance by ``n`` missing samples (a gap) without materialising them."""
        self._buffer.skip_to(self._buffer.end_index + n)

    def correlations(self) -> FloatArray:
        """Pearson r for lags -lag..+lag of the span ending at the newest sample."""
        end = self._buffer.end_index - 1
        delta = end - self._state_end
        if (
            self._state_end < 0
            or delta > self._slide_limit
            or self._since_exact >= self._recompute_every
            or not np.isfinite(self._cross).all()
            or end - self._span_n + 1 - delta < self._buffer.oldest_index
        ):
            return self._exact(end)
        if delta > 0:
            self._slide(end, delta)
        r, drifted = self._pearson()
        return self._exact(end) if drifted.any() else r

    def _slide(self, end: int, delta: int) -> None:
        """Move the span end by ``delta`` reading only the 2 x (delta + lag) samples that
        enter and leave: O(lag + delta)."""
        w, lag_n = self._window_n, self._lag_n
        old_start = end - delta - self._span_n + 1
        leaving = self._region(old_start, old_start + delta + lag_n)
        entering = self._region(old_start + w, end + 1)
        self._cross += self._cross_products(entering[:2], delta)
        self._cross -= self._cross_products(leaving[:2], delta)
        # Window sums per window start: each next start adds the sample entering at its
        # end and drops the one leaving at its start.
        chain = self._starts[:, -1:] + np.cumsum(entering[:, lag_n:] - leaving[:, lag_n:], axis=1)
        self._starts = np.concatenate([self._starts[:, delta:], chain], axis=1)[:, -(lag_n + 1) :]
        self._since_exact += 1
        self._state_end = end

    def _exact(self, end: int) -> FloatArray:
        first = end - self._span_n + 1
        if first < self._buffer.oldest_index:  # a gap longer than the buffer: no data
            self._state_end = -1
            return np.full(self._cross.shape, np.nan)
        self._ref = self._levels(first, end + 1)
        rows = self._region(first, end + 1)
        self._cross = self._cross_products(rows[:2], self._window_n)
        self._starts = _window_sums(rows, self._window_n)
        self._since_exact = 0
        self._state_end = end
        r, drifted = self._pearson()
        for lag_index in np.flatnonzero(drifted):
            # A window far from the span's mean relative to its own spread (a step inside
            # the span): centre it on its own mean, as a two-pass correlation does.
            r[lag_index] = self._two_pass(rows[:2], int(lag_index))
        return r

    def _levels(self, start: int, stop: int) -> FloatArray:
        """Mean of the usable samples of each series (shape (2, 1)): the shift that keeps
        the sums free of cancellation."""
        x, ok = self._rows(start, stop)
        count = ok.sum(axis=1)
        total = np.where(ok, x, 0.0).sum(axis=1)
        return np.divide(total, count, out=np.zeros(2), where=count > 0)[:, None]

    def _rows(self, start: int, stop: int) -> tuple[FloatArray, BoolArray]:
        view = self._buffer.view
        x = np.vstack([view(0, start, stop), view(1, start, stop)])
        ok = np.vstack([view(2, start, stop), view(3, start, stop)]) == 1.0  # gap: NaN
        return x, ok

    def _region(self, start: int, stop: int) -> FloatArray:
        """Rows a, b (minus their reference level, 0 where unusable), a^2, b^2, a bad, b bad."""
        x, ok = self._rows(start, stop)
        shifted = np.where(ok, x - self._ref, 0.0)
        return np.concatenate([shifted, shifted * shifted, ~ok])

    def _cross_products(self, x: FloatArray, n_pairs: int) -> FloatArray:
        """For lags -lag..+lag: the sum over m < n_pairs of a[m]*b[m+d] (d >= 0) or
        a[m+|d|]*b[m] (d < 0); the rows of ``x`` hold n_pairs + lag samples."""
        b_follows = np.correlate(x[1], x[0, :n_pairs], mode="valid")  # d = 0..lag
        a_follows = np.correlate(x[0], x[1, :n_pairs], mode="valid")  # |d| = 0..lag
        return np.concatenate([a_follows[:0:-1], b_follows])

    def _two_pass(self, x: FloatArray, lag_index: int) -> float:
        start_a, start_b = self._picks[0, lag_index], self._picks[1, lag_index] - (self._lag_n + 1)
        a = x[0, start_a : start_a + self._window_n]
        b = x[1, start_b : start_b + self._window_n]
        a = a - a.mean()
        b = b - b.mean()
        return float(np.clip((a @ b) / np.sqrt((a @ a) * (b @ b)), -1.0, 1.0))

    def _pearson(self) -> tuple[FloatArray, BoolArray]:
        """r per lag, and per lag whether the reference level is too far from the window's
        mean for the shifted sums to keep their precision."""
        n = float(self._window_n)
        picked = self._starts.ravel()[self._picks]
        sums, squares = picked[0:2], picked[2:4]
        var = squares - sums * sums / n
        cov = self._cross - sums[0] * sums[1] / n
        usable = (picked[4] + picked[5] < 0.5) & (var > _CONSTANT_RELATIVE_VARIANCE * squares).all(
            axis=0
        )
        r = np.divide(
            cov, np.sqrt(np.abs(var[0] * var[1])), out=np.full(cov.shape, np.nan), where=usable
        )
        # Rounding error of the shifted sums grows like eps * (level offset)^2 / variance.
        drifted = usable & (sums * sums > _MAX_DRIFT * n * var).any(axis=0)
        return np.clip(r, -1.0, 1.0), drifted


def _window_sums(rows: FloatArray, window_n: int) -> FloatArray:
    """Sum of every ``window_n``-long window of each row (column = window start)."""
    cumulative = np.zeros((rows.shape[0], rows.shape[1] + 1))
    np.cumsum(rows, axis=1, out=cumulative[:, 1:])
    return cumulative[:, window_n:] - cumulative[:, :-window_n]


@dataclass(frozen=True, slots=True)
class WindowSummaries:
    """rMEA's per-window aggregates (``ccfRes``), NaN-ignoring like rMEA (``na.rm=TRUE``).

    ``a_leads`` averages the positive lags (rMEA ``s1_lead``: b follows a), ``b_leads`` the
    negative lags (rMEA ``s2_lead``). ``best_lag_s`` is the lag of the first maximum (rMEA
    ``which.max``), NaN for a window without any value.
    """

    lag_zero: FloatArray
    all_lags: FloatArray
    a_leads: FloatArray
    b_leads: FloatArray
    best_lag_s: FloatArray


@dataclass(frozen=True, slots=True)
class CrossCorrelation:
    """Windows x lags matrix of r (or Fisher z, or |z|) with its axes.

    ``values[w, j]`` is window ``w`` (starting ``window_start_s[w]`` seconds after the first
    sample) at lag ``lags_s[j]``; positive lag = b follows a.
    """

    values: FloatArray
    lags_s: FloatArray
    window_start_s: FloatArray
    window_s: float
    fisher_z: bool
    absolute: bool

    @property
    def n_windows(self) -> int:
        return int(self.values.shape[0])

    def summaries(self) -> WindowSummaries:
        zero = int(np.flatnonzero(self.lags_s == 0.0)[0])
        return WindowSummaries(
            lag_zero=self.values[:, zero].copy(),
            all_lags=_nan_row_mean(self.values),
            a_leads=_nan_row_mean(self.values[:, zero + 1 :]),
            b_leads=_nan_row_mean(self.values[:, :zero]),
            best_lag_s=best_lag_per_row(self.values, self.lags_s),
        )


def _nan_row_mean(values: FloatArray) -> FloatArray:
    finite = np.isfinite(values)
    count = finite.sum(axis=1)
    total = np.where(finite, values, 0.0).sum(axis=1)
    out = np.full(values.shape[0], np.nan)
    np.divide(total, count, out=out, where=count > 0)
    return out


def best_lag_per_row(values: FloatArray, lags_s: FloatArray) -> FloatArray:
    """Lag of each row's first maximum ignoring NaN (rMEA ``which.max``); NaN if none."""
    filled = np.where(np.isfinite(values), values, -np.inf)
    best = np.argmax(filled, axis=1)
    has_value = np.isfinite(values).any(axis=1)
    return np.where(has_value, lags_s[best], np.nan)


class StreamingCrossCorrelation:
    """Incremental windowed lagged cross-correlation of two aligned series.

    ``push(a, b, valid=...)`` takes the next samples of both series (any chunk size, including
    0) and returns the windows that became complete, as a :class:`CrossCorrelation`. Window
    ``w`` ends at sample ``w*step + win + lag`` (exclusive), as in rMEA; the output does not
    depend on the chunking. Raises :class:`SignalError` if a and b (and valid) differ in length
    or are not 1-D.
    """

    __slots__ = (
        "_absolute",
        "_fisher_z",
        "_fs_hz",
        "_lags_s",
        "_moments",
        "_n_seen",
        "_next_window",
        "_span_n",
        "_step_n",
        "_window_s",
        "_z_cap",
    )

    def __init__(
        self,
        fs_hz: float,
        *,
        window_s: float,
        lag_s: float,
        step_s: float,
        fisher_z: bool = True,
        absolute: bool = False,
        z_cap: float = DEFAULT_Z_CAP,
        recompute_every: int = DEFAULT_RECOMPUTE_EVERY,
    ) -> None:
        window_n = samples_in(window_s, fs_hz, key="window_s", minimum=2)
        lag_n = samples_in(lag_s, fs_hz, key="lag_s")
        step_n = samples_in(step_s, fs_hz, key="step_s", minimum=1)
        if not z_cap > 0:
            raise ConfigError(f"z_cap must be > 0, got {z_cap!r}", key="z_cap")
        lags = np.arange(-lag_n, lag_n + 1)
        self._moments = LaggedComoments(
            window_n=window_n, lag_n=lag_n, max_slide_n=step_n, recompute_every=recompute_every
        )
        self._fs_hz = fs_hz
        self._lags_s = lags / fs_hz
        self._window_s = window_n / fs_hz
        self._span_n = window_n + lag_n
        self._step_n = step_n
        self._fisher_z = fisher_z
        self._absolute = absolute
        self._z_cap = z_cap
        self._n_seen = 0
        self._next_window = 0

    @property
    def lags_s(self) -> FloatArray:
        return self._lags_s.copy()

    def push(
        self, a: FloatArray, b: FloatArray, *, valid: BoolArray | None = None
    ) -> CrossCorrelation:
        a = np.asarray(a, dtype=np.float64)
        b = np.asarray(b, dtype=np.float64)
        if a.ndim != 1 or a.shape != b.shape:
            raise SignalError(
                f"a and b must be 1-D arrays of equal length, got shapes {a.shape} and {b.shape}"
            )
        ok = np.ones(a.shape, dtype=np.bool_) if valid is None else np.asarray(valid, dtype=bool)
        if ok.shape != a.shape:
            raise SignalError(f"valid must have the shape of a {a.shape}, got {ok.shape}")
        rows: list[FloatArray] = []
        starts: list[float] = []
        consumed = 0
        while True:
            window_end = self._next_window * self._step_n + self._span_n  # exclusive
            needed = window_end - self._n_seen
            if needed > a.shape[0] - consumed:
                break
            stop = consumed + needed
            self._moments.append(a[consumed:stop], b[consumed:stop], ok[consumed:stop])
            self._n_seen += needed
            consumed = stop
            rows.append(self._transform(self._moments.correlations()))
            starts.append(self._next_window * self._step_n / self._fs_hz)
            self._next_window += 1
        self._moments.append(a[consumed:], b[consumed:], ok[consumed:])
        self._n_seen += a.shape[0] - consumed
        values = np.vstack(rows) if rows else np.empty((0, self._lags_s.size))
        return CrossCorrelation(
            values=values,
            lags_s=self._lags_s.copy(),
            window_start_s=np.asarray(starts, dtype=np.float64),
            window_s=self._window_s,
            fisher_z=self._fisher_z,
            absolute=self._absolute,
        )

    def _transform(self, r: FloatArray) -> FloatArray:
        out = fisher_z_capped(r, self._z_cap) if self._fisher_z else r
        return np.abs(out) if self._absolute else out


def windowed_cross_correlation(
    a: FloatArray,
    b: FloatArray,
    fs_hz: float,
    *,
    window_s: float,
    lag_s: float,
    step_s: float,
    fisher_z: bool = True,
    absolute: bool = False,
    z_cap: float = DEFAULT_Z_CAP,
) -> CrossCorrelation:
    """Batch windowed lagged cross-correlation in rMEA's conventions (see module docstring).

    Runs :class:`StreamingCrossCorrelation` over the whole series, so batch and live share one
    implementation. With rMEA's argument order, ``a`` is rMEA's s1 (x) and ``b`` its s2 (y).
    Returns zero windows when the series are shorter than one window plus the lag.
    """
    stream = StreamingCrossCorrelation(
        fs_hz,
        window_s=window_s,
        lag_s=lag_s,
        step_s=step_s,
        fisher_z=fisher_z,
        absolute=absolute,
        z_cap=z_cap,
    )
    return stream.push(a, b)

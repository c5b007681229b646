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
any of its ``win`` pairs is invalid (NaN, inf, or flagged ``valid=False``) or when either side
is constant, because a live display must say "no estimate" rather than show a number built
from part of the data.

Incremental algorithm (:class:`SlidingComoments`): for every requested pair of window offsets
it keeps the five raw co-moments (sum a, sum b, sum a^2, sum b^2, sum ab) of the ``win`` most
recent pairs, shifted by a reference level to avoid cancellation (Chan, Golub & LeVeque 1983,
"Algorithms for computing the sample variance"). Moving the window by ``s`` samples adds ``s``
pairs and removes ``s`` pairs per lag: O(lags) work per new sample. Every ``recompute_every``
updates, and whenever the window jumped further than it can slide, the moments are recomputed
exactly from the ring buffer, which bounds floating-point drift. Updates happen at fixed sample
indices, so the result is bit-for-bit identical whatever the input chunking.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from dsp.exceptions import ConfigError, SignalError
from dsp.types import BoolArray, FloatArray, IntArray

__all__ = [
    "CrossCorrelation",
    "SlidingComoments",
    "StreamingCrossCorrelation",
    "WindowSummaries",
    "fisher_z_capped",
    "lagged_pair_offsets",
    "samples_in",
    "windowed_cross_correlation",
]

# rMEA's cap on Fisher's z (``fisher.r2z`` in rMEA_ccf.R): atanh(+-1) is infinite.
DEFAULT_Z_CAP = 10.0
# Exact recompute period, in updates. Drift of the sliding sums grows ~ sqrt(updates) * eps *
# (sum of squares); 64 keeps it below 1e-12 relative for physiological series at no
# measurable cost (one exact pass per 64 slides).
DEFAULT_RECOMPUTE_EVERY = 64
# A side whose centred sum of squares is below this fraction of its raw (shifted) sum of
# squares is treated as constant: its correlation would be rounding noise.
_CONSTANT_RELATIVE_VARIANCE = 1e-12
# Pairs per block in the exact recompute, to bound temporary memory (block x window floats).
_EXACT_BLOCK_PAIRS = 256


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


def fisher_z_capped(r: FloatArray, z_cap: float = DEFAULT_Z_CAP) -> FloatArray:
    """Fisher's z = atanh(r), capped at +-z_cap as rMEA does (r = +-1 gives +-z_cap)."""
    with np.errstate(divide="ignore"):
        z = np.arctanh(np.clip(r, -1.0, 1.0))
    return np.clip(z, -z_cap, z_cap)


def lagged_pair_offsets(max_lag_n: int) -> tuple[IntArray, IntArray, IntArray]:
    """Lags ``-max_lag_n..+max_lag_n`` and, for each, how far back from the newest sample of a
    span of ``win + max_lag_n`` samples the a-window and the b-window end.

    Lag ``+k`` pairs a[0:win] with b[k:k+win] of the span, whose last sample is the newest:
    the a-window ends ``max_lag_n`` samples before it, the b-window ``max_lag_n - k`` before.
    """
    lags = np.arange(-max_lag_n, max_lag_n + 1, dtype=np.int64)
    offset_a = max_lag_n - np.maximum(-lags, 0)
    offset_b = max_lag_n - np.maximum(lags, 0)
    return lags, offset_a, offset_b


class SlidingComoments:
    """Co-moments of many lagged window pairs of two series, slid along a shared ring buffer.

    Pair ``p`` correlates the ``window_n`` samples of a ending ``offset_a[p]`` samples before
    the newest sample with the ``window_n`` samples of b ending ``offset_b[p]`` before it.
    Append samples with :meth:`append`, then call :meth:`correlations` to get every pair's
    Pearson r at the newest sample (NaN where a pair touches an invalid sample or a side is
    constant). Between two calls the newest sample may advance by any amount.
    """

    __slots__ = (
        "_a",
        "_b",
        "_capacity",
        "_count",
        "_mask_a",
        "_mask_b",
        "_offset_a",
        "_offset_b",
        "_recompute_every",
        "_ref_a",
        "_ref_b",
        "_since_exact",
        "_slide_limit",
        "_state_end",
        "_sums",
        "_window_n",
        "_written",
    )

    def __init__(
        self,
        *,
        window_n: int,
        offset_a: IntArray,
        offset_b: IntArray,
        max_slide_n: int,
        recompute_every: int = DEFAULT_RECOMPUTE_EVERY,
    ) -> None:
        if window_n < 2:
            raise ConfigError(f"window must hold >= 2 samples, got {window_n}", key="window_s")
        if recompute_every < 1:
            raise ConfigError(
                f"recompute_every must be >= 1 update, got {recompute_every}",
                key="recompute_every",
            )
        offset_a = np.asarray(offset_a, dtype=np.int64)
        offset_b = np.asarray(offset_b, dtype=np.int64)
        if offset_a.shape != offset_b.shape or offset_a.ndim != 1 or offset_a.size == 0:
            raise ConfigError("offset_a and offset_b must be equal-length 1-D arrays", key="offset")
        if min(int(offset_a.min()), int(offset_b.min())) < 0:
            raise ConfigError("window offsets must be >= 0 samples", key="offset")
        self._window_n = window_n
        self._offset_a = offset_a
        self._offset_b = offset_b
        span_n = int(max(offset_a.max(), offset_b.max())) + window_n
        # Sliding by s needs the s samples leaving the oldest window: keep them in the ring.
        self._slide_limit = max(1, min(max_slide_n, window_n))
        self._capacity = span_n + self._slide_limit
        self._a = np.zeros(self._capacity)
        self._b = np.zeros(self._capacity)
        self._mask_a = np.zeros(self._capacity)
        self._mask_b = np.zeros(self._capacity)
        self._recompute_every = recompute_every
        self._written = 0  # absolute index of the next sample
        self._state_end = -1  # newest absolute index the sums describe, -1 = none
        self._since_exact = 0
        self._ref_a = 0.0
        self._ref_b = 0.0
        # rows: sum a, sum b, sum a^2, sum b^2, sum ab, invalid pair count
        self._sums = np.zeros((6, offset_a.size))

    @property
    def capacity(self) -> int:
        return self._capacity

    @property
    def n_pairs(self) -> int:
        return int(self._offset_a.size)

    def append(self, a: FloatArray, b: FloatArray, valid: BoolArray) -> None:
        """Write contiguous samples; invalid ones are stored as 0 with a zero mask."""
        n = a.shape[0]
        if n == 0:
            return
        if n > self._capacity:  # only the newest `capacity` samples can ever be read again
            a, b, valid = a[-self._capacity :], b[-self._capacity :], valid[-self._capacity :]
            self._written += n - self._capacity
            n = self._capacity
        positions = (self._written + np.arange(n)) % self._capacity
        ok_a = valid & np.isfinite(a)
        ok_b = valid & np.isfinite(b)
        self._a[positions] = np.where(ok_a, a, 0.0)
        self._b[positions] = np.where(ok_b, b, 0.0)
        self._mask_a[positions] = ok_a
        self._mask_b[positions] = ok_b
        self._written += n

    def skip(self, n: int) -> None:
        """Advance by ``n`` invalid samples (a gap) without materialising them."""
        kept = min(n, self._capacity)
        positions = (self._written + n - kept + np.arange(kept)) % self._capacity
        self._mask_a[positions] = 0.0
        self._mask_b[positions] = 0.0
        self._a[positions] = 0.0
        self._b[positions] = 0.0
        self._written += n

    def correlations(self) -> FloatArray:
        """Pearson r of every pair at the newest sample written so far."""
        end = self._written - 1
        delta = end - self._state_end
        if (
            self._state_end < 0
            or delta > self._slide_limit
            or (self._since_exact >= self._recompute_every and delta > 0)
        ):
            self._exact(end)
        elif delta > 0:
            self._slide(end, delta)
        return self._pearson()

    def _gather(self, end: int, length: int, pairs: slice) -> tuple[FloatArray, ...]:
        """Shifted, masked a and b values, shape (pairs, length), of the windows of ``length``
        samples ending ``offset`` samples before absolute index ``end``; plus the pair mask."""
        steps = np.arange(end - length + 1, end + 1, dtype=np.int64)
        idx_a = (steps[None, :] - self._offset_a[pairs, None]) % self._capacity
        idx_b = (steps[None, :] - self._offset_b[pairs, None]) % self._capacity
        pair_ok = self._mask_a[idx_a] * self._mask_b[idx_b]
        xa = (self._a[idx_a] - self._ref_a) * pair_ok
        xb = (self._b[idx_b] - self._ref_b) * pair_ok
        return xa, xb, pair_ok

    @staticmethod
    def _moments(xa: FloatArray, xb: FloatArray, pair_ok: FloatArray) -> FloatArray:
        return np.stack(
            [
                xa.sum(axis=1),
                xb.sum(axis=1),
                (xa * xa).sum(axis=1),
                (xb * xb).sum(axis=1),
                (xa * xb).sum(axis=1),
                pair_ok.shape[1] - pair_ok.sum(axis=1),
            ]
        )

    def _exact(self, end: int) -> None:
        # Re-centre on the mean of the valid samples still in the ring: keeps the raw sums
        # small relative to the variance (no catastrophic cancellation).
        self._ref_a = _masked_mean(self._a, self._mask_a)
        self._ref_b = _masked_mean(self._b, self._mask_b)
        n_pairs = self.n_pairs
        for lo in range(0, n_pairs, _EXACT_BLOCK_PAIRS):
            block = slice(lo, min(lo + _EXACT_BLOCK_PAIRS, n_pairs))
            self._sums[:, block] = self._moments(*self._gather(end, self._window_n, block))
        self._state_end = end
        self._since_exact = 0

    def _slide(self, end: int, delta: int) -> None:
        every = slice(None)
        entering = self._moments(*self._gather(end, delta, every))
        leaving = self._moments(*self._gather(end - self._window_n, delta, every))
        self._sums += entering - leaving
        self._state_end = end
        self._since_exact += 1

    def _pearson(self) -> FloatArray:
        n = float(self._window_n)
        sum_a, sum_b, sum_aa, sum_bb, sum_ab, invalid = self._sums
        var_a = sum_aa - sum_a * sum_a / n
        var_b = sum_bb - sum_b * sum_b / n
        cov = sum_ab - sum_a * sum_b / n
        usable = (
            (invalid < 0.5)
            & (var_a > _CONSTANT_RELATIVE_VARIANCE * sum_aa)
            & (var_b > _CONSTANT_RELATIVE_VARIANCE * sum_bb)
            & (var_a > 0)
            & (var_b > 0)
        )
        r = np.full(var_a.shape, np.nan)
        r[usable] = cov[usable] / np.sqrt(var_a[usable] * var_b[usable])
        return np.clip(r, -1.0, 1.0)


def _masked_mean(values: FloatArray, mask: FloatArray) -> float:
    count = float(mask.sum())
    return float((values * mask).sum() / count) if count > 0 else 0.0


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
        lags, offset_a, offset_b = lagged_pair_offsets(lag_n)
        self._moments = SlidingComoments(
            window_n=window_n,
            offset_a=offset_a,
            offset_b=offset_b,
            max_slide_n=step_n,
            recompute_every=recompute_every,
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

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

Incremental algorithm (:class:`LaggedComoments`): for every lag it keeps the running sums
of a, b, a^2, b^2 and a*b over the ``win`` pairs, with both series shifted by a reference
level to avoid cancellation (Chan, Golub & LeVeque 1983, "Algorithms for computing the
sample variance"). Moving the window by ``s`` samples adds ``s`` pairs and removes ``s``
pairs per lag: O(lags) work per new sample. Every ``recompute_every`` updates, whenever
the window jumped further than it can slide, and whenever the reference level has drifted
far from a window's mean, the sums are recomputed exactly from the buffer, which bounds
floating-point drift. Updates happen at fixed sample indices, so the result is bit-for-bit
identical whatever the input chunking.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from dsp.exceptions import ConfigError, SignalError
from dsp.sliding_buffer import SlidingBuffer
from dsp.types import BoolArray, FloatArray, IntArray

__all__ = [
    "CONSTANT_RELATIVE_VARIANCE",
    "CrossCorrelation",
    "LaggedComoments",
    "StreamingCrossCorrelation",
    "WindowSummaries",
    "best_lag_per_row",
    "fisher_z_capped",
    "samples_in",
    "usable_values",
    "window_sums",
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
# Largest float64 below 1 and its Fisher z (about 18.7).
_R_BELOW_ONE = float(np.nextafter(1.0, 0.0))
_Z_OF_R_BELOW_ONE = math.atanh(_R_BELOW_ONE)
# Largest magnitude accepted as a sample value (see usable_values).
_MAX_ABS_VALUE = 1e100
# A side whose centred sum of squares is below this fraction of its raw (shifted) sum of
# squares is treated as constant: its correlation would be rounding noise.
CONSTANT_RELATIVE_VARIANCE = 1e-12


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
    if z_cap < _Z_OF_R_BELOW_ONE:
        # |r| = 1 gives atanh = 18.7 instead of inf, capped alike; this avoids a
        # floating-point error context, which costs more than the arithmetic on 41 lags.
        z = np.arctanh(_clip(r, _R_BELOW_ONE))
    else:
        with np.errstate(divide="ignore"):
            z = np.arctanh(_clip(r, 1.0))
    return _clip(z, z_cap)


def _clip(x: FloatArray, bound: float) -> FloatArray:
    """``np.clip(x, -bound, bound)`` (NaN stays NaN) without np.clip's call overhead."""
    return np.minimum(np.maximum(x, -bound), bound)


class _RowBuffer(SlidingBuffer):
    """A :class:`SlidingBuffer` that also gives all rows of a sample range as one view, so
    the per-update path reads its samples with one slice instead of one call per row (and
    an exact recompute can re-shift them in place)."""

    __slots__ = ()

    def block(self, start_index: int, stop_index: int) -> FloatArray:
        """Samples ``[start_index, stop_index)`` of every row, as a view into the storage."""
        self.view(0, start_index, stop_index)  # bounds check
        first = self._first_index
        return self._data[:, start_index - first : stop_index - first]


class _SlidePlan:
    """Preallocated arrays for sliding :class:`LaggedComoments` by ``delta`` samples.

    ``x`` receives the ``m = delta + lag`` samples entering then the ``m`` leaving, for a
    and b (shifted); :meth:`gather` copies into ``terms[0:2]``, for a and b and every lag,
    the ``delta`` entering then ``delta`` leaving samples of that lag's window (runs of
    ``delta`` consecutive samples, copied through a sliding-window view of ``x``), so
    ``terms`` rows a, b, a^2, b^2, a*b times ``sign`` sum to the change of every sum.
    """

    __slots__ = ("_runs", "_starts", "_windows", "m", "sign", "terms", "x")

    def __init__(self, *, delta: int, pick_a: IntArray, pick_b: IntArray) -> None:
        self.m = delta + int(pick_a.size // 2)
        self.x = np.zeros((2, 2 * self.m))
        self._windows = sliding_window_view(self.x.ravel(), delta)  # a view: sees x
        self.terms = np.zeros((5, pick_a.size, 2 * delta))
        self._runs = self.terms[0:2].reshape(-1, delta)  # a view into terms
        # Start of each run in x.ravel(): a entering, a leaving; b entering, b leaving.
        offsets = np.array([[0, self.m], [2 * self.m, 3 * self.m]])
        self._starts = (np.stack((pick_a, pick_b))[:, :, None] + offsets[:, None, :]).ravel()
        self.sign = np.concatenate((np.ones(delta), -np.ones(delta)))

    def gather(self) -> None:
        """Copy the runs of the current ``x`` into ``terms[0:2]``."""
        np.take(self._windows, self._starts, axis=0, out=self._runs, mode="clip")


class LaggedComoments:
    """Co-moments of the rMEA window pairs at every lag, slid along a linear buffer.

    For the span of ``window_n + lag_n`` samples ending at the newest sample, lag ``+d``
    pairs a[0:win] with b[d:d+win] and lag ``-d`` pairs a[d:d+win] with b[0:win] (span
    coordinates). Append samples with :meth:`append` (or :meth:`skip` over a gap), then
    :meth:`correlations` gives Pearson r for lags ``-lag_n..+lag_n`` at the newest sample:
    NaN where a lag's a- or b-window touches an invalid sample, or a side is constant.

    State: per lag, the sums over its pairs of a, b, a^2, b^2 and a*b, both series shifted
    by a reference level (the buffer stores them shifted). Moving the span by ``s`` samples
    reads only the ``s + lag`` samples entering and the ``s + lag`` leaving: each lag gains
    ``s`` pairs and loses ``s``, so one gather of those pairs for all lags and one signed
    sum (a matrix-vector product) update every sum: O(lags x s) per update, O(lags) per new
    sample. With 41 lags and 4 new samples that arithmetic is tiny and the cost is numpy
    calls, so the update path makes few, and when no unusable sample is in the span it
    skips all per-lag masking after one test that no window is constant or drifted.

    The result depends only on the samples and on the indices at which
    :meth:`correlations` is called (appends between two calls may come in any chunking).
    """

    __slots__ = (
        "_buffer",
        "_lag_n",
        "_newest_unusable",
        "_pick_a",
        "_pick_b",
        "_picks",
        "_plans",
        "_recompute_every",
        "_ref",
        "_since_exact",
        "_slide_limit",
        "_span_n",
        "_state_end",
        "_sums",
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
        # Rows: a and b minus the reference level (0 where unusable), a usable and b usable
        # (1.0 / 0.0). Unusable samples stored as 0 keep every sum finite.
        self._buffer = _RowBuffer(
            n_rows=4,
            keep=self._span_n + self._slide_limit,
            max_append=self._span_n + max(max_slide_n, 1),
        )
        lags = np.arange(-lag_n, lag_n + 1)
        # Lag d uses the a-window starting at max(-d, 0) and the b-window at max(d, 0).
        self._pick_a = np.maximum(-lags, 0)
        self._pick_b = np.maximum(lags, 0)
        # Flat indices into a (n_rows, lag + 1) table of window sums per window start
        # whose rows alternate a, b: each lag's window sum of every row.
        self._picks = np.arange(6)[:, None] * (lag_n + 1) + np.where(
            np.arange(6)[:, None] % 2 == 0, self._pick_a, self._pick_b
        )
        self._plans: dict[int, _SlidePlan] = {}  # per slide length
        # Per lag, sums over its window pairs of shifted a, b, a^2, b^2, a*b.
        self._sums = np.zeros((5, lags.size))
        self._recompute_every = recompute_every
        self._since_exact = 0
        self._state_end = -1  # absolute index the sums describe; -1 = none
        self._newest_unusable = -1  # absolute index of the newest unusable sample
        self._ref = np.zeros((2, 1))  # reference level of a and b

    def append(self, a: FloatArray, b: FloatArray, valid: BoolArray) -> None:
        """Write contiguous samples; NaN/inf or ``valid=False`` make a sample unusable."""
        step = self._buffer.max_append
        for lo in range(0, a.shape[0], step):
            x = np.array((a[lo : lo + step], b[lo : lo + step]))
            ok = usable_values(x)
            ok &= valid[lo : lo + step]
            rows = np.concatenate((x, ok), dtype=np.float64)
            rows[:2] -= self._ref
            if not ok.all():
                rows[:2] = np.where(ok, rows[:2], 0.0)  # also drops NaN and inf
                bad_at = int(np.flatnonzero(~ok.all(axis=0))[-1])
                self._newest_unusable = self._buffer.end_index + bad_at
            self._buffer.append(rows)

    def skip(self, n: int) -> None:
        """Advance by ``n`` missing samples (a gap) without materialising them."""
        if n <= 0:
            return
        self._newest_unusable = self._buffer.end_index + n - 1
        if n > self._buffer.max_append:  # longer than any span: drop everything held
            self._buffer.skip_to(self._buffer.end_index + n)
        else:  # unusable zeros, so sums over the buffer stay finite
            self._buffer.append(np.zeros((4, n)))

    def correlations(self) -> FloatArray:
        """Pearson r for lags -lag..+lag of the span ending at the newest sample."""
        end = self._buffer.end_index - 1
        delta = end - self._state_end
        if (
            self._state_end < 0
            or delta > self._slide_limit
            or self._since_exact >= self._recompute_every
            or end - self._span_n + 1 - delta < self._buffer.oldest_index
        ):
            return self._exact(end)
        if delta > 0:
            self._slide(end, delta)
        mean_product, var, cov = self._moments()
        if self._newest_unusable <= end - self._span_n and (
            # var > (sum^2 / n) / 1e4 >= 0 also passes the constant-side test of _pearson
            # (var > 1e-12 * sum of squares, which is var + sum^2 / n): nothing to mask.
            (_MAX_DRIFT * var - mean_product).min() > 0.0
        ):
            return _clip(cov / np.sqrt(var[0] * var[1]), 1.0)
        r, drifted = self._pearson(self._usable_lags(end))
        return self._exact(end) if drifted.any() else r

    def _slide(self, end: int, delta: int) -> None:
        """Move the span end by ``delta`` reading only the 2 x (delta + lag) samples that
        enter and leave: O(lag x delta)."""
        plan = self._plans.get(delta)
        if plan is None:
            plan = _SlidePlan(delta=delta, pick_a=self._pick_a, pick_b=self._pick_b)
            self._plans[delta] = plan
        block = self._buffer.block(end - delta - self._span_n + 1, end + 1)[:2]
        np.concatenate((block[:, self._window_n :], block[:, : plan.m]), axis=1, out=plan.x)
        plan.gather()
        terms = plan.terms
        np.multiply(terms[0:2], terms[0:2], out=terms[2:4])
        np.multiply(terms[0], terms[1], out=terms[4])
        self._sums += terms @ plan.sign  # entering pairs add, leaving pairs subtract
        self._since_exact += 1
        self._state_end = end

    def _exact(self, end: int) -> FloatArray:
        first = end - self._span_n + 1
        if first < self._buffer.oldest_index:  # a gap longer than the buffer: no data
            self._state_end = -1
            return np.full(self._sums.shape[1], np.nan)
        block = self._buffer.block(first, end + 1)
        # New reference level: the mean of the span's usable samples, the shift that keeps
        # the sums free of cancellation. Re-shift the span in place: the slides to come
        # read only it and the samples appended after now.
        count = block[2:].sum(axis=1)
        offset = np.divide(block[:2].sum(axis=1), count, out=np.zeros(2), where=count > 0)
        self._ref = self._ref + offset[:, None]
        block[:2] -= offset[:, None] * block[2:]
        rows = np.concatenate((block[:2], block[:2] * block[:2], block[2:]))
        table = window_sums(rows, self._window_n).ravel()
        self._sums[:4] = table[self._picks[:4]]
        self._sums[4] = self._cross_products(block[:2], self._window_n)
        self._since_exact = 0
        self._state_end = end
        usable = _fully_usable(table[self._picks[4:]], self._window_n)
        r, drifted = self._pearson(usable)
        for lag_index in np.flatnonzero(drifted):
            # A window far from the span's mean relative to its own spread (a step inside
            # the span): centre it on its own mean, as a two-pass correlation does.
            r[lag_index] = self._two_pass(block[:2], int(lag_index))
        return r

    def _usable_lags(self, end: int) -> BoolArray:
        """Per lag, whether both its windows hold only usable samples."""
        if self._newest_unusable <= end - self._span_n:
            return np.ones(self._sums.shape[1], dtype=np.bool_)
        ok = self._buffer.block(end - self._span_n + 1, end + 1)[2:]
        counts = window_sums(ok, self._window_n).ravel()[self._picks[:2]]
        return _fully_usable(counts, self._window_n)

    def _cross_products(self, x: FloatArray, n_pairs: int) -> FloatArray:
        """For lags -lag..+lag: the sum over m < n_pairs of a[m]*b[m+d] (d >= 0) or
        a[m+|d|]*b[m] (d < 0); the rows of ``x`` hold n_pairs + lag samples."""
        b_follows = np.correlate(x[1], x[0, :n_pairs], mode="valid")  # d = 0..lag
        a_follows = np.correlate(x[0], x[1, :n_pairs], mode="valid")  # |d| = 0..lag
        return np.concatenate([a_follows[:0:-1], b_follows])

    def _two_pass(self, x: FloatArray, lag_index: int) -> float:
        start_a, start_b = self._pick_a[lag_index], self._pick_b[lag_index]
        a = x[0, start_a : start_a + self._window_n]
        b = x[1, start_b : start_b + self._window_n]
        a = a - a.mean()
        b = b - b.mean()
        return float(np.clip((a @ b) / np.sqrt((a @ a) * (b @ b)), -1.0, 1.0))

    def _moments(self) -> tuple[FloatArray, FloatArray, FloatArray]:
        """Per lag: window sum times window mean (rows a, b), sum of squares about the
        window mean (rows a, b), and the co-moment of the pairs."""
        sums = self._sums
        means = sums[0:2] / self._window_n
        mean_product = sums[0:2] * means
        return mean_product, sums[2:4] - mean_product, sums[4] - sums[0] * means[1]

    def _pearson(self, usable: BoolArray) -> tuple[FloatArray, BoolArray]:
        """r per lag (NaN where not ``usable`` or a side is constant), and per lag whether
        the reference level is too far from the window's mean for the shifted sums to keep
        their precision."""
        mean_product, var, cov = self._moments()
        usable = usable & (var > CONSTANT_RELATIVE_VARIANCE * self._sums[2:4]).all(axis=0)
        r = np.divide(
            cov, np.sqrt(np.abs(var[0] * var[1])), out=np.full(cov.shape, np.nan), where=usable
        )
        # Rounding error of the shifted sums grows like eps * (level offset)^2 / variance.
        drifted = usable & (mean_product >= _MAX_DRIFT * var).any(axis=0)
        return _clip(r, 1.0), drifted


def _fully_usable(counts: FloatArray, window_n: int) -> BoolArray:
    """Per lag (column), whether the usable-sample counts of its a-window and b-window
    (rows) are both the whole window."""
    return np.asarray(counts.min(axis=0) > window_n - 0.5)


def window_sums(rows: FloatArray, window_n: int) -> FloatArray:
    """Sum of every ``window_n``-long window along the last axis (index = window start),
    from one cumulative sum."""
    cumulative = np.zeros((*rows.shape[:-1], rows.shape[-1] + 1))
    np.cumsum(rows, axis=-1, out=cumulative[..., 1:])
    return cumulative[..., window_n:] - cumulative[..., :-window_n]


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
        self._lags_s.flags.writeable = False
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
        # Windows completing in this push: window w ends (exclusive) at w*step + span.
        last = (self._n_seen + a.shape[0] - self._span_n) // self._step_n
        n_windows = max(0, last - self._next_window + 1)
        values = np.empty((n_windows, self._lags_s.size))
        first = float(self._next_window)  # whole numbers: w * step is exact, as in int
        window_start_s = np.arange(first, first + n_windows) * self._step_n / self._fs_hz
        consumed = 0
        for i in range(n_windows):
            stop = self._next_window * self._step_n + self._span_n - self._n_seen + consumed
            self._moments.append(a[consumed:stop], b[consumed:stop], ok[consumed:stop])
            self._n_seen += stop - consumed
            consumed = stop
            values[i] = self._transform(self._moments.correlations())
            self._next_window += 1
        if consumed < a.shape[0]:
            self._moments.append(a[consumed:], b[consumed:], ok[consumed:])
            self._n_seen += a.shape[0] - consumed
        return CrossCorrelation(
            values=values,
            lags_s=self._lags_s,  # read-only, shared by every result
            window_start_s=window_start_s,
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

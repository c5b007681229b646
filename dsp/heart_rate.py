"""The streaming ECG chain: R peaks -> corrected inter-beat intervals -> heart rate on the grid.

:class:`HeartRateProcessor` runs :class:`~dsp.ecg.RPeakDetector`, corrects the beat series
with a causal variant of Lipponen & Tarvainen 2019 (J Med Eng Technol 43(3):173-181), and
emits heart rate on the analysis grid ``t_k = k / grid_hz`` with a validity flag and a reason
for every invalid sample, so downstream code can withhold synchrony.

Beat correction (one beat of look-ahead, trailing windows instead of centred ones): for beat
``b_j`` with incoming interval ``rr_j`` and outgoing ``rr_{j+1}``,

* ``mRR_j = rr_j - median(last 11 rr)`` (doubled when negative) normalised by
  ``Th2 = 5.2 * QD(|mRR|)`` over the last 91 beats; ``|mRR| > 3`` marks a long/short
  interval, which is a *missed* beat if ``|rr_j / 2 - median| < Th2`` (a beat is inserted in
  the middle) or an *extra* beat if ``|rr_j + rr_{j+1} - median| < Th2`` (``b_j`` is removed);
* otherwise ``dRR_j = rr_{j+1} - rr_j`` is normalised by ``Th1 = 5.2 * QD(|dRR|)``; an
  *ectopic* beat is a large ``dRR_j`` with an opposite previous ``dRR_{j-1}`` (the paper's
  S11/S12 rule, c1 = 0.13, c2 = 0.17, with only the past neighbour, so missed/extra are tested
  first and the change must exceed ``ectopic_min_change`` of the median) and is moved to the
  middle of its neighbours (the paper interpolates it);
* a remaining long/short interval is an artefact: its heart-rate value is dropped and bridged.

Two guards against noise that the interval rules alone let through: intervals that touch a
beat whose QRS does not match the running template (:attr:`dsp.ecg.RPeaks.similarity`,
template matching after Li, Mark & Clifford 2008) are artefacts, and when more than
``max_irregular_beats`` of the last ``irregular_window_beats`` beats needed correction the
stretch is noise and its heart rate is withheld.

Heart rate is linearly interpolated between the good beats' instantaneous values
(``60 / IBI`` at each beat) onto the grid, but only across spans of at most
``max_bridge_s`` within one continuous segment; everything else is emitted invalid.

Quality flags come from the raw signal in a window around each grid time (flat line or
lead-off, saturation, unusable samples, gaps) and from the beats (implausible heart rate,
artefact, no beats). Grid samples are emitted once nothing can change them: valid ones when the
next good beat is final, invalid ones as soon as that is certain, so output never stalls.
"""

from __future__ import annotations

import itertools
import math
from collections import deque
from dataclasses import dataclass, field
from enum import StrEnum
from typing import NamedTuple

import numpy as np
import numpy.typing as npt

from dsp.ecg import (
    RPeakConfig,
    RPeakDetector,
    check_chunk,
    read_only,
    usable_samples,
)
from dsp.exceptions import ConfigError
from dsp.types import BoolArray, FloatArray, GridSamples
from dsp.validation import require_finite_positive

# Lipponen & Tarvainen 2019 constants.
_THRESHOLD_FACTOR = 5.2
_C1, _C2 = 0.13, 0.17
_LONG_SHORT_LIMIT = 3.0
_MIN_HISTORY = 5  # intervals needed before the quartile-deviation thresholds mean anything


class HrReason(StrEnum):
    """Why a heart-rate grid sample is invalid (shown to users: no physiological values)."""

    GAP = "gap"  # no samples arrived around this time
    INVALID_SAMPLES = "invalid_samples"  # NaN/inf/out-of-range samples
    FLAT_LINE = "flat_line"  # lead-off or disconnected electrode
    SATURATION = "saturation"  # amplifier clipping
    IMPLAUSIBLE_HR = "implausible_hr"
    ARTEFACT = "artefact"  # beats the correction could not repair
    NO_BEATS = "no_beats"  # no usable beats (start, restart after a break, asystole-like)


@dataclass(frozen=True, slots=True, kw_only=True)
class HeartRateConfig:
    """Parameters of :class:`HeartRateProcessor`."""

    detector: RPeakConfig = field(default_factory=RPeakConfig)
    min_hr_bpm: float = 30.0
    """Lower plausibility bound (sinus bradycardia in athletes rarely goes below ~35 bpm)."""
    max_hr_bpm: float = 220.0
    """Upper plausibility bound (age-predicted maximum 208 - 0.7 * age, Tanaka et al. 2001)."""
    history_beats: int = 91
    """Trailing window of the quartile-deviation thresholds (Lipponen & Tarvainen 2019: 91)."""
    median_beats: int = 11
    """Trailing window of the median interval (Lipponen & Tarvainen 2019: 11)."""
    min_threshold_s: float = 0.04
    """Floor of Th1/Th2 so a very regular series (quartile deviation ~0) does not flag every
    small change (ours; 40 ms is below the beat-to-beat change of any artefact of interest)."""
    ectopic_min_change: float = 0.15
    """An ectopic beat must also change the interval by this fraction of the median interval.
    The paper's S12 test looks at both neighbours; with only the past one it also fires on
    ordinary beat-to-beat variability, which this guard removes (ectopic beats are typically
    >= 20 % premature)."""
    irregular_window_beats: int = 8
    """Trailing window (beats) of the artefact-density check."""
    max_irregular_beats: int = 2
    """More corrected or dissimilar beats than this in the window means the stretch is noise,
    not isolated ectopy: its heart rate is withheld (ours; isolated ectopic beats pass)."""
    max_bridge_s: float = 3.0
    """Longest span between two good beats that is bridged by interpolation (about two missing
    or corrected beats at rest)."""
    quality_window_s: float = 2.0
    """Raw-signal window centred on each grid time used for flat-line and saturation checks."""
    flat_ptp_mv: float = 0.1
    """Peak-to-peak below this over the window is a flat line / lead-off (a QRS is >= ~0.3 mV)."""
    saturation_fraction: float = 0.05
    """Fraction of window samples pinned exactly at the window's extreme that means clipping
    (a clean ECG touches its extreme with a sample or two per beat, well under 5 %)."""

    def __post_init__(self) -> None:
        if not (0.0 < self.min_hr_bpm < self.max_hr_bpm <= 400.0):
            raise ConfigError(
                f"need 0 < min_hr_bpm < max_hr_bpm <= 400, got {self.min_hr_bpm!r}, "
                f"{self.max_hr_bpm!r}",
                key="min_hr_bpm",
            )
        require_finite_positive(
            self, ("min_threshold_s", "max_bridge_s", "quality_window_s", "flat_ptp_mv")
        )
        for key, count in (
            ("history_beats", self.history_beats),
            ("median_beats", self.median_beats),
        ):
            if not (isinstance(count, int) and count >= _MIN_HISTORY):
                raise ConfigError(f"{key}={count!r} must be an integer >= {_MIN_HISTORY}", key=key)
        if not (
            isinstance(self.irregular_window_beats, int)
            and 0 <= self.max_irregular_beats < self.irregular_window_beats
        ):
            raise ConfigError(
                f"need 0 <= max_irregular_beats < irregular_window_beats (integers), got "
                f"{self.max_irregular_beats!r}, {self.irregular_window_beats!r}",
                key="max_irregular_beats",
            )
        if not (0.0 <= self.ectopic_min_change < 1.0):
            raise ConfigError(
                f"ectopic_min_change={self.ectopic_min_change!r} must be in [0, 1)",
                key="ectopic_min_change",
            )
        if not (0.0 < self.saturation_fraction < 1.0):
            raise ConfigError(
                f"saturation_fraction={self.saturation_fraction!r} must be in (0, 1)",
                key="saturation_fraction",
            )


class HeartRateOutput(NamedTuple):
    """What became final during one :meth:`HeartRateProcessor.push`.

    ``hr``: heart rate (bpm) on the grid, ``valid=False`` (and ``values`` NaN) where flagged;
    ``reasons``: per grid sample, ``None`` when valid, else the :class:`HrReason`;
    ``beats_t_s`` / ``ibi_s`` / ``ibi_valid``: corrected beats, the interval ending at each,
    and whether that interval was usable.
    """

    hr: GridSamples
    reasons: tuple[HrReason | None, ...]
    beats_t_s: FloatArray
    ibi_s: FloatArray
    ibi_valid: BoolArray


class _Point(NamedTuple):
    """A corrected beat and the inter-beat interval ending at it."""

    t_s: float
    ibi_s: float
    reason: HrReason | None  # None: usable


def _quantile(ordered: list[float], q: float) -> float:
    """Quantile of an ascending list with linear interpolation (numpy's default method).
    Plain Python: these windows hold at most ~100 values, and per-beat numpy overhead would
    dominate the cost."""
    position = q * (len(ordered) - 1)
    below = int(position)
    above = min(below + 1, len(ordered) - 1)
    return ordered[below] + (position - below) * (ordered[above] - ordered[below])


def _quartile_deviation(values: deque[float]) -> float:
    ordered = sorted(values)
    return (_quantile(ordered, 0.75) - _quantile(ordered, 0.25)) / 2.0


class BeatCorrector:
    """Causal Lipponen & Tarvainen 2019 correction of one continuous beat series.

    :meth:`add` takes raw beat times in order and returns the corrected beats that became
    final (each normally needs the next raw beat). :meth:`expire` finalises a beat whose
    successor cannot come within ``max_bridge_s`` any more. :attr:`anchor_s` is the last final
    beat: no corrected beat earlier than it can appear.
    """

    __slots__ = (
        "_abs_drr",
        "_abs_mrr",
        "_anchor_similar",
        "_config",
        "_irregular",
        "_last_drr",
        "_pending",
        "_pending_similar",
        "_rr",
        "anchor_s",
    )

    def __init__(self, config: HeartRateConfig) -> None:
        self._config = config
        self.anchor_s: float | None = None
        self._pending: float | None = None  # raw beat awaiting its successor
        # Whether the anchor / pending beat looked like the QRS template (interpolated beats do).
        self._anchor_similar = True
        self._pending_similar = True
        self._rr: deque[float] = deque(maxlen=config.median_beats)
        self._abs_drr: deque[float] = deque(maxlen=config.history_beats)
        self._abs_mrr: deque[float] = deque(maxlen=config.history_beats)
        self._last_drr = 0.0
        self._irregular: deque[bool] = deque(maxlen=config.irregular_window_beats)

    @property
    def pending_s(self) -> float | None:
        """The raw beat waiting for its successor, if any."""
        return self._pending

    def add(self, beat_s: float, *, similar: bool) -> list[_Point]:
        """Add the next raw beat; ``similar``: its QRS matches the template (or is unknown)."""
        points: list[_Point] = []
        if self._pending is not None and beat_s - self._pending > self._config.max_bridge_s:
            points = self._finalise(None)
        if self.anchor_s is None:
            self.anchor_s = beat_s
            self._anchor_similar = similar
        elif self._pending is None:
            self._pending = beat_s
            self._pending_similar = similar
        else:
            points = self._finalise(beat_s)
            self._pending_similar = similar
        return points

    def expire(self, final_through_s: float) -> list[_Point]:
        """Finalise the pending beat if no successor can arrive within ``max_bridge_s``
        (the detector will report no beat before ``final_through_s``). Gives the same result
        as :meth:`add` with a later successor, so output does not depend on chunking."""
        if (
            self._pending is not None
            and final_through_s - self._pending > self._config.max_bridge_s
        ):
            return self._finalise(None)
        return []

    def _finalise(self, next_s: float | None) -> list[_Point]:
        """Classify and correct the pending beat; ``next_s`` is its successor when it is near
        enough to matter (ectopic and extra-beat tests need it)."""
        anchor_s, beat_s = self.anchor_s, self._pending
        assert anchor_s is not None and beat_s is not None
        rr = beat_s - anchor_s
        median_rr = _quantile(sorted(self._rr), 0.5) if self._rr else rr
        mrr = rr - median_rr
        mrr = 2.0 * mrr if mrr < 0 else mrr  # the paper doubles negative deviations
        drr = None if next_s is None else (next_s - beat_s) - rr
        # Intervals measured from a noise-like beat are not trusted (Li et al. 2008 bSQI idea).
        measured = None if self._anchor_similar and self._pending_similar else HrReason.ARTEFACT
        points = self._classify(anchor_s, beat_s, next_s, drr, mrr, median_rr, measured)
        # Thresholds come from the past only (causal), so update them after classifying.
        if drr is not None:
            self._abs_drr.append(abs(drr))
        self._abs_mrr.append(abs(mrr))
        self._irregular.append(points != [_Point(beat_s, rr, None)])
        if points is not None and sum(self._irregular) > self._config.max_irregular_beats:
            points = [p._replace(reason=p.reason or HrReason.ARTEFACT) for p in points]
        if points is None:
            # Extra beat: forget it; the successor is judged against the same anchor.
            self._pending = next_s
            return []
        last = points[-1]
        self._last_drr = 0.0 if next_s is None else (next_s - last.t_s) - last.ibi_s
        self._anchor_similar = last.t_s != beat_s or self._pending_similar
        self.anchor_s = last.t_s
        self._pending = next_s
        return points

    def _classify(
        self,
        anchor_s: float,
        beat_s: float,
        next_s: float | None,
        drr: float | None,
        mrr: float,
        median_rr: float,
        measured: HrReason | None,
    ) -> list[_Point] | None:
        c = self._config
        rr = beat_s - anchor_s
        if min(len(self._rr), len(self._abs_mrr), len(self._abs_drr)) < _MIN_HISTORY:
            return [self._point(beat_s, rr, measured)]
        th1 = max(c.min_threshold_s, _THRESHOLD_FACTOR * _quartile_deviation(self._abs_drr))
        th2 = max(c.min_threshold_s, _THRESHOLD_FACTOR * _quartile_deviation(self._abs_mrr))
        long_or_short = abs(mrr / th2) > _LONG_SHORT_LIMIT
        # Missed and extra beats first: with only the past neighbour the ectopic test would
        # also match them.
        if long_or_short and abs(rr / 2.0 - median_rr) < th2 and rr <= c.max_bridge_s:
            half_s = rr / 2.0  # missed beat: insert one in the middle
            return [
                self._point(anchor_s + half_s, half_s, measured),
                self._point(beat_s, half_s, measured),
            ]
        if next_s is None or drr is None:
            return [self._point(beat_s, rr, HrReason.ARTEFACT if long_or_short else measured)]
        if long_or_short and abs(next_s - anchor_s - median_rr) < th2:
            return None  # extra beat
        s11, s12 = drr / th1, self._last_drr / th1
        ectopic = (
            (s11 > 1 and s12 < -_C1 * s11 - _C2) or (s11 < -1 and s12 > -_C1 * s11 + _C2)
        ) and abs(drr) > c.ectopic_min_change * median_rr
        # Beats are only moved within a bridgeable span (bounds how far back output can change).
        if ectopic and next_s - anchor_s <= c.max_bridge_s:
            middle_s = 0.5 * (anchor_s + next_s)  # ectopic: interpolate the beat time
            return [self._point(middle_s, middle_s - anchor_s, None)]
        return [self._point(beat_s, rr, HrReason.ARTEFACT if long_or_short else measured)]

    def _point(self, t_s: float, ibi_s: float, reason: HrReason | None) -> _Point:
        if reason is None:
            hr_bpm = 60.0 / ibi_s
            if self._config.min_hr_bpm <= hr_bpm <= self._config.max_hr_bpm:
                self._rr.append(ibi_s)
            else:
                reason = HrReason.IMPLAUSIBLE_HR
        return _Point(t_s, ibi_s, reason)


class _Cell(NamedTuple):
    """Raw statistics of one cell (the 1/grid_hz interval centred on a grid time)."""

    n: int
    n_bad: int  # unusable samples (NaN/inf/out of range)
    lowest: float  # over usable samples
    highest: float
    at_lowest: int  # usable samples exactly at ``lowest``
    at_highest: int


_EMPTY_CELL = _Cell(0, 0, np.inf, -np.inf, 0, 0)


class _RawQuality:
    """Raw-signal quality per grid time from per-cell statistics.

    Cell ``k`` holds the samples with ``t`` in ``[(k - 0.5) / grid_hz, (k + 0.5) / grid_hz)``;
    its statistics are computed once, from all its samples, when it completes, so the result
    does not depend on chunking.
    The quality of grid time ``k`` is known once cell ``k + half`` is complete, i.e. once a
    sample of a later cell arrived.
    """

    __slots__ = (
        "_cell_n",
        "_cell_values",
        "_config",
        "_grid_hz",
        "_half",
        "_next_k",
        "_open_k",
        "_window",
    )

    def __init__(self, config: HeartRateConfig, grid_hz: float) -> None:
        self._config = config
        self._grid_hz = grid_hz
        self._half = max(1, round(0.5 * config.quality_window_s * grid_hz))
        self._window: deque[_Cell] = deque(maxlen=2 * self._half + 1)
        # Samples of the newest, still incomplete cell (capacity doubles if a cell overflows).
        self._cell_values: FloatArray = np.empty(256, dtype=np.float64)
        self._cell_n = 0
        self._open_k: int | None = None
        self._next_k: int | None = None  # first grid index whose quality is not known yet

    def push(self, t_s: FloatArray, x_mv: FloatArray) -> tuple[int, list[HrReason | None]]:
        """Add samples; return the first grid index and the reasons (None = good) of the grid
        points whose quality became known."""
        n = t_s.shape[0]
        if n == 0:
            return (self._next_k or 0), []
        if self._next_k is None:
            self._next_k = self._open_k = self._cell_of(float(t_s[0]))
            # Cells before the first sample do not exist: they count as empty neighbours.
            self._window.extend([_EMPTY_CELL] * self._half)
        first_k, open_k = self._next_k, self._open_k
        assert open_k is not None
        reasons: list[HrReason | None] = []
        last_k = self._cell_of(float(t_s[-1]))
        if last_k == open_k:  # common case: no cell completed
            self._keep(x_mv)
            return first_k, reasons
        # First sample of each later cell k: floor(v) >= k exactly when v >= k, and v is
        # non-decreasing, so a binary search finds it (empty cells give equal edges).
        position = t_s * self._grid_hz + 0.5
        edges = np.searchsorted(position, np.arange(open_k + 1, last_k + 1)).tolist()
        self._keep(x_mv[: edges[0]])
        self._close(self._stats(self._cell_values[: self._cell_n]), reasons)
        for start, stop in itertools.pairwise(edges):
            self._close(self._stats(x_mv[start:stop]), reasons)
        self._open_k, self._cell_n = last_k, 0
        self._keep(x_mv[edges[-1] :])
        return first_k, reasons

    def _cell_of(self, t_s: float) -> int:
        return math.floor(t_s * self._grid_hz + 0.5)

    def _keep(self, x_mv: FloatArray) -> None:
        stop = self._cell_n + x_mv.shape[0]
        if stop > self._cell_values.shape[0]:
            grown = np.empty(2 * stop, dtype=np.float64)
            grown[: self._cell_n] = self._cell_values[: self._cell_n]
            self._cell_values = grown
        self._cell_values[self._cell_n : stop] = x_mv
        self._cell_n = stop

    def _stats(self, values: FloatArray) -> _Cell:
        """Statistics of all the samples of one cell."""
        n = int(values.shape[0])
        if n == 0:
            return _EMPTY_CELL
        max_abs_mv = self._config.detector.max_abs_mv
        # The reductions called directly (no ndarray.min/max wrapper): once per cell.
        lowest, highest = float(np.minimum.reduce(values)), float(np.maximum.reduce(values))
        if not (-max_abs_mv <= lowest and highest <= max_abs_mv):  # some unusable (or NaN)
            values = values[usable_samples(values, max_abs_mv)]
            if values.shape[0] == 0:
                return _Cell(n, n, np.inf, -np.inf, 0, 0)
            lowest, highest = float(np.minimum.reduce(values)), float(np.maximum.reduce(values))
        return _Cell(
            n,
            n - int(values.shape[0]),
            lowest,
            highest,
            int(np.count_nonzero(values == lowest)),
            int(np.count_nonzero(values == highest)),
        )

    def _close(self, cell: _Cell, reasons: list[HrReason | None]) -> None:
        self._window.append(cell)
        if len(self._window) == self._window.maxlen:
            reasons.append(self._judge())
            assert self._next_k is not None
            self._next_k += 1

    def _judge(self) -> HrReason | None:
        """Quality of the grid time at the centre of the window (plain Python: 9 cells)."""
        cells = self._window
        middle = cells[self._half]
        if middle.n == 0:
            return HrReason.GAP
        if middle.n_bad > 0:
            return HrReason.INVALID_SAMPLES
        n, n_bad, lows, highs, at_lows, at_highs = zip(*cells, strict=True)
        highest, lowest = max(highs), min(lows)
        if highest - lowest < self._config.flat_ptp_mv:
            return HrReason.FLAT_LINE
        n_usable = sum(n) - sum(n_bad)
        pinned = sum(a for a, high in zip(at_highs, highs, strict=True) if high == highest) + sum(
            a for a, low in zip(at_lows, lows, strict=True) if low == lowest
        )
        if pinned >= self._config.saturation_fraction * n_usable:
            return HrReason.SATURATION
        return None


# Shared empty results (read-only): most pushes of a live stream finalise nothing new.
_NO_FLOATS: FloatArray = read_only(np.empty(0, dtype=np.float64))
_NO_BOOLS: BoolArray = read_only(np.empty(0, dtype=np.bool_))
_NO_GRID = GridSamples(t_s=_NO_FLOATS, values=_NO_FLOATS, valid=_NO_BOOLS)


class _GridPoint(NamedTuple):
    t_s: float
    hr_bpm: float
    reason: HrReason | None
    segment: int


class HeartRateProcessor:
    """The whole causal ECG chain for one person: raw ECG chunks in, heart rate on the grid out.

    ``push(timestamps_s, values_mv)`` accepts any chunk size (including 0) and returns what
    became final; the output does not depend on the chunking. Timestamps must strictly
    increase (else :class:`~dsp.exceptions.SignalError`, nothing is consumed). Grid samples lag
    the newest input by the beat look-ahead (about two beats plus the detection delay) when the
    signal is good, and by about ``quality_window_s / 2`` where the raw signal is bad.
    """

    __slots__ = (
        "_config",
        "_corrector",
        "_detector",
        "_grid_hz",
        "_next_k",
        "_points",
        "_quality",
        "_quality_reasons",
        "_segment",
        "_segment_starts_s",
    )

    def __init__(
        self,
        fs_hz: float,
        *,
        grid_hz: float = 4.0,
        config: HeartRateConfig = HeartRateConfig(),
    ) -> None:
        if not (np.isfinite(grid_hz) and 0.5 <= grid_hz <= 50.0):
            raise ConfigError(f"grid_hz={grid_hz!r} must be within 0.5..50 Hz", key="grid_hz")
        self._config = config
        self._grid_hz = float(grid_hz)
        self._detector = RPeakDetector(fs_hz, config=config.detector)
        self._quality = _RawQuality(config, self._grid_hz)
        self._quality_reasons: deque[HrReason | None] = deque()
        self._next_k: int | None = None
        self._segment = 0
        self._segment_starts_s: deque[float] = deque()
        self._corrector = BeatCorrector(config)
        # Corrected beats still needed to interpolate grid points not emitted yet.
        self._points: deque[_GridPoint] = deque()

    @property
    def detector(self) -> RPeakDetector:
        """The R-peak detector (for its ``max_delay_s``)."""
        return self._detector

    @property
    def grid_hz(self) -> float:
        return self._grid_hz

    def push(self, timestamps_s: npt.ArrayLike, values_mv: npt.ArrayLike) -> HeartRateOutput:
        """Process one chunk and return the grid samples and beats that became final."""
        t, x = check_chunk(timestamps_s, values_mv)
        peaks = self._detector.push(t, x)  # validates the timestamps before any state changes
        self._segment_starts_s.extend(self._detector.segment_starts_s)
        new_points: list[_GridPoint] = []
        min_similarity = self._config.detector.template_min_correlation
        # Python floats: iterating numpy arrays costs ~1 us per push even when empty.
        beats = zip(peaks.times_s.tolist(), peaks.similarity.tolist(), strict=True)
        for beat_s, similarity in beats:
            self._enter_segments_before(beat_s, new_points)
            similar = math.isnan(similarity) or similarity >= min_similarity
            for point in self._corrector.add(beat_s, similar=similar):
                self._add_point(point, new_points)
        final_through_s = self._detector.final_through_s
        self._enter_segments_before(final_through_s, new_points)
        for point in self._corrector.expire(final_through_s):
            self._add_point(point, new_points)
        first_k, reasons = self._quality.push(t, x)
        if self._next_k is None and reasons:
            self._next_k = first_k
        self._quality_reasons.extend(reasons)
        hr, reasons_out = self._emit(self._points_final_through(final_through_s))
        if not new_points:
            return HeartRateOutput(hr, reasons_out, _NO_FLOATS, _NO_FLOATS, _NO_BOOLS)
        return HeartRateOutput(
            hr=hr,
            reasons=reasons_out,
            beats_t_s=np.array([p.t_s for p in new_points], dtype=np.float64),
            ibi_s=np.array([60.0 / p.hr_bpm for p in new_points], dtype=np.float64),
            ibi_valid=np.array([p.reason is None for p in new_points], dtype=np.bool_),
        )

    def _add_point(self, point: _Point, new_points: list[_GridPoint]) -> None:
        grid_point = _GridPoint(point.t_s, 60.0 / point.ibi_s, point.reason, self._segment)
        new_points.append(grid_point)
        self._points.append(grid_point)

    def _enter_segments_before(self, t_s: float, new_points: list[_GridPoint]) -> None:
        """Start a new beat series for every segment break at or before ``t_s``; the last
        beat of the old one is final without a successor."""
        while self._segment_starts_s and self._segment_starts_s[0] <= t_s:
            self._segment_starts_s.popleft()
            for point in self._corrector.expire(np.inf):
                self._add_point(point, new_points)
            self._segment += 1
            self._corrector = BeatCorrector(self._config)

    def _points_final_through(self, detector_final_s: float) -> float:
        """No corrected beat earlier than this can appear any more.

        Corrections only move or insert beats between the last final beat (anchor) and a
        later raw beat, and only over spans <= max_bridge_s, hence this bound.
        """
        anchor_s = self._corrector.anchor_s
        if anchor_s is None:
            return detector_final_s
        limit_s = detector_final_s
        pending_s = self._corrector.pending_s
        if pending_s is not None:
            limit_s = min(limit_s, pending_s)
        if limit_s - anchor_s > self._config.max_bridge_s:
            return limit_s
        return anchor_s + 0.5 * max(0.0, limit_s - anchor_s)

    def _emit(self, final_through_s: float) -> tuple[GridSamples, tuple[HrReason | None, ...]]:
        ks: list[int] = []
        values: list[float] = []
        reasons: list[HrReason | None] = []
        while self._quality_reasons and self._next_k is not None:
            k = self._next_k
            t_s = k / self._grid_hz
            decided = self._decide(t_s, self._quality_reasons[0], final_through_s)
            if decided is None:
                break
            self._quality_reasons.popleft()
            ks.append(k)
            values.append(decided[0])
            reasons.append(decided[1])
            self._next_k = k + 1
            self._prune(t_s)
        if not ks:
            return _NO_GRID, ()
        k_array = np.asarray(ks, dtype=np.int64)
        value_array = np.asarray(values, dtype=np.float64)
        samples = GridSamples(
            t_s=k_array / self._grid_hz,
            values=value_array,
            valid=~np.isnan(value_array),
        )
        return samples, tuple(reasons)

    def _decide(
        self, t_s: float, quality: HrReason | None, final_through_s: float
    ) -> tuple[float, HrReason | None] | None:
        """(hr_bpm or NaN, reason) of grid time ``t_s``, or None if not final yet."""
        if quality is not None:
            return np.nan, quality
        after = before = None
        for point in self._points:  # a few beats: a plain loop beats next(generator)
            if point.t_s > t_s and point.reason is None:
                after = point
                break
        if after is None and t_s >= final_through_s:  # a beat may still appear at or before t_s
            return None
        for point in reversed(self._points):
            if point.t_s <= t_s and point.reason is None:
                before = point
                break
        bridge_s = self._config.max_bridge_s
        if after is None:
            if (
                before is not None
                and before.segment == self._segment
                and final_through_s - before.t_s <= bridge_s
            ):
                return None
            return np.nan, self._beat_reason(t_s, before)
        if before is None or before.segment != after.segment or after.t_s - before.t_s > bridge_s:
            return np.nan, self._beat_reason(t_s, before)
        weight = (t_s - before.t_s) / (after.t_s - before.t_s)
        return before.hr_bpm + weight * (after.hr_bpm - before.hr_bpm), None

    def _beat_reason(self, t_s: float, before: _GridPoint | None) -> HrReason:
        since_s = max(t_s - self._config.max_bridge_s, -np.inf if before is None else before.t_s)
        bad = {p.reason for p in self._points if since_s < p.t_s <= t_s and p.reason is not None}
        if HrReason.IMPLAUSIBLE_HR in bad:
            return HrReason.IMPLAUSIBLE_HR
        return HrReason.ARTEFACT if bad else HrReason.NO_BEATS

    def _prune(self, emitted_t_s: float) -> None:
        """Forget beats no later grid point can use (keeps memory bounded)."""
        horizon_s = emitted_t_s - self._config.max_bridge_s
        while len(self._points) > 1 and self._points[1].t_s <= horizon_s:
            self._points.popleft()

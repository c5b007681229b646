"""Causal QRS filtering and a streaming R-peak detector (Pan-Tompkins family).

Pipeline per continuous segment (Pan & Tompkins 1985, IEEE TBME 32(3):230-236):

1. causal Butterworth band-pass 5-15 Hz (the QRS energy band), state carried across chunks;
2. first difference (slope) and squaring;
3. moving-window integration over 150 ms (difference of running sums);
4. candidate peaks: local maxima of the integrated signal that dominate +-``lookahead_s``;
5. adaptive signal/noise peak levels and threshold, 200 ms refractory period, T-wave
   discrimination by slope within 360 ms, search-back at half threshold when no beat came for
   1.66 median RR intervals (capped at ``searchback_max_s``; the earliest eligible candidate
   is taken so several missed beats are recovered one by one), then a halved threshold;
6. the R peak is located on the raw signal (largest deviation from the local median, on the
   side most recent beats used, so either lead polarity works) in a short window before the
   integrated-energy peak, which compensates the filter and integration delay;
7. each beat's QRS is correlated with a running template (beat quality for the heart-rate
   chain: noise and ectopic beats are dissimilar).

Every decision is a function of the samples up to a fixed index after the candidate
(``lookahead_s`` for ordinary beats, the search-back deadline for recovered beats), and
events are processed in sample order, so the output is identical whatever the chunking.

Garbage input: unusable samples (NaN, inf, or beyond ``max_abs_mv``, which no body-surface
ECG reaches) and timestamp gaps longer than ``max_gap_intervals`` nominal sample intervals
end the current segment; the detector restarts (with a new learning phase) at the next
usable sample. Non-increasing or non-finite timestamps raise
:class:`~dsp.exceptions.SignalError` and the chunk is not consumed (the streamer must
deliver dejittered, increasing LSL timestamps).
"""

from __future__ import annotations

import itertools
import math
from collections import deque
from dataclasses import dataclass
from typing import NamedTuple, TypeVar

import numpy as np
import numpy.typing as npt

from dsp.exceptions import ConfigError, SignalError
from dsp.filters import StreamingSosFilter, butter_sos
from dsp.sliding_buffer import SlidingBuffer
from dsp.types import BoolArray, FloatArray, IntArray
from dsp.validation import require_finite_positive

MIN_FS_HZ = 50.0
MAX_FS_HZ = 5000.0

# Buffer rows: time, raw ECG, slope, running sum of squared slope, integrated energy.
_ROW_T, _ROW_X, _ROW_SLOPE, _ROW_SUM, _ROW_ENERGY = range(5)
_N_ROWS = 5
_BLOCK_S = 4.0  # longest piece processed at once (bounds the work arrays)

_ArrayT = TypeVar("_ArrayT", bound=npt.NDArray[np.generic])

# The ufuncs behind ndarray.max()/min()/cumsum(), called directly: same results without
# ~0.7 us of Python wrapper each, and the per-chunk path makes several such calls.
_max = np.maximum.reduce
_min = np.minimum.reduce
_cumsum = np.add.accumulate

# Peaks found during one push: (r_index, r_time_s, delay_s, similarity).
_Found = list[tuple[int, float, float, float]]


def _require(condition: bool, key: str, value: object, allowed: str) -> None:
    if not condition:
        raise ConfigError(f"{key}={value!r} is invalid: {allowed}", key=key)


@dataclass(frozen=True, slots=True, kw_only=True)
class RPeakConfig:
    """Parameters of :class:`RPeakDetector` (defaults after Pan & Tompkins 1985)."""

    band_hz: tuple[float, float] = (5.0, 15.0)
    """QRS energy band: Pan & Tompkins 1985 use a 5-15 Hz band-pass."""
    filter_order: int = 2
    """Butterworth order per band edge (4 poles in total); low order keeps the group delay short."""
    integration_s: float = 0.150
    """Moving-window integration length, about the widest normal QRS (Pan & Tompkins 1985)."""
    lookahead_s: float = 0.150
    """A candidate must dominate the integrated signal this long on each side; this is the
    detection delay after the energy peak for ordinary beats."""
    refractory_s: float = 0.200
    """No second QRS within 200 ms (physiological refractory period, Pan & Tompkins 1985)."""
    twave_s: float = 0.360
    """Candidates within 360 ms of a beat with < half its slope are T waves (Pan-Tompkins 1985)."""
    twave_slope_ratio: float = 0.5
    """Slope ratio of that T-wave test (Pan & Tompkins 1985: half)."""
    learning_s: float = 2.0
    """Learning phase that initialises the signal/noise levels (Pan & Tompkins 1985: 2 s)."""
    searchback_rr_factor: float = 1.66
    """Search back for a missed beat after 1.66 RR intervals (Pan & Tompkins 1985; we take the
    median of the last 8 RR rather than the mean, so missed beats do not stretch it)."""
    searchback_max_s: float = 2.0
    """Cap on the search-back interval (ours); bounds the detection delay of recovered beats."""
    r_search_s: tuple[float, float] = (0.250, 0.050)
    """The R peak is searched on the raw signal from this long before to this long before the
    integrated-energy peak (the energy peak trails the R peak by about half the integration
    window plus the band-pass group delay)."""
    min_qrs_mv: float = 0.05
    """Smallest band-passed QRS amplitude accepted as a beat; ECG QRS complexes are >= ~0.3 mV,
    so this only rejects flat lines and electrode noise."""
    max_gap_intervals: float = 3.0
    """A timestamp step longer than this many nominal sample intervals is a gap (segment break)."""
    template_s: float = 0.06
    """Half-width of the QRS window compared with the running beat template (a QRS lasts
    ~80-120 ms)."""
    template_min_correlation: float = 0.7
    """Beats whose QRS correlates less with the running template are reported as dissimilar
    (template-matching beat quality, Li, Mark & Clifford 2008, Physiol Meas 29(1):15-32)."""
    template_max_amplitude_ratio: float = 2.0
    """A QRS more than twice as large (or less than half as large) as the template is not
    similar whatever its shape (movement artefacts are large spikes of QRS-like shape)."""
    template_weight: float = 0.125
    """Weight of a new similar beat in the averaged template (as Pan & Tompkins' level updates)."""
    template_relearn_beats: int = 4
    """This many dissimilar beats in a row that resemble each other mean the morphology changed:
    they become the template."""
    max_abs_mv: float = 50.0
    """Samples beyond +-50 mV are unusable (body-surface ECG stays within a few mV; larger values
    are unit errors or amplifier rail noise) and are treated like NaN."""

    def __post_init__(self) -> None:
        low_hz, high_hz = self.band_hz
        _require(0.0 < low_hz < high_hz, "band_hz", self.band_hz, "need 0 < low < high (Hz)")
        _require(1 <= self.filter_order <= 6, "filter_order", self.filter_order, "1..6")
        require_finite_positive(
            self,
            (
                "integration_s",
                "lookahead_s",
                "refractory_s",
                "learning_s",
                "searchback_max_s",
                "min_qrs_mv",
                "max_abs_mv",
                "template_s",
            ),
        )
        _require(self.twave_s >= self.refractory_s, "twave_s", self.twave_s, ">= refractory_s")
        _require(
            0.0 < self.twave_slope_ratio <= 1.0,
            "twave_slope_ratio",
            self.twave_slope_ratio,
            "(0, 1]",
        )
        _require(
            self.searchback_rr_factor > 1.0,
            "searchback_rr_factor",
            self.searchback_rr_factor,
            "> 1",
        )
        before_s, after_s = self.r_search_s
        _require(
            0.0 <= after_s < before_s, "r_search_s", self.r_search_s, "need 0 <= after < before (s)"
        )
        _require(
            -1.0 < self.template_min_correlation < 1.0,
            "template_min_correlation",
            self.template_min_correlation,
            "(-1, 1)",
        )
        _require(
            self.template_max_amplitude_ratio > 1.0,
            "template_max_amplitude_ratio",
            self.template_max_amplitude_ratio,
            "> 1",
        )
        _require(
            0.0 < self.template_weight <= 1.0, "template_weight", self.template_weight, "(0, 1]"
        )
        _require(
            self.template_relearn_beats >= 1,
            "template_relearn_beats",
            self.template_relearn_beats,
            ">= 1",
        )
        _require(
            self.max_gap_intervals >= 1.5, "max_gap_intervals", self.max_gap_intervals, ">= 1.5"
        )


class RPeaks(NamedTuple):
    """R peaks that became final during one :meth:`RPeakDetector.push`.

    ``indices``: absolute sample index since the detector started (int64); ``times_s``: the
    timestamps of those samples; ``delays_s``: for each peak, the time from the R peak to the
    sample whose arrival made it final (algorithmic detection delay; add your chunk latency);
    ``similarity``: correlation of the beat's QRS with the running template of the segment,
    0 if its amplitude is off by more than ``config.template_max_amplitude_ratio`` (NaN for the
    first beat of a segment or too close to its start); below
    ``config.template_min_correlation`` the beat is probably noise or an ectopic beat.
    """

    indices: IntArray
    times_s: FloatArray
    delays_s: FloatArray
    similarity: FloatArray

    @staticmethod
    def empty() -> RPeaks:
        """No peaks (a shared read-only instance: most pushes finalise none)."""
        return _NO_PEAKS


def read_only(array: _ArrayT) -> _ArrayT:
    """Mark ``array`` read-only (for shared constant results) and return it."""
    array.flags.writeable = False
    return array


_NO_PEAKS = RPeaks(
    read_only(np.empty(0, dtype=np.int64)),
    read_only(np.empty(0, dtype=np.float64)),
    read_only(np.empty(0, dtype=np.float64)),
    read_only(np.empty(0, dtype=np.float64)),
)


class ContinuousRun(NamedTuple):
    """Finite, gap-free samples ``[start, stop)`` of a chunk; ``new_segment`` if it breaks
    continuity with the samples before it."""

    start: int
    stop: int
    new_segment: bool


class ContinuityTracker:
    """Validates timestamps and splits chunks into continuous runs of usable samples
    (finite, within +-``max_abs_mv``).

    Raises :class:`SignalError` for non-finite or non-increasing timestamps.
    """

    __slots__ = ("_last_t_s", "_last_usable", "_max_abs_mv", "_max_gap_s")

    def __init__(self, *, max_gap_s: float, max_abs_mv: float) -> None:
        self._max_gap_s = max_gap_s
        self._max_abs_mv = max_abs_mv
        self._last_t_s = -np.inf
        self._last_usable = False

    @property
    def last_t_s(self) -> float:
        """Timestamp of the newest sample seen (-inf before the first)."""
        return self._last_t_s

    def split(self, timestamps_s: FloatArray, values_mv: FloatArray) -> list[ContinuousRun]:
        """Continuous runs of usable samples of one chunk."""
        n = int(timestamps_s.shape[0])
        if n == 0:
            return []
        if self._is_clean(timestamps_s, values_mv):  # the common case, in a few numpy calls
            self._last_t_s = float(timestamps_s[-1])
            was_usable, self._last_usable = self._last_usable, True
            return [ContinuousRun(0, n, not was_usable)]
        usable = usable_samples(values_mv, self._max_abs_mv)
        if not np.isfinite(timestamps_s).all():
            raise SignalError("timestamps contain NaN/inf; every sample needs a finite LSL time")
        steps_s = np.empty(n, dtype=np.float64)
        steps_s[0] = timestamps_s[0] - self._last_t_s
        np.subtract(timestamps_s[1:], timestamps_s[:-1], out=steps_s[1:])
        if not (steps_s > 0).all():
            bad = int(np.flatnonzero(~(steps_s > 0))[0])
            previous = self._last_t_s if bad == 0 else float(timestamps_s[bad - 1])
            raise SignalError(
                f"timestamps must strictly increase: sample {bad} of the chunk has "
                f"t={timestamps_s[bad]!r} after t={previous!r}; enable dejittering in the "
                "inlet or drop duplicate samples"
            )
        gap_before = steps_s > self._max_gap_s
        previous_usable = np.empty(n, dtype=np.bool_)
        previous_usable[0] = self._last_usable
        previous_usable[1:] = usable[:-1]
        boundaries = np.flatnonzero(gap_before | (usable != previous_usable))
        edges = [0, *[int(b) for b in boundaries if b != 0], n]
        runs = [
            ContinuousRun(start, stop, bool(gap_before[start] or not previous_usable[start]))
            for start, stop in itertools.pairwise(edges)
            if usable[start]
        ]
        self._last_t_s = float(timestamps_s[-1])
        self._last_usable = bool(usable[-1])
        return runs

    def _is_clean(self, timestamps_s: FloatArray, values_mv: FloatArray) -> bool:
        """Every step in (0, max_gap_s] (so every timestamp is finite: the first step from
        -inf is not) and every value usable. NaN fails every comparison, so it is caught."""
        max_gap_s, max_abs_mv = self._max_gap_s, self._max_abs_mv
        if not (0.0 < float(timestamps_s[0]) - self._last_t_s <= max_gap_s):
            return False
        if not (-max_abs_mv <= _min(values_mv) and _max(values_mv) <= max_abs_mv):
            return False
        if timestamps_s.shape[0] == 1:
            return True
        steps_s = timestamps_s[1:] - timestamps_s[:-1]
        return bool(_min(steps_s) > 0.0 and _max(steps_s) <= max_gap_s)


def check_chunk(
    timestamps_s: npt.ArrayLike, values: npt.ArrayLike
) -> tuple[FloatArray, FloatArray]:
    """Convert a chunk to 1-D float64 arrays of equal length or raise :class:`SignalError`."""
    t = np.asarray(timestamps_s, dtype=np.float64)
    x = np.asarray(values, dtype=np.float64)
    if t.ndim != 1 or x.ndim != 1 or t.shape != x.shape:
        raise SignalError(
            "push needs 1-D timestamps and values of equal length, got shapes "
            f"{t.shape} and {x.shape}"
        )
    return t, x


def usable_samples(values_mv: FloatArray, max_abs_mv: float) -> BoolArray:
    """Finite samples within +-``max_abs_mv`` (NaN compares False without a warning)."""
    return np.asarray(np.abs(values_mv) <= max_abs_mv, dtype=np.bool_)


def check_fs(fs_hz: float) -> float:
    """Validate a nominal sampling rate (ConfigError outside [MIN_FS_HZ, MAX_FS_HZ])."""
    _require(
        bool(np.isfinite(fs_hz) and MIN_FS_HZ <= fs_hz <= MAX_FS_HZ),
        "fs_hz",
        fs_hz,
        f"ECG sampling rate must be within {MIN_FS_HZ:g}..{MAX_FS_HZ:g} Hz",
    )
    return float(fs_hz)


class _SampleCounts(NamedTuple):
    """The configured durations in samples at the detector's rate (computed once: the
    per-push path must not redo the arithmetic)."""

    integration: int
    lookahead: int
    refractory: int
    twave: int
    learning: int
    searchback_max: int
    r_before: int  # R search window start, before the energy peak
    r_after: int  # R search window end, before the energy peak (may be 0)
    template_half: int

    @staticmethod
    def of(config: RPeakConfig, fs_hz: float) -> _SampleCounts:
        def samples(duration_s: float) -> int:
            return max(1, round(duration_s * fs_hz))

        return _SampleCounts(
            integration=samples(config.integration_s),
            lookahead=samples(config.lookahead_s),
            refractory=samples(config.refractory_s),
            twave=samples(config.twave_s),
            learning=samples(config.learning_s),
            searchback_max=samples(config.searchback_max_s),
            r_before=samples(config.r_search_s[0]),
            r_after=round(config.r_search_s[1] * fs_hz),
            template_half=samples(config.template_s),
        )


class _Candidate(NamedTuple):
    energy_index: int  # index of the integrated-energy maximum
    energy: float
    slope: float  # largest |slope| in the integration window before it


class _Segment:
    """Detection state of one continuous segment (reset at every break)."""

    __slots__ = (
        "alternative",
        "alternative_count",
        "deadline",
        "last_beat_energy_index",
        "last_r_index",
        "last_slope",
        "learned",
        "learning_end",
        "low_threshold",
        "next_scan_index",
        "noise_level",
        "pending",
        "polarity_votes",
        "rr_samples",
        "signal_level",
        "start",
        "stored",
        "template",
    )

    def __init__(self, start: int) -> None:
        self.start = start
        self.next_scan_index = start + 1
        self.learned = False
        self.learning_end = start
        self.signal_level = 0.0
        self.noise_level = 0.0
        self.pending: list[_Candidate] = []  # found during the learning phase
        self.stored: list[_Candidate] = []  # sub-threshold candidates for search-back
        self.rr_samples: deque[int] = deque(maxlen=8)  # Pan & Tompkins RR average over 8 beats
        self.polarity_votes: deque[int] = deque(maxlen=8)  # +1: R up, -1: R down
        self.last_beat_energy_index = start
        self.last_r_index = -1
        self.last_slope = 0.0
        self.low_threshold = False
        self.deadline = -1
        self.template: FloatArray | None = None
        self.alternative: FloatArray | None = None  # template of recent dissimilar beats
        self.alternative_count = 0


class RPeakDetector:
    """Streaming R-peak detector for one ECG channel sampled at ``fs_hz`` (nominal).

    Feed chunks of any size with :meth:`push`; it returns only peaks that became final. Peak
    indices count every sample pushed since construction (including unusable ones).
    ``max_delay_s`` bounds the detection delay; ``final_through_s`` tells consumers that no
    R peak earlier than that time will ever be reported.
    """

    __slots__ = (
        "_bandpass",
        "_buffer",
        "_config",
        "_continuity",
        "_counts",
        "_energy_floor",
        "_fs_hz",
        "_n",
        "_previous_bandpassed",
        "_segment",
        "_segment_starts_s",
    )

    def __init__(self, fs_hz: float, *, config: RPeakConfig = RPeakConfig()) -> None:
        self._fs_hz = check_fs(fs_hz)
        self._config = config
        self._bandpass = StreamingSosFilter(
            butter_sos(
                order=config.filter_order, cutoff_hz=config.band_hz, fs_hz=fs_hz, btype="bandpass"
            )
        )
        self._counts = _SampleCounts.of(config, self._fs_hz)
        self._previous_bandpassed = 0.0
        self._segment_starts_s: list[float] = []
        # Integrated squared slope of a sine burst of amplitude min_qrs_mv at the band centre.
        centre_hz = float(np.sqrt(config.band_hz[0] * config.band_hz[1]))
        self._energy_floor = 0.5 * (2.0 * np.pi * centre_hz * config.min_qrs_mv) ** 2
        self._continuity = ContinuityTracker(
            max_gap_s=config.max_gap_intervals / fs_hz, max_abs_mv=config.max_abs_mv
        )
        history_s = (
            max(config.learning_s, config.searchback_max_s)
            + 2.0 * config.lookahead_s
            + config.integration_s
            + config.r_search_s[0]
            + 0.5
        )
        self._buffer = SlidingBuffer(
            n_rows=_N_ROWS,
            keep=round(history_s * self._fs_hz),
            max_append=round(_BLOCK_S * self._fs_hz),
        )
        self._n = 0
        self._segment: _Segment | None = None

    @property
    def fs_hz(self) -> float:
        return self._fs_hz

    @property
    def config(self) -> RPeakConfig:
        return self._config

    @property
    def max_delay_s(self) -> float:
        """Upper bound of the detection delay of any peak: beats found during the learning
        phase wait for its end; a beat recovered by search-back waits for the deadline, at
        most ``searchback_max_s`` after the previous beat's energy peak, and its R peak may lie
        up to ``r_search_s[0] - refractory_s`` before the earliest allowed energy peak."""
        c = self._config
        searchback_s = c.searchback_max_s + max(0.0, c.r_search_s[0] - c.refractory_s)
        return max(c.learning_s, searchback_s) + c.lookahead_s

    @property
    def final_through_s(self) -> float:
        """No R peak with a timestamp before this will be reported any more (-inf at start)."""
        segment = self._segment
        if segment is None:
            return self._continuity.last_t_s
        earliest_energy = segment.next_scan_index
        if segment.pending:
            earliest_energy = segment.pending[0].energy_index
        if segment.stored:
            earliest_energy = min(earliest_energy, segment.stored[0].energy_index)
        earliest = max(segment.start, earliest_energy - self._counts.r_before)
        if earliest >= self._buffer.end_index:
            return self._continuity.last_t_s
        return self._buffer.value(_ROW_T, earliest)

    @property
    def segment_starts_s(self) -> tuple[float, ...]:
        """Times of the first sample of every segment begun during the last :meth:`push`
        (detection restarts there: after a gap, unusable samples, or the very first sample).
        No beat interval may span one."""
        return tuple(self._segment_starts_s)

    def reset(self) -> None:
        """End the current segment; detection restarts with a learning phase."""
        self._segment = None

    def push(self, timestamps_s: npt.ArrayLike, values_mv: npt.ArrayLike) -> RPeaks:
        """Process one chunk (any length) and return the R peaks that became final."""
        t, x = check_chunk(timestamps_s, values_mv)
        runs = self._continuity.split(t, x)
        found: _Found = []
        self._segment_starts_s = []
        block = self._buffer.max_append
        for run in runs:
            if run.new_segment or self._segment is None:
                self._start_segment(self._n + run.start)
                self._segment_starts_s.append(float(t[run.start]))
            for start in range(run.start, run.stop, block):
                stop = min(run.stop, start + block)
                self._process_block(t[start:stop], x[start:stop], found)
        self._n += int(t.shape[0])
        if not found:
            return RPeaks.empty()
        indices, times_s, delays_s, similarity = zip(*found, strict=True)
        return RPeaks(
            np.array(indices, dtype=np.int64),
            np.array(times_s, dtype=np.float64),
            np.array(delays_s, dtype=np.float64),
            np.array(similarity, dtype=np.float64),
        )

    def _start_segment(self, start: int) -> None:
        self._bandpass.reset()
        self._previous_bandpassed = np.nan  # first slope of a segment is defined as 0
        self._segment = _Segment(start)
        # Skipped (unusable) samples are never read, but buffer index == sample index.
        self._buffer.skip_to(start)

    def _process_block(self, t: FloatArray, x: FloatArray, found: _Found) -> None:
        n = t.shape[0]
        segment = self._segment
        assert segment is not None
        bandpassed = self._bandpass.process_finite(x)  # the runs hold usable samples only
        start = self._buffer.end_index
        # Compute straight into the buffer columns of the new samples (no temporaries).
        rows = self._buffer.extend(n)
        rows[_ROW_T] = t
        rows[_ROW_X] = x
        slope, sums, energy = rows[_ROW_SLOPE], rows[_ROW_SUM], rows[_ROW_ENERGY]
        previous = self._previous_bandpassed
        # The first slope of a segment is defined as 0.
        slope[0] = bandpassed[0] - (bandpassed[0] if math.isnan(previous) else previous)
        np.subtract(bandpassed[1:], bandpassed[:-1], out=slope[1:])
        slope *= self._fs_hz
        self._previous_bandpassed = float(bandpassed[-1])
        # Moving-window integration as a difference of running sums S (S = 0 before the
        # segment). cumsum is a sequential scan, so continuing it from the previous sum gives
        # the same bits whatever the chunking.
        np.multiply(slope, slope, out=sums)
        # Continue from the previous sum (written through the buffer view, deliberately).
        running = (
            self._buffer.view(_ROW_SUM, start - 1, start + n) if start > segment.start else sums
        )
        _cumsum(running, out=running)
        width = self._counts.integration
        # energy[i] = (S[i] - S[i - width]) / width; S[i - width] is 0 before the segment.
        n_head = min(n, max(0, segment.start + width - start))
        if n_head:
            np.divide(sums[:n_head], width, out=energy[:n_head])
        if n_head < n:
            lagged = self._buffer.view(_ROW_SUM, start + n_head - width, start + n - width)
            np.subtract(sums[n_head:], lagged, out=energy[n_head:])
            energy[n_head:] /= width
        self._scan(found)

    # -- candidate search (vectorised per block) ---------------------------------------
    def _scan(self, found: _Found) -> None:
        segment = self._segment
        assert segment is not None
        lookahead = self._counts.lookahead
        end = self._buffer.end_index
        scan_stop = end - lookahead  # candidates [next_scan_index, scan_stop) are decidable
        if scan_stop > segment.next_scan_index:
            first = segment.next_scan_index
            energy = self._buffer.view(_ROW_ENERGY, first - 1, scan_stop + 1)
            here = energy[1:-1]
            for position in self._maybe_candidates(energy, lookahead):
                index = first + position
                window = self._buffer.view(
                    _ROW_ENERGY, max(segment.start, index - lookahead), index + lookahead + 1
                )
                # A candidate rises into its maximum and dominates +-lookahead.
                if energy[position] < here[position] and _max(window) == here[position]:
                    segment.pending.append(self._candidate(segment, index))
            segment.next_scan_index = scan_stop
        if not segment.learned:
            learning_end = segment.start + self._counts.learning
            if end < learning_end:
                return
            self._learn(segment, learning_end)
        decided_through = segment.next_scan_index - 1
        for candidate in segment.pending:
            self._run_deadlines(segment, candidate.energy_index - 1, found)
            self._classify(segment, candidate, found)
        segment.pending.clear()
        self._run_deadlines(segment, decided_through, found)

    def _maybe_candidates(self, energy: FloatArray, lookahead: int) -> list[int]:
        """Positions in ``energy[1:-1]`` that pass cheap necessary conditions of a candidate
        (a superset of the candidates; ``energy`` has one extra sample on each side)."""
        here = energy[1:-1]
        if here.shape[0] <= lookahead:
            # The +-lookahead window of any candidate spans the whole range (the usual live
            # chunk), so a candidate is the range's maximum: one reduction rejects most chunks.
            peak = _max(here)
            return np.flatnonzero(here == peak).tolist() if peak > self._energy_floor else []
        # Rising into, not rising out of, above the floor.
        rising = (here > energy[:-2]) & (here >= energy[2:]) & (here > self._energy_floor)
        return np.flatnonzero(rising).tolist()

    def _candidate(self, segment: _Segment, energy_index: int) -> _Candidate:
        n_integration = self._counts.integration
        slope = self._buffer.view(
            _ROW_SLOPE, max(segment.start, energy_index - n_integration), energy_index + 1
        )
        return _Candidate(
            energy_index=energy_index,
            energy=self._buffer.value(_ROW_ENERGY, energy_index),
            slope=float(np.abs(slope).max()),
        )

    def _locate_r(self, segment: _Segment, energy_index: int) -> int:
        """The R peak: the largest deviation from the local median before the energy peak,
        on the side (up or down) most recent beats of the segment used, so a biphasic QRS is
        always marked on the same wave whatever the lead polarity."""
        r_start = max(segment.start, energy_index - self._counts.r_before)
        r_stop = max(r_start + 1, energy_index - self._counts.r_after + 1)
        raw = self._buffer.view(_ROW_X, r_start, r_stop)
        deviation = raw - _median(raw)
        up, down = int(np.argmax(deviation)), int(np.argmin(deviation))
        larger_is_up = deviation[up] >= -deviation[down]
        segment.polarity_votes.append(1 if larger_is_up else -1)
        votes = sum(segment.polarity_votes)
        use_up = votes > 0 or (votes == 0 and larger_is_up)
        return r_start + (up if use_up else down)

    # -- decisions (per candidate, in sample order) ------------------------------------
    def _learn(self, segment: _Segment, learning_end: int) -> None:
        energy = np.array(self._buffer.view(_ROW_ENERGY, segment.start, learning_end))
        # Pan & Tompkins 1985 initialisation: signal level 1/3 of the maximum, noise 1/2 mean.
        segment.signal_level = float(np.max(energy)) / 3.0
        segment.noise_level = float(np.mean(energy)) / 2.0
        segment.learned = True
        segment.deadline = segment.start + self._counts.searchback_max
        segment.learning_end = learning_end

    def _threshold(self, segment: _Segment) -> float:
        primary = _primary_threshold(segment)
        return 0.5 * primary if segment.low_threshold else primary

    def _classify(self, segment: _Segment, candidate: _Candidate, found: _Found) -> None:
        since_beat = candidate.energy_index - segment.last_beat_energy_index
        has_beat = segment.last_r_index >= 0
        if has_beat and since_beat < self._counts.refractory:
            return
        if candidate.energy > self._threshold(segment) and not self._is_twave(segment, candidate):
            segment.signal_level = 0.125 * candidate.energy + 0.875 * segment.signal_level
            decision = candidate.energy_index + self._counts.lookahead
            self._accept(segment, candidate, decision, found)
            return
        segment.noise_level = 0.125 * candidate.energy + 0.875 * segment.noise_level
        if not segment.low_threshold:
            segment.stored.append(candidate)

    def _is_twave(self, segment: _Segment, candidate: _Candidate) -> bool:
        return (
            segment.last_r_index >= 0
            and candidate.energy_index - segment.last_beat_energy_index < self._counts.twave
            and candidate.slope < self._config.twave_slope_ratio * segment.last_slope
        )

    def _run_deadlines(self, segment: _Segment, decided_through: int, found: _Found) -> None:
        lookahead = self._counts.lookahead
        while segment.deadline <= decided_through:
            deadline = segment.deadline
            primary = _primary_threshold(segment)
            # The earliest plausible candidate, not the largest: when several beats were
            # missed (after a noise burst inflated the levels) each is recovered in turn.
            best = next(
                (
                    k
                    for k in segment.stored
                    if k.energy_index <= deadline
                    and k.energy > 0.5 * primary
                    and not self._is_twave(segment, k)
                ),
                None,
            )
            # Candidates up to the deadline are used up (so all those kept lie after ``best``).
            segment.stored = [k for k in segment.stored if k.energy_index > deadline]
            if best is not None:
                # Pan & Tompkins 1985: a beat found by search-back updates the level faster.
                segment.signal_level = 0.25 * best.energy + 0.75 * segment.signal_level
                self._accept(segment, best, deadline + lookahead, found)
            else:
                segment.low_threshold = True
                segment.stored.clear()
                segment.signal_level = max(0.5 * segment.signal_level, segment.noise_level)
                segment.deadline = deadline + self._searchback_samples(segment)

    def _searchback_samples(self, segment: _Segment) -> int:
        c = self._config
        limit = self._counts.searchback_max
        if segment.rr_samples:
            # Median rather than Pan & Tompkins' mean: missed beats must not stretch the limit.
            ordered = sorted(segment.rr_samples)  # <= 8 values: plain Python is cheapest
            middle = len(ordered) // 2
            typical_rr = (ordered[middle] + ordered[(len(ordered) - 1) // 2]) / 2.0
            limit = min(limit, round(c.searchback_rr_factor * typical_rr))
        return max(limit, self._counts.refractory + 1)

    def _accept(
        self,
        segment: _Segment,
        candidate: _Candidate,
        decision_index: int,
        found: _Found,
    ) -> None:
        r_index = self._locate_r(segment, candidate.energy_index)
        if segment.last_r_index >= 0:
            segment.rr_samples.append(r_index - segment.last_r_index)
        segment.last_r_index = r_index
        segment.last_beat_energy_index = candidate.energy_index
        segment.last_slope = candidate.slope
        segment.low_threshold = False
        segment.stored = [k for k in segment.stored if k.energy_index > candidate.energy_index]
        segment.deadline = candidate.energy_index + self._searchback_samples(segment)
        # Beats of the learning phase are only decided when it ends.
        decided = max(decision_index, segment.learning_end - 1)
        r_time_s = self._buffer.value(_ROW_T, r_index)
        delay_s = self._buffer.value(_ROW_T, decided) - r_time_s
        found.append((r_index, r_time_s, delay_s, self._similarity(segment, r_index)))

    def _similarity(self, segment: _Segment, r_index: int) -> float:
        """Correlate the beat's QRS with the segment template and update the template."""
        c = self._config
        half = self._counts.template_half
        start = r_index - half
        if start < segment.start:
            return np.nan
        # A fresh copy: results must not depend on where the window sits in the buffer.
        qrs = np.array(self._buffer.view(_ROW_X, start, r_index + half + 1))
        qrs -= qrs.sum() / qrs.shape[0]  # np.mean's arithmetic, without its call overhead
        if segment.template is None:
            segment.template = qrs
            return np.nan
        similarity = _similarity(qrs, segment.template, c.template_max_amplitude_ratio)
        if similarity >= c.template_min_correlation:
            segment.template = _blend(segment.template, qrs, c.template_weight)
            segment.alternative = None
            return similarity
        # A lasting morphology change (electrode moved, new rhythm) shows as dissimilar beats
        # that resemble each other; noise does not, so only the former replaces the template.
        alternative = segment.alternative
        if (
            alternative is not None
            and _similarity(qrs, alternative, c.template_max_amplitude_ratio)
            >= c.template_min_correlation
        ):
            segment.alternative = _blend(alternative, qrs, c.template_weight)
            segment.alternative_count += 1
        else:
            segment.alternative = qrs
            segment.alternative_count = 1
        if segment.alternative_count >= c.template_relearn_beats:
            segment.template, segment.alternative = segment.alternative, None
        return similarity


def _primary_threshold(segment: _Segment) -> float:
    """Pan & Tompkins 1985 THRESHOLD I1: a quarter of the way from the noise to the signal
    level (halved while searching back or after a missed search-back)."""
    return segment.noise_level + 0.25 * (segment.signal_level - segment.noise_level)


def _similarity(qrs: FloatArray, template: FloatArray, max_amplitude_ratio: float) -> float:
    """Pearson correlation of two zero-mean windows; 0 if one is flat or their amplitudes
    differ by more than ``max_amplitude_ratio``."""
    energy_qrs, energy_template = float((qrs * qrs).sum()), float((template * template).sum())
    if not (energy_qrs > 0 and energy_template > 0):
        return 0.0
    if not (max_amplitude_ratio**-2 <= energy_qrs / energy_template <= max_amplitude_ratio**2):
        return 0.0
    return float((qrs * template).sum()) / math.sqrt(energy_qrs * energy_template)


def _median(values: FloatArray) -> float:
    """``np.median`` of finite values with the same arithmetic (the mean of the middle pair of
    the sorted values) but without its ~15 us of per-call overhead (paid once per beat)."""
    ordered = np.sort(values)
    n = ordered.shape[0]
    return float((ordered[(n - 1) // 2] + ordered[n // 2]) / 2.0)


def _blend(template: FloatArray, qrs: FloatArray, weight: float) -> FloatArray:
    return (1.0 - weight) * template + weight * qrs


def detect_r_peaks(
    x: npt.ArrayLike,
    fs_hz: float,
    *,
    config: RPeakConfig = RPeakConfig(),
) -> IntArray:
    """Sample indices of R peaks in ``x`` (batch convenience over :class:`RPeakDetector`).

    Runs the streaming detector causally over the whole array with timestamps ``i / fs_hz``;
    the result equals what a live session would have produced.
    """
    values = np.asarray(x, dtype=np.float64)
    if values.ndim != 1:
        raise SignalError(f"detect_r_peaks needs a 1-D signal, got shape {values.shape}")
    detector = RPeakDetector(fs_hz, config=config)
    timestamps_s = np.arange(values.shape[0], dtype=np.float64) / detector.fs_hz
    return detector.push(timestamps_s, values).indices

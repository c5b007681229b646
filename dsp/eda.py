"""Streaming electrodermal activity: skin conductance level (SCL), phasic EDA and SCRs.

Chain (everything causal, state carried across chunks, output independent of chunking)::

    raw uS --quality codes (dsp.eda_quality)--> mask invalid samples
           --low-pass Butterworth (order 4, 3 Hz)--> linear interpolation onto the grid k/grid_hz
           --high-pass Butterworth (order 1, 0.05 Hz)--> phasic;  SCL = cleaned - phasic
           --trough/peak detection with hysteresis on the phasic--> SCR events

Rules a caller can rely on:

* ``push(timestamps_s, values_us)`` accepts any chunk size (also 0) and returns only grid
  samples and SCRs that are final. Concatenating the outputs of any chunking gives exactly
  the one-shot output.
* Timestamps must be finite and strictly increasing within and across chunks; otherwise
  :class:`~dsp.exceptions.SignalError` is raised and the processor state is left unchanged.
* Invalid input is never interpolated over: a grid sample whose raw neighbourhood contains a
  gap (more than ``max_gap_s`` between samples), a NaN/inf, an out-of-range, clipped or
  flat-line sample has ``valid=False``, ``values=NaN`` and a quality code; the filters and
  the SCR detector restart after it and stay invalid (``settling``) for ``settle_s``.
* Low sampling rates: the low-pass is skipped when its cut-off is not below the Nyquist
  frequency (e.g. the Empatica E4 at 4 Hz). Nothing above Nyquist survives sampling and the
  device's own anti-aliasing has already band-limited the signal, so the filter could only
  add delay. :attr:`EdaProcessor.lowpass_applied` tells which case applies.
* The 4 Hz grid's Nyquist frequency (2 Hz) is below the 3 Hz cut-off; SCRs and the tonic
  level live below 1 Hz, so what the grid misses is noise, not signal.
* Delay: a grid sample ``t_k`` is final as soon as a raw sample at or after ``t_k`` arrives
  (at most one raw sample interval); its content lags the skin by the low-pass group delay
  (:attr:`EdaProcessor.lowpass_delay_s`, 0.139 s at 3 Hz). An SCR is final once the phasic
  has fallen ``min_amplitude_us`` below its peak (0.3-0.6 s after the peak on the shared
  NeuroKit2 event-related recording).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt
from scipy import signal

from dsp.eda_quality import (
    EdaQuality,
    InvalidSpan,
    QualityArray,
    RawQualityTracker,
    invalid_spans,
)
from dsp.exceptions import ConfigError, SignalError
from dsp.filters import StreamingSosFilter, butter_sos
from dsp.types import BoolArray, FloatArray, GridSamples, IntArray
from dsp.validation import require_finite_non_negative, require_finite_positive

ResistanceUnit = Literal["ohm", "kohm", "megohm"]
_OHMS_PER_UNIT: dict[str, float] = {"ohm": 1.0, "kohm": 1e3, "megohm": 1e6}


def conductance_from_resistance(
    resistance: npt.ArrayLike, *, unit: ResistanceUnit = "kohm"
) -> FloatArray:
    """Skin resistance (``unit``: ohm, kohm or megohm) to skin conductance in microsiemens.

    ``G[uS] = 1e6 / R[ohm]``, so 1 kOhm -> 1000 uS and 100 kOhm -> 10 uS. A resistance that is
    not finite and positive (0 = short, negative = device error, NaN) gives NaN, which the EDA
    chain flags ``non_finite`` instead of inventing a value; an infinite resistance (open
    electrode) gives 0 uS, which it flags ``out_of_range``.
    """
    if unit not in _OHMS_PER_UNIT:
        raise ConfigError(
            f"resistance unit must be one of {tuple(_OHMS_PER_UNIT)}, got {unit!r}", key="unit"
        )
    resistance_ohm = np.asarray(resistance, dtype=np.float64) * _OHMS_PER_UNIT[unit]
    with np.errstate(divide="ignore", invalid="ignore"):
        conductance_us = np.where(resistance_ohm > 0, 1e6 / resistance_ohm, np.nan)
    return np.asarray(conductance_us, dtype=np.float64)


def _require(condition: bool, key: str, value: object, allowed: str) -> None:
    if not condition:
        raise ConfigError(f"{key}={value!r} is invalid: must be {allowed}", key=key)


def _positive(value: float) -> bool:
    return math.isfinite(value) and value > 0


@dataclass(frozen=True, slots=True, kw_only=True)
class EdaConfig:
    """Parameters of the EDA chain; every default is cited.

    * ``lowpass_hz=3.0``, ``lowpass_order=4``: Butterworth low-pass removing electrical and
      movement noise above the band of SCRs (< 1 Hz); the NeuroKit2 ``eda_clean`` default
      (Makowski et al. 2021, Behav. Res. Methods 53:1689-1696). Skipped when not below the
      Nyquist frequency (module docstring).
    * ``highpass_hz=0.05``: tonic/phasic split by a first-order high-pass, the classic
      "AC-coupled" SCR definition (Boucsein 2012, Electrodermal Activity, 2nd ed., ch. 2.3;
      the 0.05 Hz phasic derivation of BIOPAC AcqKnowledge and NeuroKit2 ``eda_phasic``).
      Chosen over a trailing median because it is causal with no window delay, is carried
      across chunks exactly by its filter state, and a first-order filter has a monotone step
      response (no ringing that could look like an SCR).
    * ``min_amplitude_us=0.02``: absolute SCR amplitude threshold; the literature uses
      0.01-0.05 uS (Dawson, Schell & Filion 2007, Handbook of Psychophysiology ch. 7;
      Boucsein et al. 2012, Psychophysiology 49:1017-1034). The amplitude is the rise of the
      cleaned conductance from onset to peak (the classic trough-to-peak measure, which the
      literature thresholds refer to). On the shared 8-min resting recording 0.01 uS adds
      three noise-level 0.012-0.013 uS "responses"; 0.02 uS rejects them. It is also the
      hysteresis: a peak is final once the phasic falls that far below it.
    * ``onset_slope_fraction=0.05``: the SCR onset is the start of the steep rise (last
      sample whose slope is below this fraction of the response's maximal slope), not the
      phasic minimum: during tonic recovery a causal high-pass makes the phasic minimum drift
      seconds ahead of the response. Engineering choice, checked against NeuroKit2 onsets.
    * ``rise_search_s=10.0``: how far before a peak the onset is searched; SCR rise times are
      1-3 s (Dawson et al. 2007, table 7.1), so 10 s is a generous bound that keeps memory fixed.
    * ``min_level_us=0.05``, ``max_level_us=60.0``: plausible range (Kleckner et al. 2018).
    * ``flat_line_s=5.0``: bit-identical samples for this long mean a stuck sensor
      (:mod:`dsp.eda_quality`).
    * ``device_range_us=None``: the device's measurable range (from its device config);
      samples at either rail are flagged ``clipped``. None disables the rule.
    * ``max_gap_s=None``: a larger step between timestamps is a gap; None means 5 nominal
      sample intervals, the dropout rule of DESIGN.md.
    * ``settle_s=5.0``: output withheld after every (re)start; Kleckner et al. 2018 also
      discard 5 s around invalid stretches (here only after, to stay causal).
    """

    lowpass_hz: float = 3.0
    lowpass_order: int = 4
    highpass_hz: float = 0.05
    min_amplitude_us: float = 0.02
    onset_slope_fraction: float = 0.05
    rise_search_s: float = 10.0
    min_level_us: float = 0.05
    max_level_us: float = 60.0
    flat_line_s: float = 5.0
    device_range_us: tuple[float, float] | None = None
    max_gap_s: float | None = None
    settle_s: float = 5.0

    def __post_init__(self) -> None:
        require_finite_positive(
            self,
            ("lowpass_hz", "highpass_hz", "min_amplitude_us", "rise_search_s", "flat_line_s"),
        )
        require_finite_non_negative(self, ("min_level_us", "settle_s"))
        _require(
            isinstance(self.lowpass_order, int) and 1 <= self.lowpass_order <= 10,
            "lowpass_order",
            self.lowpass_order,
            "an integer in 1..10",
        )
        _require(
            math.isfinite(self.onset_slope_fraction) and 0 < self.onset_slope_fraction < 1,
            "onset_slope_fraction",
            self.onset_slope_fraction,
            "strictly between 0 and 1",
        )
        _require(
            math.isfinite(self.max_level_us) and self.max_level_us > self.min_level_us,
            "max_level_us",
            self.max_level_us,
            f"finite and > min_level_us={self.min_level_us}",
        )
        if self.device_range_us is not None:
            low, high = (float(v) for v in self.device_range_us)
            _require(
                math.isfinite(low) and math.isfinite(high) and low < high,
                "device_range_us",
                self.device_range_us,
                "None or (low_us, high_us) with low < high",
            )
        if self.max_gap_s is not None:
            _require(
                _positive(self.max_gap_s),
                "max_gap_s",
                self.max_gap_s,
                "None or a finite value > 0 s",
            )


@dataclass(frozen=True, slots=True)
class Scr:
    """One skin conductance response, on the grid clock (LSL seconds)."""

    onset_t_s: float
    peak_t_s: float
    amplitude_us: float
    rise_time_s: float


@dataclass(frozen=True, slots=True)
class EdaOutput:
    """What became final during one :meth:`EdaProcessor.push`.

    ``scl`` and ``phasic`` share one grid; ``quality`` holds one :class:`EdaQuality` code per
    grid sample (0 = valid) and :meth:`invalid_spans` turns it into reason strings.
    """

    scl: GridSamples
    phasic: GridSamples
    quality: QualityArray
    scrs: tuple[Scr, ...]

    def invalid_spans(self) -> tuple[InvalidSpan, ...]:
        """Runs of invalid grid samples in this output, each with its reason string."""
        return invalid_spans(self.scl.t_s, self.quality)


@dataclass(frozen=True, slots=True)
class EdaFeatures:
    """Batch result of :func:`eda_features`: grid series, SCR table with sample indices."""

    scl: GridSamples
    phasic: GridSamples
    quality: QualityArray
    scrs: tuple[Scr, ...]
    scr_onset_index: IntArray
    scr_peak_index: IntArray
    scr_amplitude_us: FloatArray
    invalid_spans: tuple[InvalidSpan, ...]


def _last_grid_index_at_or_before(t_s: float, grid_hz: float) -> int:
    """Largest integer k with ``k / grid_hz <= t_s``, exact in floating point."""
    k = math.floor(t_s * grid_hz)
    while (k + 1) / grid_hz <= t_s:
        k += 1
    while k / grid_hz > t_s:
        k -= 1
    return k


def _range_max(values: QualityArray, starts: IntArray, stops: IntArray) -> QualityArray:
    """``max(values[starts[i]:stops[i] + 1])`` for each i (requires starts <= stops)."""
    bounds = np.empty(2 * starts.size, dtype=np.intp)
    bounds[0::2] = starts
    bounds[1::2] = stops + 1
    padded = np.append(values, np.uint8(0))  # so that stops + 1 == len(values) is addressable
    # A contiguous copy (not a strided view): the grid stage writes settling codes into it.
    return np.array(np.maximum.reduceat(padded, bounds)[0::2], dtype=np.uint8)


def _runs(ok: BoolArray, continues: BoolArray) -> Iterator[tuple[int, int, bool]]:
    """Maximal runs ``[start, stop)`` of ``ok`` samples; ``continues[i]`` says sample i
    extends the run of sample i-1 (for i = 0: the run of the previous chunk). Yields
    ``(start, stop, continues_previous_chunk)``."""
    starts = np.flatnonzero(ok & ~continues)
    run_ends = ok & ~np.append(continues[1:], False)
    stops = np.flatnonzero(run_ends) + 1
    first = 0
    if ok.size and continues[0]:
        yield 0, int(stops[0]), True
        first = 1
    for start, stop in zip(starts.tolist(), stops[first:].tolist(), strict=True):
        yield start, stop, False


class _ScrDetector:
    """Trough/peak detection with hysteresis on the phasic grid series.

    Alternates between seeking a trough and seeking a peak (the "peakdet" scheme): a trough is
    confirmed when the signal rises ``hysteresis_us`` above it, a peak when it falls
    ``hysteresis_us`` below it. Only turning points (and the last sample of each call) are
    visited: the signal is monotone in between, so every state change happens at an extreme
    and the result equals visiting every sample. The onset of the current peak candidate is
    measured as soon as the candidate is set, while its rise is still in the fixed history.
    """

    __slots__ = (
        "_amplitude_us",
        "_capacity",
        "_end",
        "_hist_n",
        "_history",
        "_hysteresis_us",
        "_last_direction",
        "_last_value",
        "_onset_k",
        "_onset_slope_fraction",
        "_peak_k",
        "_peak_us",
        "_seeking_peak",
        "_trough_k",
        "_trough_us",
    )

    def __init__(
        self, *, hysteresis_us: float, onset_slope_fraction: float, history_len: int
    ) -> None:
        self._hysteresis_us = hysteresis_us
        self._onset_slope_fraction = onset_slope_fraction
        # The last ``history_len`` (phasic, cleaned) samples for the onset search and the
        # amplitude, kept before ``_end`` in a buffer of twice that size; chunks are appended
        # and the history moves to the front only when the buffer is full (every
        # ``history_len`` samples in live use), so a chunk costs no concatenation.
        self._capacity = history_len
        self._history: FloatArray = np.empty((2, 2 * history_len), dtype=np.float64)
        self._end = 0
        self.restart()

    def restart(self) -> None:
        """Forget everything (a new segment starts after invalid samples)."""
        self._hist_n = 0
        self._seeking_peak = False
        self._trough_us, self._trough_k = math.inf, 0
        self._peak_us, self._peak_k = -math.inf, 0
        self._onset_k, self._amplitude_us = 0, 0.0
        self._last_value = math.nan  # no previous sample: the next one seeds the trough
        self._last_direction = 0.0

    def process(
        self, first_k: int, phasic_us: FloatArray, cleaned_us: FloatArray
    ) -> list[tuple[int, int, float]]:
        """Feed consecutive grid samples ``first_k, first_k + 1, ...`` of one segment.
        Returns ``(onset_k, peak_k, amplitude_us)`` of every peak confirmed here."""
        work_first_k = first_k - self._hist_n
        work = self._append(phasic_us, cleaned_us)
        values = phasic_us.tolist()
        found: list[tuple[int, int, float]] = []
        for i in self._visit_indices(values):
            value = values[i]
            k = first_k + i
            if self._seeking_peak:
                if value > self._peak_us:
                    self._set_peak(value, k, work, work_first_k)
                elif value < self._peak_us - self._hysteresis_us:
                    found.append((self._onset_k, self._peak_k, self._amplitude_us))
                    self._seeking_peak = False
                    self._trough_us, self._trough_k = value, k
            elif value < self._trough_us:
                self._trough_us, self._trough_k = value, k
            elif value > self._trough_us + self._hysteresis_us:
                self._seeking_peak = True
                self._set_peak(value, k, work, work_first_k)
        return found

    def _append(self, phasic_us: FloatArray, cleaned_us: FloatArray) -> FloatArray:
        """Store a chunk after the kept history; returns history and chunk as one view."""
        n_new = phasic_us.size
        kept_n = self._hist_n
        if self._end + n_new > self._history.shape[1]:
            # Full: move the kept history to the front of a fresh buffer, wider only if this
            # chunk needs it (a one-call batch), back to the fixed size at the next move.
            kept = self._history[:, self._end - kept_n : self._end]
            width = max(2 * self._capacity, kept_n + n_new)
            self._history = np.empty((2, width), dtype=np.float64)
            self._history[:, :kept_n] = kept
            self._end = kept_n
        start = self._end - kept_n
        self._end += n_new
        self._history[0, self._end - n_new : self._end] = phasic_us
        self._history[1, self._end - n_new : self._end] = cleaned_us
        self._hist_n = min(self._capacity, kept_n + n_new)
        return self._history[:, start : self._end]

    def _visit_indices(self, values: list[float]) -> list[int]:
        """Turning points (sample before a change of direction), every sample before a zero
        step (plateaus are not strictly monotone, so the first plateau sample must be seen
        whatever the chunking), the first sample of a segment and the last sample,
        ascending. A plain loop: live chunks hold one or two grid samples, where numpy's
        per-call cost dominates."""
        visit = [] if math.isfinite(self._last_value) else [0]
        previous_value, previous_direction = self._last_value, self._last_direction
        for i, value in enumerate(values):
            step = value - previous_value  # NaN at a segment's first sample: no direction
            direction = 1.0 if step > 0 else -1.0 if step < 0 else previous_direction
            turned = direction != previous_direction and previous_direction != 0
            if (turned or step == 0) and i > 0 and (not visit or visit[-1] != i - 1):
                visit.append(i - 1)
            previous_value, previous_direction = value, direction
        if not visit or visit[-1] != len(values) - 1:
            visit.append(len(values) - 1)
        self._last_value, self._last_direction = previous_value, previous_direction
        return visit

    def _set_peak(self, value: float, k: int, work: FloatArray, work_first_k: int) -> None:
        """New peak candidate; its onset is the start of the steep rise of the phasic since
        the trough, its amplitude the rise of the cleaned conductance from onset to peak."""
        self._peak_us, self._peak_k = value, k
        search_from_k = max(self._trough_k, k - self._capacity + 1, work_first_k)
        phasic_rise, cleaned_rise = work[:, search_from_k - work_first_k : k - work_first_k + 1]
        slopes = np.diff(phasic_rise)
        onset_index = 0
        if slopes.size:
            steepest = int(np.argmax(slopes))
            slow = np.flatnonzero(slopes[:steepest] < self._onset_slope_fraction * slopes[steepest])
            if slow.size:
                onset_index = int(slow[-1]) + 1
        self._onset_k = search_from_k + onset_index
        self._amplitude_us = float(cleaned_rise[-1] - cleaned_rise[onset_index])


class EdaProcessor:
    """Streaming EDA chain for one sensor (see the module docstring for the rules).

    ``fs_hz`` is the nominal sampling rate (filter design and the default gap rule); the
    timestamps themselves may jitter. ``grid_hz`` is the analysis grid (default 4 Hz).
    """

    __slots__ = (
        "_config",
        "_detector",
        "_fs_hz",
        "_grid_hz",
        "_highpass",
        "_in_segment",
        "_last_k",
        "_lowpass",
        "_lowpass_delay_s",
        "_max_gap_s",
        "_nonfinite_count",
        "_pending_code",
        "_prev_code",
        "_prev_t_s",
        "_prev_y",
        "_quality",
        "_settle_end_k",
        "_settle_n",
    )

    def __init__(
        self, fs_hz: float, *, grid_hz: float = 4.0, config: EdaConfig | None = None
    ) -> None:
        cfg = config if config is not None else EdaConfig()
        _require(_positive(fs_hz), "fs_hz", fs_hz, "a finite sampling rate > 0 Hz")
        _require(_positive(grid_hz), "grid_hz", grid_hz, "a finite grid rate > 0 Hz")
        _require(
            cfg.highpass_hz < grid_hz / 2,
            "highpass_hz",
            cfg.highpass_hz,
            f"below the grid Nyquist frequency {grid_hz / 2:g} Hz",
        )
        self._config = cfg
        self._fs_hz = float(fs_hz)
        self._grid_hz = float(grid_hz)
        self._max_gap_s = cfg.max_gap_s if cfg.max_gap_s is not None else 5.0 / self._fs_hz
        self._lowpass: StreamingSosFilter | None = None
        self._lowpass_delay_s = 0.0
        if cfg.lowpass_hz < self._fs_hz / 2:
            sos = butter_sos(
                order=cfg.lowpass_order,
                cutoff_hz=cfg.lowpass_hz,
                fs_hz=self._fs_hz,
                btype="lowpass",
            )
            self._lowpass = StreamingSosFilter(sos)
            self._lowpass_delay_s = _group_delay_at_dc_s(sos, self._fs_hz)
        self._highpass = StreamingSosFilter(
            butter_sos(order=1, cutoff_hz=cfg.highpass_hz, fs_hz=self._grid_hz, btype="highpass")
        )
        self._quality = RawQualityTracker(
            min_level_us=cfg.min_level_us,
            max_level_us=cfg.max_level_us,
            flat_line_s=cfg.flat_line_s,
            device_range_us=cfg.device_range_us,
        )
        self._detector = _ScrDetector(
            hysteresis_us=cfg.min_amplitude_us,
            onset_slope_fraction=cfg.onset_slope_fraction,
            history_len=math.ceil(cfg.rise_search_s * self._grid_hz) + 1,
        )
        self._settle_n = math.ceil(cfg.settle_s * self._grid_hz)
        # Raw-sample carry: the last sample (time, low-passed value, code) and the worst
        # code seen since the last emitted grid sample.
        self._prev_t_s: float | None = None
        self._prev_y = math.nan
        self._prev_code = int(EdaQuality.OK)
        self._pending_code = int(EdaQuality.OK)
        # Grid carry: last emitted grid index, whether it belonged to a valid segment.
        self._last_k = 0
        self._in_segment = False
        self._settle_end_k = 0
        self._nonfinite_count = 0

    @property
    def config(self) -> EdaConfig:
        return self._config

    @property
    def grid_hz(self) -> float:
        return self._grid_hz

    @property
    def lowpass_applied(self) -> bool:
        """False when ``lowpass_hz`` is not below Nyquist (e.g. 4 Hz devices): no low-pass."""
        return self._lowpass is not None

    @property
    def lowpass_delay_s(self) -> float:
        """Group delay of the low-pass at 0 Hz (how far the grid values lag the skin)."""
        return self._lowpass_delay_s

    @property
    def nonfinite_count(self) -> int:
        """Number of NaN/inf raw samples masked so far."""
        return self._nonfinite_count

    def push(self, timestamps_s: npt.ArrayLike, values_us: npt.ArrayLike) -> EdaOutput:
        """Process one chunk (any length) and return what became final."""
        t_s, x_us, step_s = self._validated(timestamps_s, values_us)
        if t_s.size == 0:
            return _EMPTY_OUTPUT
        gap_before = step_s > self._max_gap_s
        codes = self._quality.classify(t_s, x_us, gap_before)
        # The usual live chunk is clean and continues a clean stretch: one filter run, no
        # per-sample code bookkeeping (the general path gives the same result, only slower).
        clean = (
            self._prev_t_s is not None
            and self._prev_code == EdaQuality.OK
            and not codes.any()
            and not gap_before.any()
        )
        if clean:  # every code OK: every sample finite, the filter's own check is redundant
            cleaned_us = x_us if self._lowpass is None else self._lowpass.process_finite(x_us)
        else:
            self._nonfinite_count += int(np.count_nonzero(codes == EdaQuality.NON_FINITE))
            cleaned_us = self._lowpass_segments(x_us, codes, gap_before)
        return self._resample_to_grid(t_s, cleaned_us, codes, gap_before, clean=clean)

    def _resample_to_grid(
        self,
        t_s: FloatArray,
        cleaned_us: FloatArray,
        codes: QualityArray,
        gap_before: BoolArray,
        *,
        clean: bool,
    ) -> EdaOutput:
        """Interpolate the cleaned signal linearly at every grid time ``k / grid_hz`` that
        this chunk reaches; each grid sample carries the worst code of the raw samples and
        gaps since the previous grid sample, so nothing bad between two grid times is lost.
        ``clean``: no gap and every code OK here and in the carried sample (see :meth:`push`)."""
        if self._prev_t_s is None:
            self._last_k = _last_grid_index_at_or_before(float(t_s[0]), self._grid_hz)
        interval_code = None if clean else self._interval_codes(codes, gap_before)
        last_k = _last_grid_index_at_or_before(float(t_s[-1]), self._grid_hz)
        carried_t_s, carried_y = self._prev_t_s, self._prev_y
        self._prev_t_s = float(t_s[-1])
        self._prev_y = float(cleaned_us[-1])
        self._prev_code = int(codes[-1])
        if last_k <= self._last_k:
            if interval_code is not None:
                self._pending_code = int(interval_code.max())
            return _EMPTY_OUTPUT
        # Extended arrays: index 0 is the carried previous sample (or this chunk's first one).
        if carried_t_s is None:
            ext_t, ext_y = t_s, cleaned_us
        else:
            ext_t = np.concatenate(([carried_t_s], t_s))
            ext_y = np.concatenate(([carried_y], cleaned_us))
        grid_k = np.arange(self._last_k + 1, last_k + 1, dtype=np.int64)
        self._last_k = last_k
        grid_t = grid_k / self._grid_hz
        right = np.searchsorted(ext_t, grid_t, side="left")
        if interval_code is None:
            # Only the code pending from earlier chunks can make a grid sample invalid.
            grid_code = np.zeros(grid_k.size, dtype=np.uint8)
            grid_code[0] = self._pending_code
            self._pending_code = int(EdaQuality.OK)
        else:
            left_bound = np.minimum(np.concatenate(([0], right[:-1] + 1)), right)
            grid_code = _range_max(interval_code, left_bound, right)
            tail = interval_code[int(right[-1]) + 1 :]
            self._pending_code = int(tail.max()) if tail.size else int(EdaQuality.OK)

        fraction = (grid_t - ext_t[right - 1]) / (ext_t[right] - ext_t[right - 1])
        cleaned_grid = ext_y[right - 1] + (ext_y[right] - ext_y[right - 1]) * fraction
        return self._grid_stage(grid_k, grid_t, cleaned_grid, grid_code)

    def _interval_codes(self, codes: QualityArray, gap_before: BoolArray) -> QualityArray:
        """Code of each step between raw samples, aligned with the extended arrays of
        :meth:`_resample_to_grid`: entry j covers the step from sample j-1 to sample j; entry
        0 is the code pending since the last grid sample (or, in the first chunk, the first
        sample's own code)."""
        if self._prev_t_s is None:
            interval_code = np.maximum(codes, np.append(codes[:1], codes[:-1]))
            interval_code[gap_before] = EdaQuality.GAP
            return interval_code
        ext_code = np.concatenate(([self._prev_code], codes)).astype(np.uint8)
        interval_code = np.concatenate(
            ([self._pending_code], np.maximum(ext_code[1:], ext_code[:-1]))
        ).astype(np.uint8)
        interval_code[1:][gap_before] = EdaQuality.GAP
        return interval_code

    def _validated(
        self, timestamps_s: npt.ArrayLike, values_us: npt.ArrayLike
    ) -> tuple[FloatArray, FloatArray, FloatArray]:
        """The chunk as float arrays and the step before each timestamp (from the previous
        chunk's last one; 0 for the very first sample), or :class:`SignalError`."""
        try:
            t_s = np.asarray(timestamps_s, dtype=np.float64)
            x_us = np.asarray(values_us, dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise SignalError(f"EDA chunk is not numeric: {exc}") from None
        if t_s.ndim != 1 or x_us.ndim != 1 or t_s.shape != x_us.shape:
            raise SignalError(
                f"EDA chunk needs 1-D timestamps and values of equal length, got shapes "
                f"{t_s.shape} and {x_us.shape}; pass one channel at a time"
            )
        step_s = np.empty(t_s.size, dtype=np.float64)
        if t_s.size == 0:
            return t_s, x_us, step_s
        first_t_s = float(t_s[0])
        step_s[0] = first_t_s - self._prev_t_s if self._prev_t_s is not None else 0.0
        np.subtract(t_s[1:], t_s[:-1], out=step_s[1:])
        # Finite ends and positive steps imply finite timestamps: one check for the usual case.
        increasing = bool((step_s[1:] > 0).all())
        if not (
            increasing and math.isfinite(first_t_s) and math.isfinite(float(t_s[-1]))
        ) and not np.all(np.isfinite(t_s)):
            raise SignalError("EDA timestamps contain NaN/inf; drop those samples upstream")
        previous = self._prev_t_s if self._prev_t_s is not None else -math.inf
        if first_t_s <= previous or not increasing:
            raise SignalError(
                "EDA timestamps must be strictly increasing within and across chunks "
                f"(previous chunk ended at {previous!r}); a clock reset needs a new EdaProcessor"
            )
        return t_s, x_us, step_s

    def _lowpass_segments(
        self, x_us: FloatArray, codes: QualityArray, gap_before: BoolArray
    ) -> FloatArray:
        """Low-pass each run of valid samples, restarting the filter after invalid ones."""
        ok = codes == EdaQuality.OK
        continues = ok & ~gap_before
        continues[1:] &= ok[:-1]
        continues[0] &= self._prev_t_s is not None and self._prev_code == EdaQuality.OK
        cleaned_us = np.full(x_us.size, np.nan)
        for start, stop, carried in _runs(ok, continues):
            if self._lowpass is None:
                cleaned_us[start:stop] = x_us[start:stop]
                continue
            if not carried:
                self._lowpass.reset()
            # A run holds only OK (hence finite) samples.
            cleaned_us[start:stop] = self._lowpass.process_finite(x_us[start:stop])
        return cleaned_us

    def _grid_stage(
        self, grid_k: IntArray, grid_t: FloatArray, cleaned: FloatArray, codes: QualityArray
    ) -> EdaOutput:
        """High-pass, settling and SCR detection on the grid, segment by segment. ``codes`` is
        this call's own array (fresh from :meth:`_resample_to_grid`): settling is marked in it."""
        runs: Iterable[tuple[int, int, bool]]
        if self._in_segment and not codes.any():
            runs = ((0, grid_k.size, True),)  # the usual case: the open segment continues
        else:
            ok = codes == EdaQuality.OK
            continues = ok.copy()
            continues[1:] &= ok[:-1]
            continues[0] &= self._in_segment
            self._in_segment = bool(ok[-1])
            runs = _runs(ok, continues)
        phasic = np.full(grid_k.size, np.nan)
        scrs: list[Scr] = []
        for start, stop, carried in runs:
            first_k = int(grid_k[start])
            if not carried:
                self._highpass.reset()
                self._detector.restart()
                self._settle_end_k = first_k + self._settle_n
            phasic[start:stop] = self._highpass.process(cleaned[start:stop])
            if first_k < self._settle_end_k:
                settling = grid_k[start:stop] < self._settle_end_k
                codes[start:stop][settling] = EdaQuality.SETTLING
            for onset_k, peak_k, amplitude_us in self._detector.process(
                first_k, phasic[start:stop], cleaned[start:stop]
            ):
                if amplitude_us >= self._config.min_amplitude_us and onset_k >= self._settle_end_k:
                    scrs.append(
                        Scr(
                            onset_t_s=onset_k / self._grid_hz,
                            peak_t_s=peak_k / self._grid_hz,
                            amplitude_us=amplitude_us,
                            rise_time_s=(peak_k - onset_k) / self._grid_hz,
                        )
                    )
        valid = codes == EdaQuality.OK
        if valid.all():
            scl = cleaned - phasic
        else:
            scl = np.where(valid, cleaned - phasic, np.nan)
            phasic = np.where(valid, phasic, np.nan)
        return EdaOutput(
            scl=GridSamples(t_s=grid_t, values=scl, valid=valid),
            phasic=GridSamples(t_s=grid_t.copy(), values=phasic, valid=valid.copy()),
            quality=codes,
            scrs=tuple(scrs),
        )


def _group_delay_at_dc_s(sos: FloatArray, fs_hz: float) -> float:
    numerator, denominator = signal.sos2tf(sos)
    _, delay_samples = signal.group_delay((numerator, denominator), w=[0.0], fs=fs_hz)
    return float(delay_samples[0]) / fs_hz


# Returned whenever nothing became final (most live chunks): one shared instance, harmless
# because its arrays have no elements to modify.
_EMPTY_OUTPUT = EdaOutput(
    scl=GridSamples.empty(),
    phasic=GridSamples.empty(),
    quality=np.empty(0, dtype=np.uint8),
    scrs=(),
)


def eda_features(
    x: npt.ArrayLike, fs_hz: float, *, grid_hz: float = 4.0, config: EdaConfig | None = None
) -> EdaFeatures:
    """Run :class:`EdaProcessor` over a whole recording sampled at ``fs_hz`` (timestamps
    ``i / fs_hz``). SCR sample indices refer to ``x``; SCRs not yet final at the end of the
    recording (peak not followed by a fall of ``min_amplitude_us``) are not reported."""
    values_us = np.asarray(x, dtype=np.float64)
    processor = EdaProcessor(fs_hz, grid_hz=grid_hz, config=config)
    out = processor.push(np.arange(values_us.size) / float(fs_hz), values_us)
    onsets_s = np.array([scr.onset_t_s for scr in out.scrs], dtype=np.float64)
    peaks_s = np.array([scr.peak_t_s for scr in out.scrs], dtype=np.float64)
    return EdaFeatures(
        scl=out.scl,
        phasic=out.phasic,
        quality=out.quality,
        scrs=out.scrs,
        scr_onset_index=np.rint(onsets_s * fs_hz).astype(np.int64),
        scr_peak_index=np.rint(peaks_s * fs_hz).astype(np.int64),
        scr_amplitude_us=np.array([scr.amplitude_us for scr in out.scrs], dtype=np.float64),
        invalid_spans=out.invalid_spans(),
    )

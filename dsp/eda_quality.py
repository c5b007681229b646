"""Per-sample quality of a raw skin-conductance stream (contact loss, range, clipping).

The EDA chain (:mod:`dsp.eda`) asks :class:`RawQualityTracker` for one
:class:`EdaQuality` code per raw sample before filtering, masks every sample that is not
``OK`` and restarts its filters after it, so a bad stretch never leaks into the tonic level
or into an SCR. Codes are ordered by severity; where several apply, the largest wins.

Rules and their sources:

* ``NON_FINITE`` — NaN/inf from the device or the transport: masked and counted.
* ``OUT_OF_RANGE`` — below ``min_level_us`` (0.05 uS) or above ``max_level_us`` (60 uS).
  Kleckner et al. 2018 (IEEE Trans. Biomed. Eng. 65(7):1460-1467, "Simple, transparent, and
  flexible automated quality assessment procedures for ambulatory electrodermal activity
  data") use exactly this range: below 0.05 uS the electrode is effectively open (> 20 MOhm),
  above 60 uS is beyond any physiological level and means a short or a wet bridge.
  Low but real wrist values are kept: the shared Empatica E4 recording (0.05-0.12 uS) stays
  valid, while its start-up samples and short dips to 0.04-0.05 uS are flagged, because at
  that level an open electrode and a dry wrist cannot be told apart. A wrist device whose
  wearers sit lower can lower ``min_level_us`` in its device config.
* ``CLIPPED`` — at or beyond the device's measurable range (``device_range_us``, from the
  device config): the true value may lie anywhere beyond the rail.
* ``FLAT_LINE`` — exactly the same value for at least ``flat_line_s`` (5 s): a stuck sensor or
  a transport repeating its last packet. Real EDA is never bit-identical that long even at a
  coarse quantisation (the longest run in the shared Empatica E4 recording, 0.0013 uS steps
  at 0.06 uS, is 2 s). Being causal, the rule can only flag a run once it has lasted
  ``flat_line_s``: its first ``flat_line_s`` pass as a (quiet, SCR-free) signal.
* ``GAP`` and ``SETTLING`` are assigned on the analysis grid by :mod:`dsp.eda` (holes in the
  timestamps; the few seconds after any restart while the phasic filter has no history).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

import numpy as np
import numpy.typing as npt

from dsp.types import FloatArray

QualityArray = npt.NDArray[np.uint8]


class EdaQuality(IntEnum):
    """Why an EDA sample is (in)valid; larger means more severe. ``OK`` is the only valid code."""

    OK = 0
    SETTLING = 1
    FLAT_LINE = 2
    OUT_OF_RANGE = 3
    CLIPPED = 4
    NON_FINITE = 5
    GAP = 6

    @property
    def reason(self) -> str:
        """Lower-case reason string shown to users and written to logs (no values)."""
        return self.name.lower()


@dataclass(frozen=True, slots=True)
class InvalidSpan:
    """A run of consecutive invalid grid samples with one reason (times inclusive)."""

    start_t_s: float
    end_t_s: float
    reason: str


def invalid_spans(t_s: FloatArray, quality: QualityArray) -> tuple[InvalidSpan, ...]:
    """Group consecutive grid samples that share one non-``OK`` code into spans."""
    if quality.size == 0:
        return ()
    # A span starts wherever the code changes (or at index 0) and is not OK.
    change = np.flatnonzero(np.diff(quality.astype(np.int16)) != 0) + 1
    starts = np.concatenate(([0], change))
    stops = np.concatenate((change, [quality.size]))
    return tuple(
        InvalidSpan(
            start_t_s=float(t_s[start]),
            end_t_s=float(t_s[stop - 1]),
            reason=EdaQuality(int(quality[start])).reason,
        )
        for start, stop in zip(starts.tolist(), stops.tolist(), strict=True)
        if quality[start] != EdaQuality.OK
    )


class RawQualityTracker:
    """Classifies raw samples chunk by chunk; the flat-line run is carried across chunks."""

    __slots__ = (
        "_device_range_us",
        "_flat_line_s",
        "_last_value",
        "_max_level_us",
        "_min_level_us",
        "_run_start_t_s",
    )

    def __init__(
        self,
        *,
        min_level_us: float,
        max_level_us: float,
        flat_line_s: float,
        device_range_us: tuple[float, float] | None,
    ) -> None:
        self._min_level_us = min_level_us
        self._max_level_us = max_level_us
        self._flat_line_s = flat_line_s
        self._device_range_us = device_range_us
        self._last_value: float | None = None
        self._run_start_t_s = 0.0

    def classify(
        self, t_s: FloatArray, values_us: FloatArray, run_breaks: npt.NDArray[np.bool_]
    ) -> QualityArray:
        """One code per sample. ``run_breaks[i]`` is True where a gap precedes sample ``i``
        (a flat run never continues across a gap)."""
        n = values_us.size
        codes = np.zeros(n, dtype=np.uint8)
        if n == 0:
            return codes
        # Start of each run of bit-identical values (NaN != NaN, so NaN always starts one).
        changed = np.empty(n, dtype=np.bool_)
        changed[0] = self._last_value is None or bool(values_us[0] != self._last_value)
        np.not_equal(values_us[1:], values_us[:-1], out=changed[1:])
        changed |= run_breaks
        self._last_value = float(values_us[-1])
        # No sample can have been flat for flat_line_s if the last one is closer than that to
        # the earliest run start (the carried one, unless sample 0 starts a run): then skip the
        # per-sample run starts and only carry the last one.
        earliest_start_t_s = float(t_s[0]) if changed[0] else self._run_start_t_s
        if float(t_s[-1]) - earliest_start_t_s < self._flat_line_s:
            starts = np.flatnonzero(changed)
            if starts.size:
                self._run_start_t_s = float(t_s[starts[-1]])
        else:
            run_start_index = np.maximum.accumulate(np.where(changed, np.arange(n), -1))
            run_start_t_s = np.where(
                run_start_index >= 0, t_s[np.maximum(run_start_index, 0)], self._run_start_t_s
            )
            self._run_start_t_s = float(run_start_t_s[-1])
            codes[(t_s - run_start_t_s) >= self._flat_line_s] = EdaQuality.FLAT_LINE

        # All finite and in range (a NaN makes min/max NaN and fails): nothing more to flag.
        lowest_us, highest_us = float(values_us.min()), float(values_us.max())
        in_range = lowest_us >= self._min_level_us and highest_us <= self._max_level_us
        if self._device_range_us is not None:
            rail_low_us, rail_high_us = self._device_range_us
            in_range = in_range and rail_low_us < lowest_us and highest_us < rail_high_us
        if in_range:
            return codes
        # Assign in increasing severity so the most severe code wins.
        codes[(values_us < self._min_level_us) | (values_us > self._max_level_us)] = (
            EdaQuality.OUT_OF_RANGE
        )
        if self._device_range_us is not None:
            rail_low_us, rail_high_us = self._device_range_us
            codes[(values_us <= rail_low_us) | (values_us >= rail_high_us)] = EdaQuality.CLIPPED
        codes[~np.isfinite(values_us)] = EdaQuality.NON_FINITE
        return codes

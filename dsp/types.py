"""Plain data types that cross module boundaries (streamer -> dsp -> server).

Times are LSL clock seconds (``pylsl.local_clock()`` domain, after the inlet's
``time_correction()``). Values are in canonical units: ECG in millivolts, EDA in
microsiemens, heart rate in beats per minute.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum, StrEnum

import numpy as np
import numpy.typing as npt

from dsp.exceptions import SignalError

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]
IntArray = npt.NDArray[np.int64]
StatusArray = npt.NDArray[np.int8]


class Role(StrEnum):
    """Which chair a sensor is on. Streams and files name roles, never people."""

    THERAPIST = "therapist"
    CLIENT = "client"


class SignalKind(StrEnum):
    """Raw physiological signal carried by one stream."""

    ECG = "ecg"
    EDA = "eda"


@dataclass(frozen=True, slots=True)
class Frame:
    """One chunk of raw samples from one sensor, as delivered by the streamer.

    ``timestamps_s`` are strictly the corrected LSL times of each sample; ``values`` the
    signal in canonical units (ECG mV, EDA uS). ``counters`` carries the per-sample
    counter channel when the stream has one (used to prove nothing was lost).
    ``segment`` increments whenever continuity is broken (clock reset, reconnect), and
    downstream code must never compute across a segment change.
    """

    role: Role
    signal: SignalKind
    timestamps_s: FloatArray
    values: FloatArray
    counters: IntArray | None = None
    segment: int = 0


class SampleStatus(IntEnum):
    """Why a grid sample is (not) usable, so "no estimate" can say why.

    When two people's samples are paired, the pair takes the larger code: a sample that never
    arrived has nothing to judge, and the output of a processor still settling after a new
    segment is invalid by construction, so its quality flags say nothing about the sensor.
    """

    OK = 0
    BAD_SIGNAL = 1  # flagged by the signal-quality logic of a settled processor
    SETTLING = 2  # start-up output of a processor restarted for a new segment
    MISSING = 3  # the person's data never arrived (gap, disconnection)


def checked_status(status: StatusArray, shape: tuple[int, ...]) -> npt.NDArray[np.int8]:
    """``status`` as SampleStatus codes, one per sample of ``shape``; SignalError if not."""
    codes = np.asarray(status, dtype=np.int8)
    if codes.shape != shape:
        raise SignalError(
            f"status has shape {codes.shape}, the samples {shape}; give one "
            "SampleStatus code per sample"
        )
    if codes.size and not (codes.min() >= 0 and codes.max() <= SampleStatus.MISSING):
        raise SignalError(f"status codes must be SampleStatus values, got {codes.tolist()}")
    return codes


@dataclass(frozen=True, slots=True)
class GridSamples:
    """Samples of a derived signal on the common analysis grid.

    Grid times are integer multiples of ``1 / grid_hz`` on the LSL clock, so two people's
    series align by grid index without interpolation. ``valid`` is False where the
    signal quality did not allow an estimate (contact loss, implausible HR, gap).
    """

    t_s: FloatArray
    values: FloatArray
    valid: BoolArray

    def __len__(self) -> int:
        return int(self.t_s.shape[0])

    @staticmethod
    def empty() -> GridSamples:
        return GridSamples(
            t_s=np.empty(0, dtype=np.float64),
            values=np.empty(0, dtype=np.float64),
            valid=np.empty(0, dtype=np.bool_),
        )


class StatusKind(StrEnum):
    """What happened to a sensor stream (flows to the server, dashboard and recorder)."""

    CONNECTED = "connected"
    STALLED = "stalled"
    RECOVERED = "recovered"
    MISMATCH = "mismatch"
    CLOCK_BREAK = "clock_break"
    BAD_SAMPLES = "bad_samples"
    MISSING = "missing"


@dataclass(frozen=True, slots=True)
class StatusEvent:
    """A change in a sensor stream's health. ``detail`` never contains physiological values
    or names: it is shown to users and written to logs."""

    role: Role
    signal: SignalKind
    kind: StatusKind
    t_s: float
    detail: str = ""

"""Empatica E4 session exports (the CSV folder E4 connect gives researchers) as dyadsync data.

Format (the export's own ``info.txt``): each of ``EDA.csv`` (uS, 4 Hz), ``BVP.csv``
(photoplethysmograph, 64 Hz), ``TEMP.csv`` (deg C, 4 Hz), ``HR.csv`` (bpm, 1 Hz, derived
from BVP) and ``ACC.csv`` (3 axes in 1/64 g, 32 Hz) starts with a row holding the start
time (Unix seconds, UTC) and a row holding the sample rate, repeated per column.
``IBI.csv`` has the start time, then rows ``seconds since start, interval s``;
``tags.csv`` has one Unix time per button press.

:func:`read_e4_export` returns every channel with sample times ``start + k / rate``; the EDA
comes out as the same :class:`~dsp.types.Frame` objects the live inlet produces. Times are
Unix seconds plus ``clock_offset_s`` (pass the LSL-minus-Unix offset to put them on an LSL
clock). Malformed files raise :class:`RecordingError` naming the file, line and problem.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dsp.types import FloatArray, Frame, Role, SignalKind
from streamer.errors import RecordingError

# File stem -> (unit after conversion, factor from file units). ACC is in 1/64 g (E4 info.txt).
_SAMPLED: Mapping[str, tuple[str, float]] = {
    "EDA": ("uS", 1.0),
    "BVP": ("a.u.", 1.0),
    "TEMP": ("degC", 1.0),
    "HR": ("bpm", 1.0),
    "ACC": ("g", 1.0 / 64.0),
}


@dataclass(frozen=True, kw_only=True, slots=True)
class E4Channel:
    """One regularly sampled E4 channel; ``values`` is (n,) or (n, 3) for ACC."""

    name: str
    unit: str
    rate_hz: float
    start_s: float
    timestamps_s: FloatArray
    values: FloatArray


@dataclass(frozen=True, kw_only=True, slots=True)
class E4Export:
    """A whole E4 export. ``ibi_times_s`` are the beat times, ``ibi_s`` the intervals
    ending there; ``tags_s`` the button presses (all on the same clock as the channels)."""

    folder: str
    channels: Mapping[str, E4Channel]
    ibi_times_s: FloatArray
    ibi_s: FloatArray
    tags_s: FloatArray

    def eda_frames(self, *, role: Role, chunk_samples: int = 4) -> list[Frame]:
        """The EDA as frames of ``chunk_samples`` (the live bridge's packet size), with a
        sample counter, in one segment: what a live E4 inlet would have delivered."""
        if chunk_samples < 1:
            raise ValueError(f"chunk_samples must be >= 1, got {chunk_samples}")
        eda = self.channels["EDA"]
        counters = np.arange(eda.values.shape[0], dtype=np.int64)
        return [
            Frame(
                role=role,
                signal=SignalKind.EDA,
                timestamps_s=eda.timestamps_s[start : start + chunk_samples],
                values=eda.values[start : start + chunk_samples],
                counters=counters[start : start + chunk_samples],
                segment=0,
            )
            for start in range(0, eda.values.shape[0], chunk_samples)
        ]


def _rows(path: Path) -> list[str]:
    try:
        return path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise RecordingError(f"{path}: file is missing from the E4 export") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise RecordingError(f"{path}: cannot be read ({type(exc).__name__})") from None


def _numbers(path: Path, line_no: int, line: str, width: int | None) -> list[float]:
    try:
        values = [float(cell) for cell in line.split(",")]
    except ValueError:
        raise RecordingError(
            f"{path}: line {line_no} is not comma-separated numbers: {line[:40]!r}"
        ) from None
    if width is not None and len(values) != width:
        raise RecordingError(f"{path}: line {line_no} has {len(values)} columns, expected {width}")
    return values


def _header_value(path: Path, line_no: int, line: str, what: str) -> float:
    """The start-time or rate row: one value repeated per column."""
    values = _numbers(path, line_no, line, None)
    if not all(math.isfinite(v) and v == values[0] for v in values):
        raise RecordingError(f"{path}: line {line_no} ({what}) must repeat one finite number")
    return values[0]


def _read_sampled(path: Path, name: str, clock_offset_s: float) -> E4Channel:
    rows = _rows(path)
    if len(rows) < 2:
        raise RecordingError(f"{path}: needs a start-time row and a sample-rate row")
    start_s = _header_value(path, 1, rows[0], "start time")
    rate_hz = _header_value(path, 2, rows[1], "sample rate")
    if rate_hz <= 0:
        raise RecordingError(f"{path}: line 2 sample rate {rate_hz!r} must be > 0")
    width = len(rows[0].split(","))
    data = [
        _numbers(path, index + 3, line, width)
        for index, line in enumerate(rows[2:])
        if line.strip()
    ]
    unit, factor = _SAMPLED[name]
    values = np.asarray(data, dtype=np.float64).reshape(len(data), width) * factor
    if width == 1:
        values = values[:, 0]
    # start + k / rate from integer k: no float accumulation over hours of samples.
    times = start_s + clock_offset_s + np.arange(len(data), dtype=np.float64) / rate_hz
    return E4Channel(
        name=name, unit=unit, rate_hz=rate_hz, start_s=start_s + clock_offset_s,
        timestamps_s=times, values=values,
    )  # fmt: skip


def read_e4_export(folder: str | Path, *, clock_offset_s: float = 0.0) -> E4Export:
    """Read an E4 export folder (EDA.csv required; other files optional)."""
    folder = Path(folder)
    if not (folder / "EDA.csv").is_file():
        raise RecordingError(f"{folder}: not an E4 export (EDA.csv is missing)")
    channels = {
        name: _read_sampled(folder / f"{name}.csv", name, clock_offset_s)
        for name in _SAMPLED
        if (folder / f"{name}.csv").is_file()
    }
    ibi_times, ibi = np.empty(0), np.empty(0)
    ibi_path = folder / "IBI.csv"
    if ibi_path.is_file():
        rows = _rows(ibi_path)
        if rows:
            start_s = _numbers(ibi_path, 1, rows[0].split(",")[0], 1)[0]
            pairs = np.asarray(
                [_numbers(ibi_path, i + 2, line, 2) for i, line in enumerate(rows[1:]) if line],
                dtype=np.float64,
            ).reshape(-1, 2)
            ibi_times = start_s + clock_offset_s + pairs[:, 0]
            ibi = pairs[:, 1]
    tags = np.empty(0)
    tags_path = folder / "tags.csv"
    if tags_path.is_file():
        lines = [line for line in _rows(tags_path) if line.strip()]
        tags = (
            np.asarray(
                [_numbers(tags_path, i + 1, line, 1)[0] for i, line in enumerate(lines)],
                dtype=np.float64,
            )
            + clock_offset_s
        )
    return E4Export(
        folder=str(folder), channels=channels, ibi_times_s=ibi_times, ibi_s=ibi, tags_s=tags
    )

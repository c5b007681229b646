"""Causal IIR filtering that carries its state across chunks.

A streaming filter must give the same output whatever the chunking of its input, so the
second-order-section state (``zi`` of :func:`scipy.signal.sosfilt`) is kept between calls.
Second-order sections rather than ``(b, a)`` polynomials because high-order Butterworth
filters at low cut-off / sampling-rate ratios are numerically unstable in transfer-function
form (scipy.signal documentation, "sosfilt").

Usage::

    sos = butter_sos(order=4, cutoff_hz=3.0, fs_hz=100.0, btype="lowpass")
    lowpass = StreamingSosFilter(sos)
    y1 = lowpass.process(x[:50])
    y2 = lowpass.process(x[50:])   # == sosfilt(sos, x) with steady-state start
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
from scipy import signal

from dsp.exceptions import ConfigError, SignalError
from dsp.types import FloatArray

# One IIR filter call: (b, a, x, axis, zi) -> (y, zf), the signature of scipy.signal.lfilter.
_LfilterCall = Callable[[FloatArray, FloatArray, FloatArray, int, FloatArray], Any]


def _lfilter_core() -> _LfilterCall:
    """The compiled direct-form-II-transposed core to which scipy.signal.lfilter hands every
    IIR filter (scipy 1.17 lfilter only converts and checks its arguments, then calls this
    with the same ones, so the output is bit-identical). Calling it directly saves ~3 us of
    checks per call, which dominate on the ~10-100-sample chunks of live use;
    tests/unit/test_ecg_filters.py checks it still equals lfilter. A scipy that moved its
    private core gets the public wrapper: same numbers, more overhead."""
    try:
        from scipy.signal._sigtools import _linear_filter
    except ImportError:
        return signal.lfilter
    return _linear_filter


_lfilter_call = _lfilter_core()

FilterType = Literal["lowpass", "highpass", "bandpass", "bandstop"]
InitialState = Literal["steady", "zero"]

_FILTER_TYPES: tuple[str, ...] = ("lowpass", "highpass", "bandpass", "bandstop")


def butter_sos(
    *,
    order: int,
    cutoff_hz: float | tuple[float, float],
    fs_hz: float,
    btype: FilterType,
) -> FloatArray:
    """Digital Butterworth filter as second-order sections, with validated arguments.

    ``cutoff_hz`` is one frequency for low/high-pass and a ``(low, high)`` pair for
    band-pass/stop; every cut-off must lie strictly between 0 and the Nyquist frequency
    ``fs_hz / 2``. Raises :class:`ConfigError` naming the bad argument otherwise.
    """
    if not (isinstance(order, int) and 1 <= order <= 10):
        raise ConfigError(f"filter order must be an integer in 1..10, got {order!r}", key="order")
    if not (np.isfinite(fs_hz) and fs_hz > 0):
        raise ConfigError(f"sampling rate must be finite and > 0 Hz, got {fs_hz!r}", key="fs_hz")
    if btype not in _FILTER_TYPES:
        raise ConfigError(f"btype must be one of {_FILTER_TYPES}, got {btype!r}", key="btype")
    cutoffs: tuple[float, ...] = (
        (float(cutoff_hz),) if isinstance(cutoff_hz, int | float) else tuple(cutoff_hz)
    )
    n_expected = 2 if btype in ("bandpass", "bandstop") else 1
    nyquist_hz = fs_hz / 2.0
    if len(cutoffs) != n_expected:
        raise ConfigError(
            f"{btype} needs {n_expected} cut-off frequency(ies), got {cutoff_hz!r}", key="cutoff_hz"
        )
    if any(not (0.0 < c < nyquist_hz) for c in cutoffs) or sorted(cutoffs) != list(cutoffs):
        raise ConfigError(
            f"cut-off {cutoff_hz!r} Hz must be increasing and strictly between 0 and the "
            f"Nyquist frequency {nyquist_hz:g} Hz (fs_hz={fs_hz:g})",
            key="cutoff_hz",
        )
    wn = cutoffs[0] if n_expected == 1 else list(cutoffs)
    sos = signal.butter(order, wn, btype=btype, fs=fs_hz, output="sos")
    return np.asarray(sos, dtype=np.float64)


class StreamingSosFilter:
    """A causal SOS filter whose state survives between :meth:`process` calls.

    ``initial="steady"`` (default) starts the filter in the steady state of a constant input
    equal to the first sample it sees (``sosfilt_zi * x[0]``), which avoids the large
    start-up transient a zero state gives on signals with a DC level (EDA ~ 2-20 uS);
    ``initial="zero"`` starts from rest. Either way the output is identical for any
    chunking of the same input.

    Input must be finite: one NaN would poison the recursive state for ever, so
    :meth:`process` raises :class:`SignalError` on NaN/inf. Callers mask or bridge invalid
    samples first (and flag them) — or call :meth:`reset` after a gap.
    """

    __slots__ = ("_initial", "_sections", "_zi", "_zi_unit")

    def __init__(self, sos: npt.ArrayLike, *, initial: InitialState = "steady") -> None:
        sos_array = np.asarray(sos, dtype=np.float64)
        if sos_array.ndim != 2 or sos_array.shape[1] != 6 or sos_array.shape[0] < 1:
            raise ConfigError(
                f"sos must have shape (n_sections, 6), got {sos_array.shape}", key="sos"
            )
        if initial not in ("steady", "zero"):
            raise ConfigError(f"initial must be 'steady' or 'zero', got {initial!r}", key="initial")
        self._initial: InitialState = initial
        # Contiguous (b, a) per section, made once: the filter core wants them so.
        self._sections: tuple[tuple[FloatArray, FloatArray], ...] = tuple(
            (np.ascontiguousarray(row[:3]), np.ascontiguousarray(row[3:])) for row in sos_array
        )
        # State for a unit constant input; scaled by the first sample on first use.
        self._zi_unit: FloatArray = np.asarray(signal.sosfilt_zi(sos_array), dtype=np.float64)
        self._zi: list[FloatArray] | None = None  # per section

    def reset(self) -> None:
        """Forget the state; the next sample re-initialises it (use after a gap)."""
        self._zi = None

    def process(self, x: npt.ArrayLike) -> FloatArray:
        """Filter one chunk (any length, including 0) and return the filtered chunk."""
        samples = np.asarray(x, dtype=np.float64)
        if samples.ndim != 1:
            raise SignalError(f"expected a 1-D chunk, got shape {samples.shape}")
        if samples.size == 0:
            return np.empty(0, dtype=np.float64)
        if not np.isfinite(samples).all():
            raise SignalError(
                "StreamingSosFilter.process got NaN/inf samples; mask or bridge them (and flag "
                "them invalid) before filtering"
            )
        return self.process_finite(samples)

    def process_finite(self, samples: FloatArray) -> FloatArray:
        """:meth:`process` without the checks, for callers that already know ``samples`` is a
        non-empty 1-D float64 array of finite values (NaN/inf would poison the state)."""
        if self._zi is None:
            self._zi = list(
                self._zi_unit * samples[0]
                if self._initial == "steady"
                else np.zeros_like(self._zi_unit)
            )
        # Section by section: the same direct-form-II-transposed recursion as sosfilt, but
        # several times less per-call overhead on the short chunks of live use.
        y = samples
        zi = self._zi
        for section, (b, a) in enumerate(self._sections):
            y, zi[section] = _lfilter_call(b, a, y, -1, zi[section])
        return y

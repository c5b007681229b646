"""StreamingSosFilter / butter_sos: chunk invariance, steady start, validation."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import signal

from dsp.exceptions import ConfigError, SignalError
from dsp.filters import StreamingSosFilter, butter_sos

_RNG = np.random.default_rng(1234)
_X = 10.0 + _RNG.standard_normal(600)


def _split(x: np.ndarray, cuts: list[int]) -> list[np.ndarray]:
    return np.split(x, sorted(set(cuts)))


@settings(max_examples=60, deadline=None)
@given(cuts=st.lists(st.integers(min_value=0, max_value=600), max_size=20))
def test_any_chunking_equals_one_shot(cuts: list[int]) -> None:
    sos = butter_sos(order=4, cutoff_hz=3.0, fs_hz=100.0, btype="lowpass")
    one_shot = StreamingSosFilter(sos).process(_X)
    chunked_filter = StreamingSosFilter(sos)
    chunked = np.concatenate([chunked_filter.process(c) for c in _split(_X, cuts)])
    np.testing.assert_array_equal(chunked, one_shot)


def test_zero_start_matches_plain_sosfilt() -> None:
    sos = butter_sos(order=2, cutoff_hz=(5.0, 15.0), fs_hz=360.0, btype="bandpass")
    streaming = StreamingSosFilter(sos, initial="zero")
    y = np.concatenate([streaming.process(_X[:17]), streaming.process(_X[17:])])
    np.testing.assert_allclose(y, signal.sosfilt(sos, _X), rtol=0, atol=1e-12)


@pytest.mark.parametrize("order", [1, 2, 4])
def test_output_is_bit_identical_to_public_lfilter_per_section(order: int) -> None:
    # The filter calls scipy's private lfilter core directly (per-call overhead): it must give
    # exactly the bits of the public scipy.signal.lfilter, section by section, steady start.
    sos = butter_sos(order=order, cutoff_hz=(5.0, 15.0), fs_hz=360.0, btype="bandpass")
    streaming = StreamingSosFilter(sos)
    y = np.concatenate([streaming.process(_X[:17]), streaming.process_finite(_X[17:])])
    expected = _X
    for section, zi in zip(sos, signal.sosfilt_zi(sos) * _X[0], strict=True):
        expected, _ = signal.lfilter(section[:3], section[3:], expected, zi=zi)
    np.testing.assert_array_equal(y, expected)


def test_steady_start_has_no_transient_on_constant_input() -> None:
    sos = butter_sos(order=4, cutoff_hz=3.0, fs_hz=100.0, btype="lowpass")
    y = StreamingSosFilter(sos).process(np.full(200, 13.5))
    np.testing.assert_allclose(y, 13.5, atol=1e-9)
    highpass = butter_sos(order=1, cutoff_hz=0.05, fs_hz=4.0, btype="highpass")
    y_high = StreamingSosFilter(highpass).process(np.full(50, 7.0))
    np.testing.assert_allclose(y_high, 0.0, atol=1e-9)


def test_reset_reinitialises_on_next_sample() -> None:
    sos = butter_sos(order=4, cutoff_hz=3.0, fs_hz=100.0, btype="lowpass")
    filt = StreamingSosFilter(sos)
    filt.process(np.full(50, 1.0))
    filt.reset()
    np.testing.assert_allclose(filt.process(np.full(20, 5.0)), 5.0, atol=1e-9)


def test_empty_chunk_returns_empty_and_keeps_state() -> None:
    sos = butter_sos(order=4, cutoff_hz=3.0, fs_hz=100.0, btype="lowpass")
    a, b = StreamingSosFilter(sos), StreamingSosFilter(sos)
    ya = np.concatenate([a.process(_X[:10]), a.process(np.empty(0)), a.process(_X[10:])])
    np.testing.assert_array_equal(ya, b.process(_X))


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_input_is_rejected(bad: float) -> None:
    filt = StreamingSosFilter(butter_sos(order=2, cutoff_hz=3.0, fs_hz=100.0, btype="lowpass"))
    with pytest.raises(SignalError, match="NaN/inf"):
        filt.process(np.array([1.0, bad, 2.0]))


def test_two_dimensional_chunk_is_rejected() -> None:
    filt = StreamingSosFilter(butter_sos(order=2, cutoff_hz=3.0, fs_hz=100.0, btype="lowpass"))
    with pytest.raises(SignalError, match="1-D"):
        filt.process(np.zeros((3, 2)))


@pytest.mark.parametrize(
    ("kwargs", "key"),
    [
        ({"order": 0, "cutoff_hz": 3.0, "fs_hz": 100.0, "btype": "lowpass"}, "order"),
        ({"order": 4, "cutoff_hz": 60.0, "fs_hz": 100.0, "btype": "lowpass"}, "cutoff_hz"),
        ({"order": 4, "cutoff_hz": 0.0, "fs_hz": 100.0, "btype": "highpass"}, "cutoff_hz"),
        ({"order": 4, "cutoff_hz": (15.0, 5.0), "fs_hz": 360.0, "btype": "bandpass"}, "cutoff_hz"),
        ({"order": 4, "cutoff_hz": 5.0, "fs_hz": 360.0, "btype": "bandpass"}, "cutoff_hz"),
        ({"order": 4, "cutoff_hz": 3.0, "fs_hz": -1.0, "btype": "lowpass"}, "fs_hz"),
        ({"order": 4, "cutoff_hz": 3.0, "fs_hz": 100.0, "btype": "notch"}, "btype"),
    ],
)
def test_butter_sos_validation_names_the_key(kwargs: dict[str, object], key: str) -> None:
    with pytest.raises(ConfigError) as excinfo:
        butter_sos(**kwargs)  # type: ignore[arg-type]
    assert excinfo.value.key == key


def test_bad_sos_shape_is_rejected() -> None:
    with pytest.raises(ConfigError, match="n_sections, 6"):
        StreamingSosFilter(np.zeros((2, 5)))

"""Clock handling: time_correction tracking, clock-break detection, dejitter."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dsp.exceptions import ConfigError
from streamer.clock import ClockConfig, Dejitter, OffsetTracker, find_clock_breaks


def test_offset_tracker_median_ignores_one_slow_round_trip() -> None:
    tracker = OffsetTracker(window=5, jump_s=0.1)
    assert tracker.offset_s == 0.0 and not tracker.has_estimate
    for value in (0.010, 0.011, 0.012, 0.060, 0.011):
        assert not tracker.add(value)
    assert tracker.offset_s == pytest.approx(0.011)
    assert not tracker.add(float("nan"))  # ignored, no effect
    assert tracker.offset_s == pytest.approx(0.011)


def test_offset_tracker_detects_a_sender_clock_reset() -> None:
    tracker = OffsetTracker(window=5, jump_s=0.1)
    for value in (5.0, 5.001, 4.999):
        tracker.add(value)
    assert tracker.add(-120.0)  # the sender's clock was reset
    assert tracker.offset_s == -120.0  # history restarted, not a median of both clocks
    assert not tracker.add(-120.002)


def _breaks(stamps, previous=None, arrival=0.0):
    return find_clock_breaks(
        np.asarray(stamps, dtype=np.float64), previous_s=previous, arrival_advance_s=arrival,
        backward_jump_s=0.5, forward_jump_s=5.0,
    )  # fmt: skip


def test_clock_breaks_backward_and_forward() -> None:
    assert _breaks([]) == []
    assert _breaks([1.0, 1.01, 1.02]) == []
    assert _breaks([1.0, 1.01, 0.01, 0.02]) == [2]  # -1 s
    assert _breaks([1.0, 11.01, 11.02]) == [1]  # +10 s inside one chunk
    assert _breaks([1.0, 1.01, 1.005]) == []  # jitter, not a break
    # Across chunks: +10 s with the data arriving 0.1 s later is a jump ...
    assert _breaks([11.1, 11.11], previous=1.0, arrival=0.1) == [0]
    # ... an 8 s dropout that took 8 s of arrival time is a gap, not a clock break.
    assert _breaks([9.0, 9.01], previous=1.0, arrival=8.0) == []
    # A catch-up burst after a stall (arrival far later than timestamps) is no break.
    assert _breaks([1.01, 1.02], previous=1.0, arrival=3.0) == []
    assert _breaks([0.4], previous=1.0, arrival=0.1) == [0]


def _packet_stamped(
    n: int, rate_hz: float, packet: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """True sample times with a 0.02 % clock drift and the timestamps a Bluetooth bridge
    gives them: the whole packet stamped at its arrival (+ random latency)."""
    rng = np.random.default_rng(seed)
    true = 1000.0 + np.arange(n) / rate_hz * 1.0002
    raw = true.copy()
    for start in range(0, n, packet):
        stop = min(start + packet, n)
        raw[start:stop] = true[stop - 1] + 0.02 + rng.uniform(0.0, 0.03)
    return true, raw


def test_dejitter_removes_packet_jitter() -> None:
    true, raw = _packet_stamped(130 * 120, 130.0, 73, seed=1)
    smoothed = Dejitter(rate_hz=130.0).push(raw)
    settled = slice(130 * 30, None)
    raw_jitter = np.std((raw - true)[settled])
    smooth_jitter = np.std((smoothed - true)[settled])
    assert raw_jitter > 0.1
    assert smooth_jitter < raw_jitter / 20
    assert np.all(np.diff(smoothed) > 0)
    # The sender's 0.02 % clock drift is learned (nominal slope would give 1.0000).
    mean_interval = (smoothed[-1] - smoothed[-1001]) / 1000
    assert 1.0001 < mean_interval * 130.0 < 1.0003


@settings(max_examples=30, deadline=None)
@given(cuts=st.lists(st.integers(min_value=0, max_value=3000), max_size=12))
def test_dejitter_is_chunk_invariant(cuts: list[int]) -> None:
    _, raw = _packet_stamped(3000, 256.0, 26, seed=2)
    whole = Dejitter(rate_hz=256.0).push(raw)
    pieces = Dejitter(rate_hz=256.0)
    bounds = [0, *sorted(cuts), raw.shape[0]]
    chunked = np.concatenate([pieces.push(raw[a:b]) for a, b in itertools.pairwise(bounds)])
    np.testing.assert_allclose(chunked, whole, rtol=0, atol=1e-9)


def test_dejitter_resyncs_after_a_gap_and_stays_accurate_for_hours() -> None:
    rate = 256.0
    hours = np.arange(int(rate * 3600 * 2)) / rate + 50_000.0
    dejitter = Dejitter(rate_hz=rate)
    out = np.concatenate(
        [dejitter.push(hours[i : i + 4096]) for i in range(0, hours.shape[0], 4096)]
    )
    assert np.max(np.abs(out - hours)) < 1e-6  # sums rebased: no drift after 2 h
    gap = hours[-1] + 3.0 + np.arange(100) / rate  # 3 s without samples (dropout)
    after = dejitter.push(gap)
    assert np.max(np.abs(after - gap)) < 1e-6  # refit, not dragged along the old line


def test_dejitter_irregular_stream_passes_through_but_stays_increasing() -> None:
    dejitter = Dejitter(rate_hz=0.0)
    out = dejitter.push(np.array([1.0, 2.5, 2.5, 7.0]))
    assert out[0] == 1.0 and out[1] == 2.5 and out[3] == 7.0
    assert out[2] > out[1]
    assert dejitter.push(np.empty(0)).shape == (0,)


def test_clock_config_validation() -> None:
    with pytest.raises(ConfigError, match=r"\[forward_jump_s\].*-1.0.*allowed: > 0"):
        ClockConfig(forward_jump_s=-1.0)
    with pytest.raises(ConfigError, match=r"\[offset_window\]"):
        ClockConfig(offset_window=0)


@settings(max_examples=60, deadline=None)
@given(
    stamps=st.lists(
        st.floats(min_value=-1e6, max_value=1e6, allow_nan=False), min_size=1, max_size=300
    ),
    rate=st.sampled_from([0.0, 4.0, 130.0, 1000.0]),
)
def test_dejitter_garbage_timestamps_give_finite_increasing_output(stamps, rate) -> None:
    """Backwards, repeated and wildly jumping timestamps (the inlet splits segments at
    real jumps, but the smoother must never produce NaN or go backwards itself)."""
    dejitter = Dejitter(rate_hz=rate)
    raw = np.asarray(stamps)
    out = np.concatenate([dejitter.push(raw[:7]), dejitter.push(raw[7:])])
    assert out.shape == raw.shape
    assert np.all(np.isfinite(out))
    assert np.all(np.diff(out) > 0)


@settings(max_examples=60, deadline=None)
@given(
    stamps=st.lists(st.floats(min_value=-1e4, max_value=1e4), max_size=50),
    previous=st.one_of(st.none(), st.floats(min_value=-1e4, max_value=1e4)),
    arrival=st.floats(min_value=-10.0, max_value=100.0),
)
def test_clock_breaks_are_valid_indices_of_real_jumps(stamps, previous, arrival) -> None:
    raw = np.asarray(stamps, dtype=np.float64)
    breaks = find_clock_breaks(
        raw, previous_s=previous, arrival_advance_s=arrival, backward_jump_s=0.5,
        forward_jump_s=5.0,
    )  # fmt: skip
    assert breaks == sorted(set(breaks))
    for index in breaks:
        before = raw[index - 1] if index > 0 else previous
        assert before is not None
        step = raw[index] - before
        assert step < -0.5 or step > 5.0

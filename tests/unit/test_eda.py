"""Streaming EDA chain (dsp.eda): synthetic responses with known truth, contact loss, garbage.

Synthetic SCRs are Bateman functions (difference of exponentials, rise 0.75 s / decay 2 s, as
in Benedek & Kaernbach 2010) with a known onset and amplitude; their peak lies 1.18 s after
the onset (analytic maximum of the Bateman function for these time constants).
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from dsp.eda import (
    EdaConfig,
    EdaOutput,
    EdaProcessor,
    conductance_from_resistance,
    eda_features,
)
from dsp.eda_quality import EdaQuality
from dsp.exceptions import ConfigError, SignalError
from dsp.types import FloatArray

RISE_TAU_S = 0.75
DECAY_TAU_S = 2.0
# argmax of exp(-t/decay) - exp(-t/rise): t* = ln(decay/rise) * rise * decay / (decay - rise)
PEAK_AFTER_ONSET_S = (
    math.log(DECAY_TAU_S / RISE_TAU_S) * RISE_TAU_S * DECAY_TAU_S / (DECAY_TAU_S - RISE_TAU_S)
)


def bateman_scr(t_s: FloatArray, onset_s: float, amplitude_us: float) -> FloatArray:
    """One SCR of the given peak amplitude starting at ``onset_s``."""
    after = np.clip(t_s - onset_s, 0.0, None)
    shape = np.exp(-after / DECAY_TAU_S) - np.exp(-after / RISE_TAU_S)
    peak = math.exp(-PEAK_AFTER_ONSET_S / DECAY_TAU_S) - math.exp(-PEAK_AFTER_ONSET_S / RISE_TAU_S)
    return np.asarray(amplitude_us * shape / peak, dtype=np.float64)


def synthetic_eda(
    fs_hz: float,
    duration_s: float,
    scrs: list[tuple[float, float]],
    *,
    noise_us: float = 0.0,
    seed: int = 0,
) -> tuple[FloatArray, FloatArray]:
    """Tonic 5 uS with a slow 0.005 uS/s drift, the given (onset_s, amplitude_us) SCRs and
    optional white noise. Returns (timestamps_s, values_us) starting at t = 1000 s."""
    t_s = 1000.0 + np.arange(round(duration_s * fs_hz)) / fs_hz
    x_us = 5.0 + 0.005 * (t_s - t_s[0])
    for onset_s, amplitude_us in scrs:
        x_us = x_us + bateman_scr(t_s, t_s[0] + onset_s, amplitude_us)
    if noise_us:
        x_us = x_us + np.random.default_rng(seed).normal(0.0, noise_us, t_s.size)
    return t_s, x_us


def concat_outputs(outputs: list[EdaOutput]) -> dict[str, object]:
    """One-shot-comparable view of a list of push() outputs."""
    return {
        "t": np.concatenate([o.scl.t_s for o in outputs]),
        "scl": np.concatenate([o.scl.values for o in outputs]),
        "phasic": np.concatenate([o.phasic.values for o in outputs]),
        "valid": np.concatenate([o.scl.valid for o in outputs]),
        "quality": np.concatenate([o.quality for o in outputs]),
        "scrs": tuple(s for o in outputs for s in o.scrs),
    }


# ---------------------------------------------------------------- unit conversion


def test_conductance_from_resistance_known_values() -> None:
    np.testing.assert_allclose(
        conductance_from_resistance([100.0, 1000.0, 50.0]), [10.0, 1.0, 20.0]
    )
    np.testing.assert_allclose(conductance_from_resistance([2.0], unit="megohm"), [0.5])
    np.testing.assert_allclose(conductance_from_resistance([200_000.0], unit="ohm"), [5.0])


def test_conductance_from_resistance_flags_impossible_resistance() -> None:
    g = conductance_from_resistance([0.0, -5.0, np.nan, np.inf])
    assert np.isnan(g[:3]).all()
    assert g[3] == 0.0  # open electrode -> 0 uS -> flagged out_of_range downstream


def test_conductance_from_resistance_rejects_unknown_unit() -> None:
    with pytest.raises(ConfigError, match="unit"):
        conductance_from_resistance([1.0], unit="kilo")  # type: ignore[arg-type]


# ---------------------------------------------------------------- configuration


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("lowpass_hz", 0.0),
        ("lowpass_order", 0),
        ("highpass_hz", math.nan),
        ("min_amplitude_us", -0.01),
        ("onset_slope_fraction", 1.0),
        ("rise_search_s", 0.0),
        ("min_level_us", -1.0),
        ("max_level_us", 0.01),
        ("flat_line_s", math.inf),
        ("device_range_us", (5.0, 1.0)),
        ("max_gap_s", 0.0),
        ("settle_s", -1.0),
    ],
)
def test_config_rejects_bad_values_naming_the_key(key: str, value: object) -> None:
    with pytest.raises(ConfigError, match=key) as info:
        EdaConfig(**{key: value})  # type: ignore[arg-type]
    assert info.value.key == key


@pytest.mark.parametrize(("fs_hz", "grid_hz"), [(0.0, 4.0), (100.0, -4.0), (math.nan, 4.0)])
def test_processor_rejects_bad_rates(fs_hz: float, grid_hz: float) -> None:
    with pytest.raises(ConfigError):
        EdaProcessor(fs_hz, grid_hz=grid_hz)


def test_lowpass_skipped_only_when_cutoff_not_below_nyquist() -> None:
    assert not EdaProcessor(4.0).lowpass_applied  # Empatica E4: Nyquist 2 Hz < 3 Hz
    assert not EdaProcessor(6.0).lowpass_applied  # Nyquist == cut-off
    assert EdaProcessor(8.0).lowpass_applied
    assert EdaProcessor(100.0).lowpass_applied
    # Order-4 Butterworth at 3 Hz delays DC by 2.6131 / (2 pi 3 Hz) = 0.1386 s (analog value).
    assert EdaProcessor(1000.0).lowpass_delay_s == pytest.approx(2.6131 / (2 * math.pi * 3), 0.01)
    assert EdaProcessor(4.0).lowpass_delay_s == 0.0


# ---------------------------------------------------------------- accuracy on known truth


@pytest.mark.parametrize("fs_hz", [4.0, 32.0, 100.0, 1000.0])
def test_synthetic_scrs_found_with_onset_peak_amplitude(fs_hz: float) -> None:
    truth = [(20.0, 0.5), (40.0, 0.1), (60.0, 1.0)]
    t_s, x_us = synthetic_eda(fs_hz, 80.0, truth, noise_us=0.002)
    out = EdaProcessor(fs_hz).push(t_s, x_us)
    assert len(out.scrs) == len(truth)
    for scr, (onset_s, amplitude_us) in zip(out.scrs, truth, strict=True):
        true_onset_s = t_s[0] + onset_s
        assert scr.onset_t_s == pytest.approx(true_onset_s, abs=0.5)
        assert scr.peak_t_s == pytest.approx(true_onset_s + PEAK_AFTER_ONSET_S, abs=0.5)
        # Trough-to-peak of the signal: the SCR amplitude plus drift over the rise
        # (0.005 uS/s x ~1.5 s) plus noise at both ends (2 x 3 sigma = 0.012 uS).
        assert scr.amplitude_us == pytest.approx(amplitude_us, rel=0.1, abs=0.02)
        assert scr.rise_time_s == pytest.approx(scr.peak_t_s - scr.onset_t_s)
    assert np.nanmean(out.scl.values) == pytest.approx(5.0 + 0.005 * 40.0, abs=0.15)


def test_response_below_threshold_is_not_reported() -> None:
    t_s, x_us = synthetic_eda(100.0, 60.0, [(20.0, 0.01), (40.0, 0.05)])
    out = EdaProcessor(100.0).push(t_s, x_us)
    assert [round(s.onset_t_s - t_s[0]) for s in out.scrs] == [40]
    lenient = EdaProcessor(100.0, config=EdaConfig(min_amplitude_us=0.005)).push(t_s, x_us)
    assert len(lenient.scrs) == 2


def test_grid_times_are_exact_multiples_and_valid_values_finite() -> None:
    t_s, x_us = synthetic_eda(100.0, 30.0, [(10.0, 0.3)])
    t_s = t_s + 0.0037  # raw samples off the grid
    out = EdaProcessor(100.0, grid_hz=4.0).push(t_s, x_us)
    k = np.rint(out.scl.t_s * 4.0).astype(np.int64)
    assert np.array_equal(out.scl.t_s, k / 4.0)
    assert np.array_equal(np.diff(k), np.ones(k.size - 1, dtype=np.int64))
    assert out.scl.t_s[0] > t_s[0] and out.scl.t_s[-1] <= t_s[-1]
    assert np.isfinite(out.scl.values[out.scl.valid]).all()
    assert np.isnan(out.scl.values[~out.scl.valid]).all()
    # The first settle_s (5 s) after the start are withheld, the rest is valid.
    settling = out.quality == EdaQuality.SETTLING
    assert out.scl.t_s[settling].max() < t_s[0] + 5.0 + 0.25
    assert out.scl.valid[~settling].all()


# ---------------------------------------------------------------- contact loss


def _reason_at(out: EdaOutput, start_s: float, end_s: float) -> set[str]:
    inside = (out.scl.t_s >= start_s) & (out.scl.t_s <= end_s)
    return {EdaQuality(int(q)).reason for q in out.quality[inside]}


def test_disconnection_to_zero_is_flagged_and_has_no_scrs() -> None:
    fs_hz = 32.0
    t_s, x_us = synthetic_eda(fs_hz, 100.0, [(20.0, 0.5), (45.0, 0.8), (80.0, 0.5)])
    lost = (t_s >= t_s[0] + 40.0) & (t_s < t_s[0] + 60.0)
    x_us[lost] = np.random.default_rng(1).uniform(0.0, 0.01, lost.sum())  # open electrode
    out = EdaProcessor(fs_hz).push(t_s, x_us)
    t0 = t_s[0]
    assert _reason_at(out, t0 + 40.1, t0 + 59.9) == {"out_of_range"}
    assert _reason_at(out, t0 + 60.1, t0 + 64.9) == {"settling"}
    assert not out.scl.valid[(out.scl.t_s > t0 + 40.0) & (out.scl.t_s < t0 + 65.0)].any()
    onsets = [round(s.onset_t_s - t0) for s in out.scrs]
    assert onsets == [20, 80]  # the SCR during contact loss is not reported
    spans = out.invalid_spans()
    assert [s.reason for s in spans] == ["settling", "out_of_range", "settling"]


def test_exactly_constant_signal_is_flagged_flat_line() -> None:
    fs_hz = 100.0
    t_s, x_us = synthetic_eda(fs_hz, 80.0, [(10.0, 0.5), (60.0, 0.5)])
    stuck = (t_s >= t_s[0] + 30.0) & (t_s < t_s[0] + 50.0)
    x_us[stuck] = x_us[stuck][0]
    out = EdaProcessor(fs_hz).push(t_s, x_us)
    t0 = t_s[0]
    # Causal rule: flagged from flat_line_s (5 s) into the run until the run ends.
    assert _reason_at(out, t0 + 35.1, t0 + 49.9) == {"flat_line"}
    assert out.scl.valid[(out.scl.t_s > t0 + 6.0) & (out.scl.t_s < t0 + 34.9)].all()
    assert [round(s.onset_t_s - t0) for s in out.scrs] == [10, 60]


def test_clipping_at_device_rail_is_flagged() -> None:
    t_s, x_us = synthetic_eda(100.0, 40.0, [(20.0, 2.0)])
    rail_us = 6.0
    clipped = np.minimum(x_us, rail_us)
    config = EdaConfig(device_range_us=(0.0, rail_us))
    out = EdaProcessor(100.0, config=config).push(t_s, clipped)
    at_rail = t_s[clipped >= rail_us]
    assert at_rail.size > 0
    assert "clipped" in _reason_at(out, at_rail[0] + 0.01, at_rail[-1])
    assert not out.scrs  # the response was cut off by the rail: no amplitude to report


def test_nan_and_inf_are_masked_counted_and_flagged() -> None:
    t_s, x_us = synthetic_eda(100.0, 40.0, [(25.0, 0.5)])
    x_us[1000:1003] = np.nan
    x_us[1500] = np.inf
    processor = EdaProcessor(100.0)
    out = processor.push(t_s, x_us)
    assert processor.nonfinite_count == 4
    assert "non_finite" in _reason_at(out, t_s[999], t_s[1003])
    assert "non_finite" in _reason_at(out, t_s[1499], t_s[1501] + 0.25)
    assert np.isfinite(out.scl.values[out.scl.valid]).all()
    assert [round(s.onset_t_s - t_s[0]) for s in out.scrs] == [25]


def test_gap_is_flagged_not_interpolated_then_settles() -> None:
    t_s, x_us = synthetic_eda(100.0, 60.0, [(40.0, 0.5)])
    t_s = np.where(t_s >= t_s[0] + 20.0, t_s + 3.0, t_s)  # 3 s with no samples at 20 s
    out = EdaProcessor(100.0).push(t_s, x_us)
    t0 = t_s[0]
    assert _reason_at(out, t0 + 20.01, t0 + 23.0) == {"gap"}
    assert _reason_at(out, t0 + 23.01, t0 + 27.99) == {"settling"}
    assert out.scl.valid[out.scl.t_s > t0 + 28.0].all()
    assert [round(s.onset_t_s - t0) for s in out.scrs] == [43]


# ---------------------------------------------------------------- garbage and rejected input


def test_non_increasing_timestamps_raise_and_leave_state_unchanged() -> None:
    t_s, x_us = synthetic_eda(100.0, 20.0, [(10.0, 0.5)])
    reference = EdaProcessor(100.0)
    expected = concat_outputs(
        [reference.push(t_s[:1000], x_us[:1000]), reference.push(t_s[1000:], x_us[1000:])]
    )
    processor = EdaProcessor(100.0)
    first = processor.push(t_s[:1000], x_us[:1000])
    with pytest.raises(SignalError, match="strictly increasing"):
        processor.push(t_s[999:1100], x_us[999:1100])  # repeats the last timestamp
    backwards = t_s[1000:1100].copy()
    backwards[50] = backwards[10]
    with pytest.raises(SignalError, match="strictly increasing"):
        processor.push(backwards, x_us[1000:1100])
    with pytest.raises(SignalError, match="NaN"):
        processor.push(np.array([np.nan]), np.array([5.0]))
    got = concat_outputs([first, processor.push(t_s[1000:], x_us[1000:])])
    for key in ("t", "scl", "phasic", "quality"):
        np.testing.assert_array_equal(got[key], expected[key])
    assert got["scrs"] == expected["scrs"]


@pytest.mark.parametrize(
    ("timestamps", "values"),
    [
        (np.arange(3.0), np.ones(4)),
        (np.zeros((2, 2)), np.zeros((2, 2))),
        (np.arange(2.0), np.array(["a", "b"])),
    ],
)
def test_malformed_chunks_raise_signal_error(timestamps: object, values: object) -> None:
    with pytest.raises(SignalError):
        EdaProcessor(100.0).push(timestamps, values)  # type: ignore[arg-type]


def test_empty_chunks_return_empty_output_anywhere() -> None:
    processor = EdaProcessor(32.0)
    assert len(processor.push([], []).scl) == 0
    t_s, x_us = synthetic_eda(32.0, 10.0, [])
    processor.push(t_s[:100], x_us[:100])
    out = processor.push(np.empty(0), np.empty(0))
    assert len(out.scl) == 0 and len(out.phasic) == 0 and out.quality.size == 0 and not out.scrs


def test_eda_features_sample_indices_match_times() -> None:
    fs_hz = 100.0
    _, x_us = synthetic_eda(fs_hz, 60.0, [(20.0, 0.5), (40.0, 0.3)])
    features = eda_features(x_us, fs_hz)
    assert len(features.scrs) == 2
    np.testing.assert_array_equal(
        features.scr_peak_index, [round(s.peak_t_s * fs_hz) for s in features.scrs]
    )
    assert abs(features.scr_onset_index[0] - 20.0 * fs_hz) <= 0.5 * fs_hz
    np.testing.assert_allclose(features.scr_amplitude_us, [s.amplitude_us for s in features.scrs])
    assert [s.reason for s in features.invalid_spans] == ["settling"]

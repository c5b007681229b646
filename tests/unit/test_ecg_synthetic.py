"""A synthetic ECG with known R-peak times, shared by the ECG and heart-rate unit tests.

The waveform is a sum of Gaussians per beat (Q, R, S, T; McSharry et al. 2003 use the same
shape family), plus white noise and baseline wander, so the true R peak of every beat is
known without running any detector.
"""

from __future__ import annotations

import numpy as np

from dsp.types import FloatArray

# (offset from R in s, width in s, amplitude in mV) of the Q, R, S and T waves.
_WAVES = ((-0.025, 0.008, -0.12), (0.0, 0.010, 1.2), (0.025, 0.008, -0.25), (0.25, 0.045, 0.3))


def synthetic_ecg(
    *,
    fs_hz: float,
    beat_times_s: FloatArray,
    duration_s: float,
    noise_mv: float = 0.02,
    seed: int = 0,
) -> FloatArray:
    """ECG in mV sampled at ``fs_hz`` with R peaks at ``beat_times_s``."""
    rng = np.random.default_rng(seed)
    t_s = np.arange(round(duration_s * fs_hz)) / fs_hz
    ecg = 0.3 * np.sin(2 * np.pi * 0.25 * t_s)  # respiration-like baseline wander
    for beat_s in beat_times_s:
        near = np.abs(t_s - beat_s) < 0.5
        for offset_s, width_s, amplitude_mv in _WAVES:
            ecg[near] += amplitude_mv * np.exp(
                -0.5 * ((t_s[near] - beat_s - offset_s) / width_s) ** 2
            )
    return ecg + noise_mv * rng.standard_normal(t_s.shape[0])


def regular_beats(
    *, hr_bpm: float, duration_s: float, jitter_s: float = 0.02, seed: int = 0
) -> FloatArray:
    """Beat times at ``hr_bpm`` with a little random variability, from 0.5 s to the end - 0.5 s."""
    rng = np.random.default_rng(seed)
    n_beats = int((duration_s - 1.0) * hr_bpm / 60.0)
    intervals_s = 60.0 / hr_bpm + jitter_s * rng.standard_normal(n_beats)
    times_s = 0.5 + np.concatenate([[0.0], np.cumsum(intervals_s[:-1])])
    return times_s[times_s < duration_s - 0.5]


def test_generator_puts_the_r_peak_at_the_given_times() -> None:
    fs_hz = 500.0
    beats_s = np.array([1.0, 2.0, 3.1])
    ecg = synthetic_ecg(fs_hz=fs_hz, beat_times_s=beats_s, duration_s=4.0, noise_mv=0.0)
    for beat_s in beats_s:
        centre = round(beat_s * fs_hz)
        window = ecg[centre - 25 : centre + 26]
        assert int(np.argmax(window)) == 25


def test_regular_beats_have_the_requested_rate() -> None:
    beats_s = regular_beats(hr_bpm=75.0, duration_s=61.0)
    assert abs(60.0 / float(np.mean(np.diff(beats_s))) - 75.0) < 1.0

"""Physiologically plausible synthetic ECG and EDA for a therapist-client dyad.

Pure numpy (no LSL): the live simulator (:mod:`streamer.simulate`) publishes what this
module computes, and tests score the DSP and synchrony engine against the scenario that
drove it.

Model, per person:

* a latent *arousal* process (Ornstein-Uhlenbeck, time constant ~2 s) — independent between
  the two people, except inside scripted episodes where the follower's arousal becomes
  ``sqrt(1 - c^2) * own + c * leader(t - lag)`` (c < 0 gives anti-phase);
* heart rate = resting rate + gain * arousal + respiratory sinus arrhythmia (each person
  breathes at their own rate) -> beat times by integrating the rate, plus small beat jitter;
* ECG = a P-QRS-T template (sum of Gaussians, T wave position scaling with sqrt(RR) as in
  Bazett's QT correction) at each beat, with respiratory amplitude modulation, baseline
  wander, white noise and mains interference;
* skin conductance = tonic level (slow drift + low-passed arousal) + skin-conductance
  responses (bi-exponential shape) fired by a Poisson process whose rate grows with arousal.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.signal import lfilter

from dsp.types import FloatArray, Role
from streamer.scenario import Scenario, ground_truth

__all__ = ["DyadSignals", "PersonProfile", "ground_truth", "synthesize"]

# Latent processes are generated on this fine grid and interpolated to device rates.
LATENT_HZ = 16.0
# Analysis grid of the truth series handed to tests (matches the dsp default).
GRID_HZ = 4.0
# Arousal time constant: fast enough that 20-30 s synchrony windows see several swings.
AROUSAL_TAU_S = 2.0
# Coupling switches on/off over this ramp so episode edges are not step artefacts.
COUPLING_RAMP_S = 2.0


@dataclass(frozen=True, slots=True, kw_only=True)
class PersonProfile:
    """Physiological constants of one simulated person (documented resting adult ranges)."""

    resting_hr_bpm: float
    hr_gain_bpm: float = 6.0
    rsa_bpm: float = 2.0
    breathing_hz: float = 0.25
    tonic_scl_us: float = 5.0
    scl_gain_us: float = 0.8
    scr_rate_per_s: float = 0.05
    r_amplitude_mv: float = 1.2


DEFAULT_PROFILES: dict[Role, PersonProfile] = {
    Role.THERAPIST: PersonProfile(resting_hr_bpm=68.0, breathing_hz=0.23, tonic_scl_us=4.2),
    Role.CLIENT: PersonProfile(resting_hr_bpm=78.0, breathing_hz=0.28, tonic_scl_us=7.5),
}


@dataclass(frozen=True, slots=True)
class DyadSignals:
    """Everything synthesized for one pass of a scenario; times are seconds from its start."""

    grid_t_s: FloatArray
    arousal: dict[Role, FloatArray]
    hr_bpm: dict[Role, FloatArray]
    scl_us: dict[Role, FloatArray]
    beat_times_s: dict[Role, FloatArray]
    ecg_t_s: FloatArray
    ecg_mv: dict[Role, FloatArray]
    eda_t_s: FloatArray
    eda_us: dict[Role, FloatArray]


def synthesize(
    scenario: Scenario,
    *,
    pass_index: int = 0,
    profiles: dict[Role, PersonProfile] | None = None,
) -> DyadSignals:
    """Synthesize one pass of ``scenario``; ``pass_index`` varies the randomness between loops."""
    profiles = profiles or DEFAULT_PROFILES
    rng = np.random.default_rng([scenario.seed, pass_index])
    n_latent = int(round(scenario.duration_s * LATENT_HZ))
    latent_t = np.arange(n_latent) / LATENT_HZ
    arousal = _coupled_arousal(scenario, latent_t, rng)

    grid_t = np.arange(int(round(scenario.duration_s * GRID_HZ))) / GRID_HZ
    ecg_t = np.arange(int(round(scenario.duration_s * scenario.ecg_rate_hz))) / scenario.ecg_rate_hz
    eda_t = np.arange(int(round(scenario.duration_s * scenario.eda_rate_hz))) / scenario.eda_rate_hz

    hr: dict[Role, FloatArray] = {}
    scl: dict[Role, FloatArray] = {}
    beats: dict[Role, FloatArray] = {}
    ecg: dict[Role, FloatArray] = {}
    eda: dict[Role, FloatArray] = {}
    for role in Role:
        profile = profiles[role]
        hr_latent = _heart_rate(profile, latent_t, arousal[role], rng)
        beats[role] = _beat_times(hr_latent, latent_t, scenario.duration_s, rng)
        ecg[role] = _ecg(profile, ecg_t, beats[role], rng)
        scl_latent = _skin_conductance(profile, latent_t, arousal[role], rng)
        eda[role] = np.interp(eda_t, latent_t, scl_latent) + rng.normal(0, 0.003, eda_t.size)
        hr[role] = np.interp(grid_t, latent_t, hr_latent)
        scl[role] = np.interp(grid_t, latent_t, scl_latent)
    grid_arousal = {role: np.interp(grid_t, latent_t, arousal[role]) for role in Role}
    return DyadSignals(
        grid_t_s=grid_t,
        arousal=grid_arousal,
        hr_bpm=hr,
        scl_us=scl,
        beat_times_s=beats,
        ecg_t_s=ecg_t,
        ecg_mv=ecg,
        eda_t_s=eda_t,
        eda_us=eda,
    )


def _ou_process(n: int, rng: np.random.Generator) -> FloatArray:
    """Unit-variance Ornstein-Uhlenbeck samples at LATENT_HZ (exact AR(1) discretisation)."""
    decay = np.exp(-1.0 / (AROUSAL_TAU_S * LATENT_HZ))
    innovations = rng.normal(0.0, np.sqrt(1.0 - decay**2), n)
    innovations[0] = rng.normal()
    return lfilter([1.0], [1.0, -decay], innovations)


def _coupling_weight(t: FloatArray, start_s: float, end_s: float) -> FloatArray:
    """0 outside, 1 inside the episode, with linear ramps of COUPLING_RAMP_S at both edges."""
    rise = np.clip((t - start_s) / COUPLING_RAMP_S + 0.5, 0.0, 1.0)
    fall = np.clip((end_s - t) / COUPLING_RAMP_S + 0.5, 0.0, 1.0)
    return np.minimum(rise, fall)


def _coupled_arousal(
    scenario: Scenario, t: FloatArray, rng: np.random.Generator
) -> dict[Role, FloatArray]:
    own = {role: _ou_process(t.size, rng) for role in Role}
    arousal = {role: own[role].copy() for role in Role}
    for ep in scenario.episodes:
        weight = ep.coupling * _coupling_weight(t, ep.start_s, ep.end_s)
        active = weight != 0
        lag_samples = int(round(ep.lag_s * LATENT_HZ))
        source_index = np.clip(np.arange(t.size) - lag_samples, 0, t.size - 1)
        delayed_leader = own[ep.leader][source_index]
        w = weight[active]
        arousal[ep.follower][active] = (
            np.sqrt(1.0 - w**2) * own[ep.follower][active] + w * delayed_leader[active]
        )
    return arousal


def _heart_rate(
    profile: PersonProfile, t: FloatArray, arousal: FloatArray, rng: np.random.Generator
) -> FloatArray:
    breathing_phase = 2 * np.pi * profile.breathing_hz * t + rng.uniform(0, 2 * np.pi)
    return (
        profile.resting_hr_bpm
        + profile.hr_gain_bpm * arousal
        + profile.rsa_bpm * np.sin(breathing_phase)
    )


def _beat_times(
    hr_bpm: FloatArray, t: FloatArray, duration_s: float, rng: np.random.Generator
) -> FloatArray:
    """Beats where the integrated rate crosses whole cycles, with ~8 ms of beat jitter."""
    cycles = np.concatenate([[0.0], np.cumsum(hr_bpm[:-1] / 60.0 / LATENT_HZ)])
    cycles += rng.uniform(0, 1)
    whole = np.arange(np.ceil(cycles[0]), np.floor(cycles[-1]) + 1)
    beats = np.interp(whole, cycles, t) + rng.normal(0, 0.008, whole.size)
    return np.sort(beats[(beats > 0.3) & (beats < duration_s - 0.5)])


# P-QRS-T template: (offset from R peak in s, amplitude relative to R, width in s).
_PQRST = (
    (-0.20, 0.12, 0.025),  # P
    (-0.035, -0.12, 0.010),  # Q
    (0.0, 1.0, 0.011),  # R
    (0.035, -0.22, 0.011),  # S
    (0.28, 0.28, 0.050),  # T (offset scaled by sqrt(RR), Bazett)
)


def _ecg(
    profile: PersonProfile, t: FloatArray, beats: FloatArray, rng: np.random.Generator
) -> FloatArray:
    fs = 1.0 / (t[1] - t[0])
    ecg = np.zeros(t.size)
    rr = np.diff(beats, prepend=beats[0] - 0.8) if beats.size else beats
    breathing = np.sin(2 * np.pi * profile.breathing_hz * t)
    half_width = int(0.5 * fs)
    for beat_s, rr_s in zip(beats, rr, strict=True):
        centre = int(round(beat_s * fs))
        lo, hi = max(centre - half_width, 0), min(centre + half_width, t.size)
        seg_t = t[lo:hi] - beat_s
        wave = np.zeros(hi - lo)
        for offset_s, amplitude, width_s in _PQRST:
            if offset_s > 0.1:
                offset_s *= np.sqrt(max(rr_s, 0.3))
            wave += amplitude * np.exp(-0.5 * ((seg_t - offset_s) / width_s) ** 2)
        ecg[lo:hi] += profile.r_amplitude_mv * wave
    ecg *= 1.0 + 0.08 * breathing  # chest movement modulates the QRS amplitude
    wander = 0.12 * breathing + 0.05 * np.sin(2 * np.pi * 0.03 * t + rng.uniform(0, 6.3))
    mains = 0.01 * np.sin(2 * np.pi * 50.0 * t)
    return ecg + wander + mains + rng.normal(0.0, 0.015, t.size)


def _skin_conductance(
    profile: PersonProfile, t: FloatArray, arousal: FloatArray, rng: np.random.Generator
) -> FloatArray:
    # Tonic level follows arousal through a ~3 s first-order lag: sweat-gland output is slow.
    smoothing = np.exp(-1.0 / (3.0 * LATENT_HZ))
    slow_arousal = lfilter([1.0 - smoothing], [1.0, -smoothing], arousal)
    drift = 0.3 * t / max(t[-1], 1.0)
    tonic = profile.tonic_scl_us + drift + profile.scl_gain_us * slow_arousal

    # SCRs: inhomogeneous Poisson process, rate rising exponentially with arousal.
    rate = profile.scr_rate_per_s * np.exp(1.2 * arousal)
    fired = rng.uniform(0, 1, t.size) < rate / LATENT_HZ
    amplitudes = np.where(fired, rng.lognormal(np.log(0.15), 0.5, t.size), 0.0)
    kernel_t = np.arange(int(20 * LATENT_HZ)) / LATENT_HZ
    latency_s, rise_tau_s, decay_tau_s = 1.5, 0.75, 4.0
    shape = np.exp(-(kernel_t - latency_s) / decay_tau_s) - np.exp(
        -(kernel_t - latency_s) / rise_tau_s
    )
    shape = np.where(kernel_t >= latency_s, shape, 0.0)
    shape /= shape.max()
    phasic = np.convolve(amplitudes, shape)[: t.size]
    return np.asarray(tonic + phasic, dtype=np.float64)

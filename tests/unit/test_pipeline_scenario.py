"""The whole dyad pipeline on simulated raw ECG/EDA, scored against the scenario's truth.

This is the skeleton's acceptance check that synchrony means something: raw signals go
through R-peak detection / EDA filtering, grid alignment and the synchrony engine exactly
as in a live session (frames of 0.1 s), and the reported synchrony during a scripted
strongly-coupled episode must be clearly higher than during the decoupled stretches.
"""

from __future__ import annotations

import numpy as np
import pytest

from dsp.pipeline import Derived, DyadPipeline
from dsp.synchrony import SyncUpdate
from dsp.types import Frame, Role, SignalKind
from streamer.scenario import Episode, Scenario, ground_truth
from streamer.synth import DyadSignals, synthesize

CHUNK_S = 0.1


def run_pipeline(signals: DyadSignals, scenario: Scenario) -> dict[Derived, list[SyncUpdate]]:
    rates = {
        **{(role, SignalKind.ECG): scenario.ecg_rate_hz for role in Role},
        **{(role, SignalKind.EDA): scenario.eda_rate_hz for role in Role},
    }
    pipeline = DyadPipeline(stream_rates_hz=rates)
    streams = {(role, SignalKind.ECG): (signals.ecg_t_s, signals.ecg_mv[role]) for role in Role} | {
        (role, SignalKind.EDA): (signals.eda_t_s, signals.eda_us[role]) for role in Role
    }
    updates: dict[Derived, list[SyncUpdate]] = {Derived.HR: [], Derived.PHASIC: []}
    edges_s = np.arange(int(scenario.duration_s / CHUNK_S) + 2) * CHUNK_S
    bounds = {key: np.searchsorted(t, edges_s) for key, (t, _) in streams.items()}
    for chunk in range(edges_s.size - 1):
        for (role, signal), (t, x) in streams.items():
            lo, hi = bounds[(role, signal)][chunk : chunk + 2]
            frame = Frame(role=role, signal=signal, timestamps_s=t[lo:hi], values=x[lo:hi])
            out = pipeline.push(frame)
            for derived, update in out.sync:
                updates[derived].append(update)
    return updates


@pytest.mark.parametrize("seed", [11, 12, 13])
def test_synchrony_is_clearly_higher_in_the_coupled_episode(seed: int) -> None:
    scenario = Scenario(
        duration_s=420.0,
        seed=seed,
        episodes=(
            Episode(start_s=140.0, end_s=280.0, coupling=0.95, leader=Role.THERAPIST, lag_s=1.0),
        ),
    )
    updates = run_pipeline(synthesize(scenario), scenario)
    for derived in (Derived.HR, Derived.PHASIC):
        stream = updates[derived]
        assert stream, f"no {derived} updates"
        t = np.array([u.window_center_s for u in stream])
        states, _ = ground_truth(scenario, t)
        # Score only windows lying wholly inside one scripted stretch (30 s window + 5 s lag).
        half_span = 20.0
        inside_truth = np.array(
            [
                (ground_truth(scenario, np.array([c - half_span, c + half_span]))[0] == s).all()
                for c, s in zip(t, states, strict=True)
            ]
        )
        strength = np.array([u.surrogate_z for u in stream])
        has = np.isfinite(strength) & inside_truth
        coupled = strength[has & (states == "coupled")]
        decoupled = strength[has & (states == "decoupled")]
        assert coupled.size > 30 and decoupled.size > 30, (coupled.size, decoupled.size)
        # "Clearly higher": the typical coupled update exceeds 90 % of decoupled updates.
        assert np.median(coupled) > np.quantile(decoupled, 0.9), (
            derived,
            np.median(coupled),
            np.quantile(decoupled, 0.9),
        )
        coupled_state = np.array([u.state == "coupled" for u in stream])
        assert coupled_state[has & (states == "decoupled")].mean() < 0.2
        if derived is Derived.HR:
            # Heart rate couples strongly in the simulator; the episode detector must see it
            # (episode scoring proper is in test_synchrony_scenarios.py).
            assert coupled_state[has & (states == "coupled")].mean() > 0.6


def test_session_start_reads_warming_up_not_bad_signal() -> None:
    """Sensors settle at different moments; that is warming up, not a signal problem."""
    scenario = Scenario(duration_s=60.0, seed=5)
    updates = run_pipeline(synthesize(scenario), scenario)
    for derived, stream in updates.items():
        first_estimate = next(i for i, u in enumerate(stream) if u.estimate_valid)
        reasons = {u.reason for u in stream[:first_estimate]}
        assert reasons == {"warming up"}, (derived, reasons)

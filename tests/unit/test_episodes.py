"""Episode state machine: hysteresis, minimum duration, back-dated onsets, summary."""

from __future__ import annotations

import json
import math

import pytest

from dsp.episodes import (
    EpisodeConfig,
    EpisodeEvent,
    EpisodeKind,
    EpisodeState,
    EpisodeTracker,
)
from dsp.exceptions import ConfigError

COUPLED, ANTI = EpisodeState.COUPLED, EpisodeState.ANTI_PHASE
CONFIG = EpisodeConfig(z_enter=2.5, z_exit=1.0, alpha=0.05, min_duration_s=5.0)
HALF_WINDOW_S = 10.0  # window centers lag update times by this much in these tests


def feed(
    tracker: EpisodeTracker,
    z_in: list[float],
    z_anti: list[float] | None = None,
    *,
    t0: int = 0,
    p: float = 0.01,
    leader: str = "therapist",
) -> list[EpisodeEvent]:
    events: list[EpisodeEvent] = []
    z_anti = z_anti if z_anti is not None else [0.0] * len(z_in)
    for i, (zi, za) in enumerate(zip(z_in, z_anti, strict=True)):
        t = float(t0 + i)
        events.extend(
            tracker.update(
                t_s=t,
                center_s=t - HALF_WINDOW_S,
                z={COUPLED: zi, ANTI: za},
                p={COUPLED: p, ANTI: p},
                leader=leader,
            )
        )
    return events


def test_entry_needs_min_duration_and_onset_is_backdated_to_the_rise() -> None:
    tracker = EpisodeTracker(CONFIG, step_s=1.0)
    z = [0.0, 0.0, 1.2, 1.8, 2.6, 2.7, 2.8, 2.9, 3.0, 3.0]
    events = feed(tracker, z)
    assert len(events) == 1
    start = events[0]
    assert (start.kind, start.state, start.leader) == (EpisodeKind.START, COUPLED, "therapist")
    assert start.t_s == 8.0  # candidates at t = 4..8 span 5 s
    assert start.onset_s == 2.0 - HALF_WINDOW_S  # z first >= z_exit at t = 2
    assert tracker.state is COUPLED


def test_short_excursions_are_not_episodes() -> None:
    tracker = EpisodeTracker(CONFIG, step_s=1.0)
    assert feed(tracker, [3.0] * 4 + [0.0] + [3.0] * 4 + [0.0]) == []
    assert tracker.state is EpisodeState.DECOUPLED


def test_not_significant_by_p_means_no_entry() -> None:
    tracker = EpisodeTracker(CONFIG, step_s=1.0)
    assert feed(tracker, [3.0] * 20, p=0.2) == []


def test_hysteresis_keeps_the_episode_between_thresholds_and_exit_needs_min_duration() -> None:
    tracker = EpisodeTracker(CONFIG, step_s=1.0)
    z = [3.0] * 6 + [1.5] * 20 + [0.5] * 3 + [1.2] + [0.5] * 5
    events = feed(tracker, z)
    assert [e.kind for e in events] == [EpisodeKind.START, EpisodeKind.END]
    end = events[1]
    assert end.t_s == 34.0  # below z_exit from t = 30 for 5 s (the dip at 26..28 was short)
    assert end.onset_s == 30.0 - HALF_WINDOW_S
    assert end.leader == "therapist"
    assert tracker.state is EpisodeState.DECOUPLED


def test_anti_phase_episode_and_the_stronger_state_wins() -> None:
    tracker = EpisodeTracker(CONFIG, step_s=1.0)
    events = feed(tracker, [2.6] * 8, [3.5] * 8, leader="client")
    assert [(e.kind, e.state, e.leader) for e in events] == [(EpisodeKind.START, ANTI, "client")]


def test_interrupt_ends_the_episode_with_the_reason() -> None:
    tracker = EpisodeTracker(CONFIG, step_s=1.0)
    feed(tracker, [3.0] * 6)
    events = tracker.interrupt(t_s=6.0, center_s=-4.0, reason="gap")
    assert [(e.kind, e.reason) for e in events] == [(EpisodeKind.END, "gap")]
    assert tracker.state is EpisodeState.NONE
    # Candidates before the gap do not count after it.
    assert feed(tracker, [3.0] * 4, t0=7) == []


def test_new_onset_never_precedes_the_previous_end() -> None:
    tracker = EpisodeTracker(CONFIG, step_s=1.0)
    z_in = [3.0] * 10 + [0.0] * 12
    z_anti = [0.0] * 10 + [1.5] * 3 + [3.0] * 9
    events = feed(tracker, z_in, z_anti)
    assert [(e.kind, e.state) for e in events] == [
        (EpisodeKind.START, COUPLED),
        (EpisodeKind.END, COUPLED),
        (EpisodeKind.START, ANTI),
    ]
    assert events[2].onset_s >= events[1].onset_s


def test_summary_counts_times_and_leaders() -> None:
    tracker = EpisodeTracker(CONFIG, step_s=1.0)
    feed(tracker, [3.0] * 10 + [0.0] * 10, leader="therapist")  # episode 1: onset 0, end 10
    feed(tracker, [3.0] * 10 + [0.0] * 10, t0=20, leader="client")  # episode 2
    feed(tracker, [3.0] * 10, t0=40, leader="")  # episode 3, still running
    tracker.interrupt(t_s=50.0, center_s=40.0, reason="bad signal")
    summary = tracker.summary(susy_effect_size=0.5, ssi=math.nan)
    assert (summary.entries, summary.exits) == (3, 3)
    assert summary.therapist_led_fraction == pytest.approx(1 / 3)
    assert summary.client_led_fraction == pytest.approx(1 / 3)
    assert summary.mean_episode_s == pytest.approx((10 + 10 + 10) / 3)
    times = summary.time_in_state_s
    assert times["no_estimate"] == 1.0
    assert sum(times.values()) == 51.0
    # Each episode is decided at its 5th candidate (t = 4, 24, 44) and, for the first two,
    # ended at the 5th update below z_exit (t = 14, 34): 6 + 4 s each, 6 s for the third.
    assert times["coupled"] == 26.0
    as_json = json.loads(json.dumps(summary.to_dict(), allow_nan=False))
    assert as_json["ssi"] is None
    assert as_json["susy_effect_size"] == 0.5


@pytest.mark.parametrize(
    ("kwargs", "key"),
    [
        ({"z_enter": 1.0, "z_exit": 2.0}, "z_exit"),
        ({"alpha": 0.0}, "alpha"),
        ({"min_duration_s": -1.0}, "min_duration_s"),
        ({"z_enter": math.nan}, "z_enter"),
    ],
)
def test_config_errors(kwargs: dict[str, float], key: str) -> None:
    with pytest.raises(ConfigError, match=key):
        EpisodeConfig(**kwargs)

"""The session summary's per-signal figures from hand-made sync updates and episodes: every
share of time is a count of updates, reasons are accounted, missing numbers are None."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest

from analysis.summary import CONCORDANCE_CHANCE, signal_summary, summary_lines
from dsp.episodes import CoregulationSummary
from server.protocol import jsonable

STARTED_T = 100.0


def _sync(t: float, *, state: str | None, reason: str | None = None, **numbers: Any) -> dict:
    estimate = reason in (None, "null warming up")
    fields = {"r": 0.5, "z": 0.6, "z_lag0": 0.55, "null_z": 2.0, "concordance": 1.0,
              "best_lag_s": 1.0, "leader": None, **numbers}  # fmt: skip
    if not estimate:
        fields = dict.fromkeys(fields)
    return {"type": "sync", "t": t, "signal": "hr", "estimate": estimate, "reason": reason,
            "state": state, **fields}  # fmt: skip


def _updates() -> list[dict]:
    return [
        _sync(101.0, state=None, reason="warming up"),
        _sync(102.0, state=None, reason="warming up"),
        _sync(103.0, state=None, reason="gap"),
        _sync(104.0, state=None, reason="null warming up", r=0.1, z_lag0=0.1),
        _sync(105.0, state="decoupled", r=0.2, z_lag0=0.2, concordance=-1.0),
        _sync(106.0, state="coupled", r=0.8, z_lag0=1.1, leader="therapist"),
        _sync(107.0, state="coupled", r=0.9, z_lag0=1.5, leader="therapist"),
        _sync(108.0, state="anti_phase", r=-0.6, z_lag0=-0.7, leader="client"),
    ]


def _coregulation() -> CoregulationSummary:
    return CoregulationSummary(
        entries=2, exits=1, mean_episode_s=2.0, therapist_led_fraction=0.5,
        client_led_fraction=0.5, susy_effect_size=1.25, ssi=0.75,
    )  # fmt: skip


def _summary() -> dict[str, Any]:
    episodes: list[dict[str, Any]] = [
        {"signal": "hr", "event": "start", "state": "coupled", "leader": "therapist",
         "onset_s": 105.5, "t": 106.0},
        {"signal": "hr", "event": "end", "state": "coupled", "leader": None, "onset_s": 107.5,
         "t": 108.0},
        {"signal": "hr", "event": "start", "state": "anti_phase", "leader": "client",
         "onset_s": 107.5, "t": 108.0},
    ]  # fmt: skip
    return jsonable(
        signal_summary(_updates(), episodes, _coregulation(), step_s=1.0, started_t=STARTED_T)
    )


def test_time_in_state_counts_updates_of_the_session_and_of_the_tested_time() -> None:
    figures = _summary()
    assert figures["updates"] == 8
    assert figures["time_in_state"]["coupled"] == {
        "seconds": 2.0, "percent_of_session": 25.0, "percent_of_tested": 50.0,
    }  # fmt: skip
    assert figures["time_in_state"]["anti_phase"]["percent_of_tested"] == 25.0
    assert figures["data_quality"]["percent_with_estimate"] == 62.5
    assert figures["data_quality"]["percent_tested"] == 50.0
    assert figures["data_quality"]["no_estimate_s"] == {"warming up": 2.0, "gap": 1.0}
    assert figures["data_quality"]["untested_s"] == {"null warming up": 1.0}


def test_means_are_over_the_estimates_only() -> None:
    synchrony = _summary()["synchrony"]
    assert synchrony["estimates"] == 5
    assert synchrony["mean_r"] == pytest.approx((0.1 + 0.2 + 0.8 + 0.9 - 0.6) / 5)
    assert synchrony["mean_fisher_z"] == pytest.approx((0.1 + 0.2 + 1.1 + 1.5 - 0.7) / 5)


def test_leader_ratio_concordance_and_the_engine_figures() -> None:
    figures = _summary()
    assert figures["leader"] == {
        "therapist_updates": 2, "client_updates": 1, "no_clear_leader_updates": 2,
        "therapist_ratio": pytest.approx(2 / 3),
    }  # fmt: skip
    concordance = figures["concordance"]
    assert concordance["chance_level"] == CONCORDANCE_CHANCE == 0.0
    assert concordance["percent_above_chance"] == 80.0  # 4 of 5 indices above 0
    assert concordance["ssi"] == 0.75 and figures["effect_size"]["susy"] == 1.25
    entries = figures["coregulation"]["entries_led"]
    assert entries == [
        {"onset_s": 5.5, "state": "coupled", "leader": "therapist"},
        {"onset_s": 7.5, "state": "anti_phase", "leader": "client"},
    ]
    assert figures["coregulation"]["entries"] == 2 and figures["coregulation"]["exits"] == 1


def test_a_signal_without_estimates_has_none_not_nan() -> None:
    updates = [_sync(101.0, state=None, reason="warming up")]
    figures = jsonable(
        signal_summary(updates, [], CoregulationSummary(entries=0, exits=0), step_s=1.0,
                       started_t=STARTED_T)
    )  # fmt: skip
    json.dumps(figures, allow_nan=False)  # strict JSON: no NaN anywhere
    assert figures["synchrony"]["mean_r"] is None
    assert figures["leader"]["therapist_ratio"] is None
    assert figures["time_in_state"]["coupled"]["percent_of_tested"] is None
    assert figures["effect_size"]["susy"] is None and not math.isnan(figures["updates"])


def test_the_summary_in_words_names_each_signal_and_its_figures() -> None:
    summary = {
        "session": {"room": "room-1", "duration_s": 600.0,
                    "settings": {"window_s": 30.0, "lag_s": 5.0, "step_s": 1.0,
                                 "surrogates": {"n_surrogates": 99}}},
        "signals": {"hr": _summary()},
    }  # fmt: skip
    lines = summary_lines(summary)
    assert lines[0].startswith("Session 'room-1', 10.0 min; window 30 s")
    assert lines[1].startswith("Heart rate: estimate 62 % of the time (none: warming up 2 s")
    assert "Coupled above chance 25 % of the session (50 % of the tested time)" in lines[1]
    assert "entries led by: therapist 1, client 1." in lines[1]

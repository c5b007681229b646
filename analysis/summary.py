"""A JSON session summary of one analysed recording (the numbers researchers report).

:func:`session_summary` condenses a :class:`~analysis.session.SessionAnalysis` into plain
JSON values: per synchronised signal the mean synchrony, the share of time coupled above
chance, SUSY's session effect size, Marci's concordance against its chance level, who led,
the coregulation counts and the data quality; plus session metadata that identifies no
person (room, duration, settings, file name and checksum — never a folder or a name).

Every share of time is counted in synchrony updates, one per ``step_s`` (the engine's own
accounting, :class:`~dsp.episodes.CoregulationSummary`), so each figure can be recomputed
from the ``sync`` table the analysis writes: e.g. ``percent_of_session`` of ``coupled`` is
``100 * (rows with state "coupled") / rows``. Times are session seconds (since the
session start, the dashboard's time axis) unless a name ends in ``_t`` (LSL clock).
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from analysis.session import SessionAnalysis
from dsp.episodes import CoregulationSummary
from server.protocol import Message, jsonable

__all__ = [
    "CONCORDANCE_CHANCE",
    "SUMMARY_SCHEMA",
    "file_sha256",
    "session_summary",
    "summary_lines",
]

SUMMARY_SCHEMA = "dyadsync.session_summary/1"

# Marci's CI is ln(sum r+ / |sum r-|): with no concordance beyond chance the slope
# correlations are as often negative as positive, the ratio is 1 and the index 0.
CONCORDANCE_CHANCE = 0.0

# The sync ``state`` values, and the key of updates without one (no estimate or no
# significance yet), as in CoregulationSummary.time_in_state_s.
STATES = ("coupled", "anti_phase", "decoupled")
UNTESTED = "no_estimate"

_CHUNK_BYTES = 1 << 20


def file_sha256(path: Path) -> str:
    """Hex SHA-256 of a file, read in chunks (recordings can be large)."""
    digest = hashlib.sha256()
    with path.open("rb") as file:
        while chunk := file.read(_CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


def session_summary(analysis: SessionAnalysis) -> dict[str, Any]:
    """The session's summary as JSON values (``None`` where a number does not exist).

    Keys: ``schema``, ``session`` (metadata and settings), ``streams`` (samples received,
    lost, duplicated per raw stream) and ``signals`` (one entry per synchronised signal,
    see :func:`signal_summary`). Documented field by field in docs/analysis.md.
    """
    hello = analysis.hello
    started_t = analysis.started_t
    synchrony = analysis.pipeline.synchrony
    summary = {
        "schema": SUMMARY_SCHEMA,
        "session": {
            "room": analysis.session.room,
            "file": analysis.source.name,
            "file_sha256": file_sha256(analysis.source),
            "duration_s": analysis.duration_s,
            "started_t": started_t,
            "dyadsync": hello.get("server"),
            "signals": list(hello["signals"]),
            "settings": {
                "grid_hz": analysis.pipeline.grid_hz,
                **dataclasses.asdict(synchrony),
            },
        },
        "streams": analysis.run.streams,
        "signals": {
            signal.value: signal_summary(
                analysis.sync(signal),
                [e for e in analysis.episodes() if e["signal"] == signal.value],
                analysis.coregulation[signal],
                step_s=synchrony.step_s,
                started_t=started_t,
            )
            for signal in analysis.pipeline.sync_signals
        },
    }
    return jsonable(summary)


def signal_summary(
    updates: Sequence[Message],
    episodes: Sequence[Message],
    coregulation: CoregulationSummary,
    *,
    step_s: float,
    started_t: float,
) -> dict[str, Any]:
    """One signal's summary from its ``sync`` updates, ``episode`` events and the
    engine's coregulation summary."""
    n_updates = len(updates)
    estimates = [m for m in updates if m["estimate"]]
    states = Counter(m["state"] or UNTESTED for m in updates)
    tested = sum(states[s] for s in STATES)
    leaders = Counter(m["leader"] or "none" for m in estimates)
    led = leaders["therapist"] + leaders["client"]
    concordance = _numbers(estimates, "concordance")
    starts = [e for e in episodes if e["event"] == "start"]
    return {
        "updates": n_updates,
        "step_s": step_s,
        "synchrony": {
            "estimates": len(estimates),
            "mean_r": _mean(_numbers(estimates, "r")),
            "mean_fisher_z": _mean(_numbers(estimates, "z_lag0")),
            "mean_best_lag_fisher_z": _mean(_numbers(estimates, "z")),
            "mean_null_z": _mean(_numbers(estimates, "null_z")),
            "mean_abs_best_lag_s": _mean(np.abs(_numbers(estimates, "best_lag_s"))),
        },
        "time_in_state": {
            state: {
                "seconds": states[state] * step_s,
                "percent_of_session": _percent(states[state], n_updates),
                "percent_of_tested": _percent(states[state], tested),
            }
            for state in STATES
        },
        "effect_size": {"susy": coregulation.susy_effect_size},
        "concordance": {
            "ssi": coregulation.ssi,
            "mean_ci": _mean(concordance),
            "chance_level": CONCORDANCE_CHANCE,
            "percent_above_chance": _percent(
                int(np.sum(concordance > CONCORDANCE_CHANCE)), concordance.size
            ),
        },
        "leader": {
            "therapist_updates": leaders["therapist"],
            "client_updates": leaders["client"],
            "no_clear_leader_updates": leaders["none"],
            "therapist_ratio": leaders["therapist"] / led if led else math.nan,
        },
        "coregulation": {
            "entries": coregulation.entries,
            "exits": coregulation.exits,
            "mean_episode_s": coregulation.mean_episode_s,
            "therapist_led_fraction": coregulation.therapist_led_fraction,
            "client_led_fraction": coregulation.client_led_fraction,
            "entries_led": [
                {
                    "onset_s": _session_s(e["onset_s"], started_t),
                    "state": e["state"],
                    "leader": e["leader"],
                }
                for e in starts
            ],
        },
        "data_quality": {
            "percent_with_estimate": _percent(len(estimates), n_updates),
            "percent_tested": _percent(tested, n_updates),
            "no_estimate_s": _reasons_s([m for m in updates if not m["estimate"]], step_s),
            "untested_s": _reasons_s(
                [m for m in estimates if m["state"] is None], step_s
            ),  # an estimate, but the surrogate null was not ready
        },
    }


def _numbers(messages: Sequence[Message], key: str) -> np.ndarray:
    """``key`` of each message as floats, the ``None`` ones left out."""
    return np.array([m[key] for m in messages if m[key] is not None], dtype=float)


def _mean(values: np.ndarray) -> float:
    return float(values.mean()) if values.size else math.nan


def _percent(count: int, total: int) -> float:
    return 100.0 * count / total if total else math.nan


def _session_s(t: float | None, started_t: float) -> float:
    return math.nan if t is None else float(t) - started_t


def _reasons_s(messages: Sequence[Message], step_s: float) -> dict[str, float]:
    """Seconds per ``reason`` (one step per update), most frequent first."""
    counts = Counter(m["reason"] or "unspecified" for m in messages)
    return {reason: n * step_s for reason, n in counts.most_common()}


def summary_lines(summary: dict[str, Any]) -> list[str]:
    """The summary in words, one line per fact (printed by ``analyze``, shown in the
    report); signal names and wording as on the dashboard."""
    from dashboard.views import SIGNAL_TITLES

    session = summary["session"]
    settings = session["settings"]
    lines = [
        f"Session {session['room']!r}, {_minutes(session['duration_s'])}; window "
        f"{settings['window_s']:g} s, lag ±{settings['lag_s']:g} s, step {settings['step_s']:g} s, "
        f"{settings['surrogates']['n_surrogates']} surrogates.",
    ]
    for signal, figures in summary["signals"].items():
        lines.append(f"{SIGNAL_TITLES.get(signal, signal)}: {_signal_words(figures)}")
    return lines


def _signal_words(figures: dict[str, Any]) -> str:
    quality = figures["data_quality"]
    coupled = figures["time_in_state"]["coupled"]
    anti_phase = figures["time_in_state"]["anti_phase"]
    synchrony = figures["synchrony"]
    coregulation = figures["coregulation"]
    missing = ", ".join(f"{why} {s:g} s" for why, s in quality["no_estimate_s"].items())
    leaders = Counter(e["leader"] or "no clear leader" for e in coregulation["entries_led"])
    led = ", ".join(f"{who} {n}" for who, n in leaders.most_common())
    return " ".join(
        [
            f"estimate {_pct(quality['percent_with_estimate'])} of the time"
            + (f" (none: {missing});" if missing else ";"),
            f"tested against chance {_pct(quality['percent_tested'])}.",
            f"Coupled above chance {_pct(coupled['percent_of_session'])} of the session",
            f"({_pct(coupled['percent_of_tested'])} of the tested time),",
            f"anti-phase {_pct(anti_phase['percent_of_session'])}.",
            f"Mean r {_num(synchrony['mean_r'])} (Fisher z {_num(synchrony['mean_fisher_z'])});",
            f"SUSY effect size {_num(figures['effect_size']['susy'])};",
            f"concordance SSI {_num(figures['concordance']['ssi'])} (chance 0).",
            f"{coregulation['entries']} episode entries, {coregulation['exits']} exits,",
            f"mean episode {_seconds(coregulation['mean_episode_s'])}"
            + (f"; entries led by: {led}." if led else "."),
        ]
    )


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:.1f} min"


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.0f} %"


def _num(value: float | None) -> str:
    return "n/a" if value is None else f"{value:+.2f}"


def _seconds(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.0f} s"

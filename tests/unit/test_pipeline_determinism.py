"""Issue 8: DyadPipeline outputs do not depend on frame lengths or on how the people's frames
interleave, so a replay at full speed (large frames, flush at the end) reproduces the live run.

The canonical feed is the live one (0.1 s frames in time order, ``advance`` every step); every
other feed cuts each stream into random frames (1 sample to two minutes), interleaves the four
streams at random (each stream keeps its own order) and only flushes at the end. The client's
sensors drop out and come back as a new segment, so the gap and reconnect paths are compared
too.
"""

from __future__ import annotations

import functools
import math
from typing import Any

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from dsp.episodes import EpisodeConfig
from dsp.pipeline import DyadPipeline, PipelineConfig, PipelineOutput
from dsp.significance import SurrogateConfig
from dsp.synchrony import SynchronyConfig
from dsp.types import Frame, Role
from streamer.scenario import Episode, Scenario
from streamer.synth import synthesize
from tests.unit.test_pipeline_scenario import (
    Piece,
    StreamKey,
    dyad_streams,
    feed_in_time_order,
    frame_of,
    stream_rates,
)

SCENARIO = Scenario(
    duration_s=150.0,
    seed=21,
    episodes=(Episode(start_s=30.0, end_s=65.0, coupling=0.95, leader=Role.THERAPIST, lag_s=1.0),),
)
CLIENT_AWAY_S = (70.0, 82.0)
# Small windows so estimates, surrogates and episodes all occur within 150 s.
CONFIG = PipelineConfig(
    synchrony=SynchronyConfig(
        window_s=10.0,
        lag_s=2.0,
        surrogates=SurrogateConfig(n_surrogates=19, min_shift_s=6.0, history_s=40.0),
        # Low thresholds: the point is to have episode events to compare, not to judge them.
        episodes=EpisodeConfig(z_enter=1.5, z_exit=0.5, min_duration_s=2.0),
    )
)
TOLERANCE = 1e-12


@functools.cache
def streams() -> dict[StreamKey, list[Piece]]:
    return dyad_streams(synthesize(SCENARIO), client_away_s=CLIENT_AWAY_S)


def new_pipeline() -> DyadPipeline:
    return DyadPipeline(stream_rates_hz=stream_rates(SCENARIO), config=CONFIG)


def collect(outputs: list[PipelineOutput]) -> dict[str, Any]:
    """Every output, grouped per signal (and person) in emission order."""
    sync: dict[str, list[dict[str, Any]]] = {}
    episodes: dict[str, list[dict[str, Any]]] = {}
    physio: dict[str, list[np.ndarray]] = {}
    for out in outputs:
        for derived, update in out.sync:
            sync.setdefault(derived.value, []).append(update.to_dict())
        for derived, event in out.episodes:
            episodes.setdefault(derived.value, []).append(event.to_dict())
        for role, derived, samples in out.physio:
            rows = np.stack([samples.t_s, samples.values, samples.valid.astype(np.float64)])
            physio.setdefault(f"{role.value}-{derived.value}", []).append(rows)
    return {
        "sync": sync,
        "episodes": episodes,
        "physio": {key: np.concatenate(parts, axis=1) for key, parts in physio.items()},
    }


@functools.cache
def canonical() -> dict[str, Any]:
    pipeline = new_pipeline()
    result = collect(
        feed_in_time_order(pipeline, streams(), duration_s=SCENARIO.duration_s, live=True)
    )
    assert pipeline.summary()  # the session summary exists for both signals
    return result


def assert_same_value(got: object, want: object, where: str) -> None:
    if isinstance(want, float) and isinstance(got, float):
        same = (math.isnan(got) and math.isnan(want)) or abs(got - want) <= TOLERANCE * max(
            1.0, abs(want)
        )
        assert same, (where, got, want)
    else:
        assert got == want, (where, got, want)


def assert_same_outputs(got: dict[str, Any], want: dict[str, Any]) -> None:
    for part in ("sync", "episodes"):
        assert got[part].keys() == want[part].keys(), part
        for signal, rows in want[part].items():
            assert len(got[part][signal]) == len(rows), (part, signal)
            for index, (got_row, want_row) in enumerate(zip(got[part][signal], rows, strict=True)):
                assert got_row.keys() == want_row.keys()
                for name, value in want_row.items():
                    assert_same_value(got_row[name], value, f"{part} {signal} #{index} {name}")
    assert got["physio"].keys() == want["physio"].keys()
    for key, rows in want["physio"].items():
        np.testing.assert_array_equal(got["physio"][key], rows, err_msg=key)


def feed_frames(
    pipeline: DyadPipeline, frame_lengths_s: list[float], order: list[int]
) -> list[PipelineOutput]:
    """Cut each stream into frames of the given lengths (cycled, a different starting point
    per stream; never across a segment), push the streams in the given order (cycled; an
    exhausted stream passes to the next one), then flush. No advance: a replay."""
    rates = stream_rates(SCENARIO)
    queues = []
    for index, (key, pieces) in enumerate(streams().items()):
        frames: list[Frame] = []
        lengths = frame_lengths_s[index % len(frame_lengths_s) :] + frame_lengths_s
        for piece in pieces:
            lo = 0
            while lo < piece.t_s.size:
                length_s = lengths[len(frames) % len(lengths)]
                hi = lo + max(1, round(length_s * rates[key]))
                frames.append(frame_of(key, piece, lo, hi))
                lo = hi
        queues.append(frames[::-1])  # popped from the end
    outputs = []
    turn = 0
    while any(queues):
        choice = order[turn % len(order)]
        turn += 1
        while not queues[choice]:
            choice = (choice + 1) % len(queues)
        outputs.append(pipeline.push(queues[choice].pop()))
    outputs.append(pipeline.flush())
    return outputs


def test_the_canonical_run_exercises_estimates_gaps_reconnects_and_episodes() -> None:
    """Guards the comparison against being vacuous."""
    want = canonical()
    for rows in want["sync"].values():
        reasons = {row["reason"] for row in rows}
        assert {"gap", "reconnected"} <= reasons, reasons
        assert sum(row["estimate_valid"] and row["reason"] == "" for row in rows) > 20
    assert sum(len(events) for events in want["episodes"].values()) > 0


def test_twelve_second_frames_reproduce_the_live_run() -> None:
    """The reported case: frames longer than max_wait_s (10 s) changed 221 of 290 updates."""
    got = collect(feed_frames(new_pipeline(), [12.0], [0, 1, 2, 3]))
    assert_same_outputs(got, canonical())


def test_one_stream_delivered_whole_before_the_others() -> None:
    # Longer than the session: each stream is one frame per segment; client ECG goes first.
    got = collect(feed_frames(new_pipeline(), [600.0], [2, 3, 0, 1]))
    assert_same_outputs(got, canonical())


frame_length_s = st.one_of(
    st.floats(0.001, 0.02),  # one to a few samples (ECG at 256 Hz, EDA at 32 Hz)
    st.floats(0.02, 5.0),
    st.floats(5.0, 120.0),
)


@settings(max_examples=8, deadline=None)
@given(
    frame_lengths_s=st.lists(frame_length_s, min_size=1, max_size=10),
    order=st.lists(st.integers(0, 3), min_size=1, max_size=30),
)
def test_any_frame_lengths_and_interleaving_reproduce_the_live_run(
    frame_lengths_s: list[float], order: list[int]
) -> None:
    got = collect(feed_frames(new_pipeline(), frame_lengths_s, order))
    assert_same_outputs(got, canonical())

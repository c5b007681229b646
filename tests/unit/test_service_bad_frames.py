"""A frame the DSP rejects (time running backwards, untimed samples) costs that frame
only: the service reports it as a ``bad_samples`` status of that stream and goes on, so
the session and the other streams never end because of one bad frame."""

from __future__ import annotations

import itertools

import numpy as np

from dsp.pipeline import DyadPipeline
from dsp.types import Frame, Role, SignalKind, StatusEvent
from server.hub import Hub
from server.protocol import MessageFactory
from server.service import SessionService
from streamer.scenario import Scenario
from streamer.synth import synthesize
from tests.unit.test_pipeline_scenario import CHUNK_S, dyad_streams, frame_of, stream_rates

SCENARIO = Scenario(duration_s=60.0, seed=5)
BAD_AT_S = 20.0


class _ListSource:
    """One stream's frames, one per poll (what an inlet hands over)."""

    def __init__(self, role: Role, signal: SignalKind, rate_hz: float, frames: list[Frame]):
        self.role, self.signal, self.rate_hz = role, signal, rate_hz
        self._frames = iter(frames)

    def poll(self) -> tuple[list[Frame], list[StatusEvent]]:
        frame = next(self._frames, None)
        return ([] if frame is None else [frame]), []

    def close(self) -> None:
        pass


def _frames(key: tuple[Role, SignalKind], rate_hz: float, pieces) -> list[Frame]:
    (piece,) = pieces
    step = round(CHUNK_S * rate_hz)
    frames = [frame_of(key, piece, lo, lo + step) for lo in range(0, piece.t_s.shape[0], step)]
    if key == (Role.THERAPIST, SignalKind.ECG):
        at = next(i for i, f in enumerate(frames) if f.timestamps_s[0] >= BAD_AT_S)
        previous = frames[at - 1]
        # Starts 10 ms before the previous frame ends; then one whose times are NaN.
        back = Frame(
            role=previous.role,
            signal=previous.signal,
            timestamps_s=previous.timestamps_s[-1] - 0.010 + np.arange(step) / rate_hz,
            values=previous.values.copy(),
            segment=previous.segment,
        )
        untimed = Frame(
            role=previous.role,
            signal=previous.signal,
            timestamps_s=np.full(step, np.nan),
            values=previous.values.copy(),
            segment=previous.segment,
        )
        frames[at:at] = [back, untimed]
    return frames


def test_rejected_frames_become_status_events_and_the_session_goes_on() -> None:
    signals = synthesize(SCENARIO)
    rates = stream_rates(SCENARIO)
    sources = [
        _ListSource(*key, rates[key], _frames(key, rates[key], pieces))
        for key, pieces in dyad_streams(signals).items()
    ]
    clock = itertools.count(0.0, CHUNK_S)
    now = [0.0]
    hub = Hub(backlog_s=1e9)
    service = SessionService(
        sources=sources,
        pipeline=DyadPipeline(stream_rates_hz=rates),
        hub=hub,
        messages=MessageFactory(session="bad-frames", clock=lambda: now[0]),
        mode="replay",
    )
    for _ in range(round(SCENARIO.duration_s / CHUNK_S) + 10):
        now[0] = next(clock)
        service.step()
    messages = [published.message for published in hub.backlog()]
    dropped = [m for m in messages if m["type"] == "status" and m["kind"] == "bad_samples"]
    assert [(m["role"], m["signal"]) for m in dropped] == [("therapist", "ecg")] * 2
    assert all("samples dropped" in m["detail"] for m in dropped)
    # The bad frames' stream went on: heart-rate estimates well after them.
    late_hr = [
        m
        for m in messages
        if m["type"] == "sync" and m["signal"] == "hr" and m["t"] > BAD_AT_S + 20
    ]
    assert late_hr and any(m["estimate"] for m in late_hr)

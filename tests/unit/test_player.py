"""The XDF player: scheduling on an injected clock (absolute targets, catch-up, N x, max
speed), segments restored from the recording, and clear errors when a session's sensors
do not map onto a file's streams. Recordings are real XDF files written with XdfWriter."""

from __future__ import annotations

import itertools
import json
import math
from pathlib import Path

import numpy as np
import pytest

from dsp.exceptions import ConfigError
from dsp.types import Frame, Role, SignalKind, StatusKind
from streamer.devices import builtin_device_configs
from streamer.errors import RecordingError
from streamer.player import Replay, open_replay
from streamer.session import parse_session
from streamer.xdf_writer import XdfWriter
from tests.recordings import add_raw_stream

T0 = 5000.0  # recording start on the session clock (any value: replay shifts nothing)


class FakeClock:
    """A wall clock the test moves by hand."""

    def __init__(self, start: float = 100.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now


def _raw_stream(
    writer: XdfWriter,
    *,
    role: Role,
    signal: SignalKind,
    rate_hz: float,
    stamps: np.ndarray,
    device: str = "dyadsync_simulator",
) -> int:
    """A raw stream as our recorder writes it, with a slow ramp and its sample counter."""
    stream_id = add_raw_stream(
        writer, role=role, signal=signal, rate_hz=rate_hz, source_prefix="src", device=device
    )
    k = np.arange(stamps.shape[0], dtype=np.float64)
    writer.push(stream_id, stamps, np.column_stack([0.5 + 0.001 * k, k]))
    return stream_id


def _events(writer: XdfWriter, events: list[tuple[float, dict[str, object]]]) -> None:
    stream_id = writer.add_stream(
        name="dyadsync-events",
        type="Markers",
        channel_count=1,
        nominal_srate=0.0,
        channel_format="string",
        dyadsync={"kind": "events"},
    )
    if events:
        writer.push(stream_id, [t for t, _ in events], [[json.dumps(e)] for _, e in events])


def _regular(rate_hz: float, seconds: float, start: float = T0) -> np.ndarray:
    return start + np.arange(round(rate_hz * seconds)) / rate_hz


def _our_recording(
    path: Path,
    *,
    rates: dict[tuple[Role, SignalKind], float],
    seconds: float,
    events: list[tuple[float, dict[str, object]]] | None = None,
) -> Path:
    with XdfWriter.open(path) as writer:
        for (role, signal), rate in rates.items():
            _raw_stream(
                writer, role=role, signal=signal, rate_hz=rate, stamps=_regular(rate, seconds)
            )
        _events(writer, events or [])
    return path


ECG_PAIR = {(Role.THERAPIST, SignalKind.ECG): 100.0, (Role.CLIENT, SignalKind.ECG): 100.0}
DYAD = {
    (Role.THERAPIST, SignalKind.ECG): 256.0,
    (Role.CLIENT, SignalKind.ECG): 256.0,
    (Role.THERAPIST, SignalKind.EDA): 32.0,
    (Role.CLIENT, SignalKind.EDA): 32.0,
}


def _counters(frames: list[Frame]) -> np.ndarray:
    parts = [f.counters for f in frames if f.counters is not None]
    return np.concatenate(parts) if parts else np.empty(0, dtype=np.int64)


def _drain(replay: Replay, polls: int = 100_000) -> dict[tuple[Role, SignalKind], list[Frame]]:
    out: dict[tuple[Role, SignalKind], list[Frame]] = {
        (s.role, s.signal): [] for s in replay.sources
    }
    for _ in range(polls):
        if replay.finished:
            return out
        for source in replay.sources:
            frames, _events = source.poll()
            out[(source.role, source.signal)].extend(frames)
    raise AssertionError("replay did not finish")


# -- scheduling --------------------------------------------------------------------------


def test_1x_releases_each_chunk_at_its_absolute_target(tmp_path) -> None:
    clock = FakeClock()
    replay = open_replay(
        _our_recording(tmp_path / "r.xdf", rates=ECG_PAIR, seconds=2.0), clock=clock
    )
    source = replay.sources[0]
    assert source.chunk_samples == 10  # 0.1 s at 100 Hz
    assert source.poll() == ([], [])  # first poll starts the clock at 100.0: nothing due yet
    clock.now = 100.0 + 0.089
    assert source.poll()[0] == []
    clock.now = 100.0 + 0.0901  # chunk 0's last sample (t0 + 0.09) is due
    frames, events = source.poll()
    assert [f.counters.tolist() for f in frames if f.counters is not None] == [list(range(10))]
    assert frames[0].timestamps_s[0] == T0  # recorded stamps, not shifted
    assert [e.kind for e in events] == [StatusKind.CONNECTED]
    clock.now = 100.0 + 0.1901
    frames, _ = source.poll()
    assert _counters(frames).tolist() == list(range(10, 20))
    assert _counters(replay.sources[1].poll()[0]).tolist() == list(range(20))  # caught up
    assert replay.next_due_s() == pytest.approx(100.0 + 0.29)


def test_late_wake_up_catches_up_at_once_and_does_not_drift(tmp_path) -> None:
    clock = FakeClock()
    replay = open_replay(
        _our_recording(tmp_path / "r.xdf", rates=ECG_PAIR, seconds=20.0), clock=clock
    )
    source = replay.sources[0]
    source.poll()
    clock.now += 5.0  # the consumer stalled for 5 s
    frames, _ = source.poll()
    # Everything due by then comes at once, as one frame: 5.0 s -> chunks ending <= t0 + 5.0
    assert _counters(frames).tolist() == list(range(500))
    # and the schedule after the stall is the original one: chunk 50 (ends at t0 + 5.09)
    clock.now = 100.0 + 5.0899
    assert source.poll()[0] == []
    clock.now = 100.0 + 5.0901
    assert _counters(source.poll()[0]).tolist() == list(range(500, 510))


def test_n_times_speed_scales_the_targets(tmp_path) -> None:
    clock = FakeClock()
    path = _our_recording(tmp_path / "r.xdf", rates=ECG_PAIR, seconds=20.0)
    replay = open_replay(path, speed=4.0, clock=clock)
    source = replay.sources[1]
    source.poll()
    clock.now += 1.0  # 1 s of wall time = 4 s of recording
    frames, _ = source.poll()
    assert _counters(frames).tolist() == list(range(400))
    assert _counters(replay.sources[0].poll()[0]).tolist() == list(range(400))
    assert replay.next_due_s() == pytest.approx(100.0 + 4.09 / 4.0)


def test_max_speed_interleaves_streams_with_bounded_work_per_poll(tmp_path) -> None:
    path = _our_recording(tmp_path / "r.xdf", rates=DYAD, seconds=30.0)
    replay = open_replay(path, speed=math.inf, clock=FakeClock(), max_speed_step_s=1.0)
    got: dict[tuple[Role, SignalKind], list[Frame]] = {
        (s.role, s.signal): [] for s in replay.sources
    }
    rounds = 0
    while not replay.finished:
        rounds += 1
        for source in replay.sources:
            frames, _ = source.poll()
            released = sum(f.timestamps_s.shape[0] for f in frames)
            # bounded: at most the step (+ one chunk) of data per poll
            assert released <= (1.0 + 0.1) * source.rate_hz + 1
            got[(source.role, source.signal)].extend(frames)
        # interleaved in time: after a round no stream is more than a step ahead of another
        lasts = [fs[-1].timestamps_s[-1] for fs in got.values() if fs]
        if len(lasts) == len(got) and not replay.finished:
            assert max(lasts) - min(lasts) <= 1.0 + 0.1
        assert rounds < 1000
    assert 25 <= rounds <= 35  # about one round per step of recording, no busy wait
    for (_role, _signal), frames in got.items():
        counters = _counters(frames)
        rate = DYAD[(_role, _signal)]
        assert counters.tolist() == list(range(round(30 * rate)))  # every sample once, in order
    assert replay.next_due_s() is None


def test_bad_speed_is_rejected(tmp_path) -> None:
    path = _our_recording(tmp_path / "r.xdf", rates=ECG_PAIR, seconds=1.0)
    for speed in (0.0, -1.0, math.nan):
        with pytest.raises(ConfigError, match="speed"):
            open_replay(path, speed=speed)


# -- our recordings ------------------------------------------------------------------------


def test_values_converted_by_device_config_and_session_rebuilt(tmp_path) -> None:
    path = _our_recording(tmp_path / "room-3.xdf", rates=DYAD, seconds=2.0)
    replay = open_replay(path, speed=math.inf)
    assert replay.session.room == "room-3"
    assert set(replay.session.signals) == {SignalKind.ECG, SignalKind.EDA}
    assert {(s.role, s.signal): s.rate_hz for s in replay.sources} == DYAD
    frames = _drain(replay)[(Role.CLIENT, SignalKind.EDA)]
    values = np.concatenate([f.values for f in frames])
    np.testing.assert_array_equal(values, 0.5 + 0.001 * np.arange(64))  # uS -> uS, channel 0


def test_segments_restored_from_the_events_stream(tmp_path) -> None:
    events: list[tuple[float, dict[str, object]]] = [
        (
            T0 + 1.0,
            {"event": "segment", "stream": "therapist-ecg", "segment": 1, "first_sample": 100},
        ),
        (T0 + 1.5, {"event": "status", "stream": "client-ecg", "kind": "stalled"}),
        (
            T0 + 2.3,
            {"event": "segment", "stream": "therapist-ecg", "segment": 2, "first_sample": 230},
        ),
        (T0 + 0.5, {"event": "segment", "stream": "client-ecg", "segment": 1, "first_sample": 55}),
    ]
    path = _our_recording(tmp_path / "r.xdf", rates=ECG_PAIR, seconds=3.0, events=events)
    clock = FakeClock()
    replay = open_replay(path, speed=1.0, clock=clock)
    got: dict[Role, list[Frame]] = {Role.THERAPIST: [], Role.CLIENT: []}
    breaks: list[tuple[Role, float]] = []
    while not replay.finished:
        clock.now += 0.37  # odd steps: frames must still split exactly at segment starts
        for source in replay.sources:
            frames, status = source.poll()
            got[source.role].extend(frames)
            breaks.extend((e.role, e.t_s) for e in status if e.kind is StatusKind.CLOCK_BREAK)
    for role, starts in ((Role.THERAPIST, [0, 100, 230, 300]), (Role.CLIENT, [0, 55, 300])):
        segment_of = np.concatenate(
            [np.full(f.counters.shape, f.segment) for f in got[role] if f.counters is not None]
        )
        expected = np.concatenate(
            [np.full(b - a, n) for n, (a, b) in enumerate(itertools.pairwise(starts))]
        )
        np.testing.assert_array_equal(segment_of, expected)
        assert _counters(got[role]).tolist() == list(range(300))
    assert sorted(breaks) == sorted(
        [(Role.THERAPIST, T0 + 1.0), (Role.THERAPIST, T0 + 2.3), (Role.CLIENT, T0 + 0.55)]
    )


def test_segment_event_outside_the_stream_is_a_recording_error(tmp_path) -> None:
    events = [(T0, {"event": "segment", "stream": "client-ecg", "segment": 1, "first_sample": 999})]
    path = _our_recording(tmp_path / "r.xdf", rates=ECG_PAIR, seconds=1.0, events=events)
    with pytest.raises(RecordingError, match=r"r\.xdf.*client-ecg.*outside"):
        open_replay(path)


def test_session_signal_missing_from_our_recording(tmp_path) -> None:
    path = _our_recording(tmp_path / "r.xdf", rates=ECG_PAIR, seconds=1.0)
    session = _session(
        {"session": {"signals": ["ecg", "eda"]}}
        | {
            role: {"ecg": {"device": "dyadsync_simulator"}, "eda": {"device": "dyadsync_simulator"}}
            for role in ("therapist", "client")
        }
    )
    with pytest.raises(ConfigError, match=r"r\.xdf has no raw therapist-eda stream") as info:
        open_replay(path, session=session)
    assert info.value.key == "therapist.eda"


# -- other tools' recordings (session TOML maps streams to roles) ---------------------------


def _foreign(path: Path, streams: list[tuple[str, str, np.ndarray]]) -> Path:
    """LabRecorder-like file: plain ECG streams (value channel, counter) without our desc."""
    with XdfWriter.open(path) as writer:
        for name, source_id, stamps in streams:
            stream_id = writer.add_stream(
                name=name,
                type="ECG",
                channel_count=2,
                nominal_srate=100.0,
                channel_format="float32",
                source_id=source_id,
            )
            k = np.arange(stamps.shape[0], dtype=np.float64)
            writer.push(stream_id, stamps, np.column_stack([k * 0.25, k]))
    return path


def _session(data: dict[str, object]):
    return parse_session(data, source="session.toml")


def _ecg_session(therapist: dict[str, str], client: dict[str, str]):
    return _session(
        {
            "session": {"signals": ["ecg"]},
            "therapist": {"ecg": {"device": "generic"} | therapist},
            "client": {"ecg": {"device": "generic"} | client},
        }
    )


def test_foreign_streams_mapped_by_session(tmp_path) -> None:
    path = _foreign(
        tmp_path / "lab.xdf",
        [
            ("Amp A", "amp-a", _regular(100, 2.0)),
            ("Amp B", "amp-b", _regular(100, 2.0, T0 + 0.003)),
        ],
    )
    session = _ecg_session({"source_id": "amp-b"}, {"source_id": "amp-a"})
    replay = open_replay(path, session=session, speed=math.inf)
    got = _drain(replay)
    therapist = got[(Role.THERAPIST, SignalKind.ECG)]
    stamps = np.concatenate([f.timestamps_s for f in therapist])
    np.testing.assert_allclose(stamps, _regular(100, 2.0, T0 + 0.003), atol=1e-9)  # amp-b's
    values = np.concatenate([f.values for f in therapist])
    np.testing.assert_array_equal(values, np.arange(200) * 0.25)  # generic: channel 0, mV
    assert all(f.counters is None for f in therapist)  # generic declares no counter channel


def test_foreign_timestamp_jump_starts_a_segment(tmp_path) -> None:
    stamps = _regular(100, 3.0)
    stamps[150:] -= 2.0  # the sender's clock stepped back 2 s
    path = _foreign(
        tmp_path / "lab.xdf", [("Amp A", "amp-a", stamps), ("Amp B", "amp-b", _regular(100, 3.0))]
    )
    replay = open_replay(
        path, session=_ecg_session({"source_id": "amp-a"}, {"source_id": "amp-b"}), speed=math.inf
    )
    frames = _drain(replay)[(Role.THERAPIST, SignalKind.ECG)]
    segment_of = np.concatenate([np.full(f.timestamps_s.shape, f.segment) for f in frames])
    np.testing.assert_array_equal(segment_of, np.repeat([0, 1], 150))
    np.testing.assert_allclose(np.concatenate([f.timestamps_s for f in frames]), stamps, atol=1e-9)


def test_sensor_without_stream_names_file_sensor_and_what_is_there(tmp_path) -> None:
    path = _foreign(tmp_path / "lab.xdf", [("Amp A", "amp-a", _regular(100, 1.0))])
    session = _ecg_session({"source_id": "amp-a"}, {"source_id": "amp-zz"})
    with pytest.raises(ConfigError) as info:
        open_replay(path, session=session)
    message = str(info.value)
    assert "lab.xdf has no stream for client ecg" in message
    assert "'amp-zz'" in message and "source_id 'amp-a'" in message
    assert info.value.path == "session.toml" and info.value.key == "client.ecg"


def test_sensor_with_several_streams_is_ambiguous(tmp_path) -> None:
    path = _foreign(
        tmp_path / "lab.xdf",
        [("Amp A", "amp-a", _regular(100, 1.0)), ("Amp B", "amp-b", _regular(100, 1.0))],
    )
    session = _ecg_session({"name": "Amp*"}, {"source_id": "amp-b"})
    with pytest.raises(
        ConfigError, match=r"lab\.xdf has 2 streams for therapist ecg.*'amp-a', 'amp-b'"
    ):
        open_replay(path, session=session)


def test_foreign_file_needs_a_session(tmp_path) -> None:
    path = _foreign(tmp_path / "lab.xdf", [("Amp A", "amp-a", _regular(100, 1.0))])
    with pytest.raises(RecordingError, match=r"not a dyadsync recording.*session TOML"):
        open_replay(path)


def test_unreadable_files_are_recording_errors(tmp_path) -> None:
    with pytest.raises(RecordingError, match="no such file"):
        open_replay(tmp_path / "missing.xdf")
    junk = tmp_path / "junk.xdf"
    junk.write_bytes(b"this is not xdf")
    with pytest.raises(RecordingError, match=r"junk\.xdf"):
        open_replay(junk)


def test_unknown_recorded_device_asks_for_the_session(tmp_path) -> None:
    path = tmp_path / "r.xdf"
    with XdfWriter.open(path) as writer:
        for role in Role:
            _raw_stream(
                writer,
                role=role,
                signal=SignalKind.ECG,
                rate_hz=100.0,
                stamps=_regular(100, 1.0),
                device="lab_amp.toml",
            )
    with pytest.raises(ConfigError, match=r"lab_amp\.toml.*pass the session TOML"):
        open_replay(path)
    device = builtin_device_configs()["generic"]
    assert device.name == "generic"
    session = _ecg_session({}, {})
    replay = open_replay(path, session=session, speed=math.inf)
    assert all(s.stream.device.name == "generic" for s in replay.sources)

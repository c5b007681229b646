"""dashboard.messages: protocol v1 messages decode to typed values; anything else is ignored
with a category, never a crash."""

from __future__ import annotations

import contextlib
import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dashboard.messages import (
    Episode,
    Health,
    Hello,
    MessageIgnored,
    Other,
    Physio,
    Recording,
    Status,
    Sync,
    decode_message,
)
from server.errors import ProtocolError

# Examples copied from docs/protocol.md.
HELLO = {
    "v": 1,
    "type": "hello",
    "session": "room-1",
    "t": 1234.5,
    "server": "dyadsync 0.1.0",
    "mode": "live",
    "signals": ["hr", "scl"],
    "grid_hz": 4.0,
    "synchrony": {"window_s": 30.0, "lag_s": 5.0, "step_s": 1.0},
    "lag_convention": "positive lag = client follows therapist",
}
PHYSIO = {
    "v": 1,
    "type": "physio",
    "session": "room-1",
    "t": 1236.0,
    "role": "client",
    "signal": "hr",
    "t_s": [1235.25, 1235.5, 1235.75, 1236.0],
    "values": [71.2, 71.4, None, None],
    "valid": [True, True, False, False],
}
SYNC = {
    "v": 1,
    "type": "sync",
    "session": "room-1",
    "t": 1236.0,
    "signal": "hr",
    "estimate": True,
    "reason": None,
    "r": 0.62,
    "z": 0.73,
    "best_lag_s": 2.0,
    "leader": "therapist",
    "null_z": 3.1,
    "p": 0.01,
    "concordance": 1.2,
    "state": "coupled",
}
EPISODE = {
    "v": 1,
    "type": "episode",
    "session": "room-1",
    "t": 1300.0,
    "signal": "hr",
    "event": "start",
    "state": "coupled",
    "leader": "client",
}
STATUS = {
    "v": 1,
    "type": "status",
    "session": "room-1",
    "t": 1240.2,
    "role": "therapist",
    "signal": "eda",
    "kind": "stalled",
    "detail": "no samples for 2.0 s",
}
RECORDING = {
    "v": 1,
    "type": "recording",
    "session": "room-1",
    "t": 1250.7,
    "state": "failed",
    "detail": "recording stopped: /data/room-1_20261202T100000Z.xdf: cannot write the "
    "recording (No space left on device); ...",
}
HEALTH = {
    "v": 1,
    "type": "health",
    "session": "room-1",
    "t": 1240.0,
    "streams": {
        "therapist-ecg": {"received": 51200, "lost": 0, "duplicated": 0, "status": "connected"}
    },
    "updates_sent": 120,
    "clients": 1,
    "dropped_messages": 0,
}


def encode(doc: dict[str, Any], **changes: Any) -> str:
    return json.dumps({**doc, **changes})


def test_documented_examples_decode() -> None:
    hello = decode_message(encode(HELLO))
    # The documented example predates started_t and thresholds: the fallbacks apply.
    assert hello == Hello(
        session="room-1",
        t=1234.5,
        started_t=None,
        mode="live",
        signals=("hr", "scl"),
        grid_hz=4.0,
        step_s=1.0,
        z_enter=3.0,
        lag_convention="positive lag = client follows therapist",
        window_s=30.0,
        lag_s=5.0,
    )
    assert isinstance(hello, Hello) and hello.origin_t == 1234.5
    physio = decode_message(encode(PHYSIO))
    assert isinstance(physio, Physio)
    assert physio.values == (71.2, 71.4, None, None)
    assert physio.t_s == (1235.25, 1235.5, 1235.75, 1236.0)
    sync = decode_message(encode(SYNC))
    assert isinstance(sync, Sync)
    assert (sync.state, sync.leader, sync.best_lag_s, sync.null_z) == (
        "coupled",
        "therapist",
        2.0,
        3.1,
    )
    assert decode_message(encode(EPISODE)) == Episode(
        session="room-1", t=1300.0, signal="hr", event="start", state="coupled", leader="client"
    )
    assert decode_message(encode(STATUS)) == Status(
        session="room-1",
        t=1240.2,
        role="therapist",
        signal="eda",
        kind="stalled",
        detail="no samples for 2.0 s",
    )
    health = decode_message(encode(HEALTH))
    assert isinstance(health, Health)
    assert health.streams["therapist-ecg"].received == 51200
    assert health.streams["therapist-ecg"].status == "connected"


def test_bytes_and_unknown_fields_are_accepted() -> None:
    message = decode_message(encode(STATUS, future_field={"x": 1}).encode())
    assert isinstance(message, Status)


def test_error_and_pong_are_known_but_unused() -> None:
    error = decode_message(
        encode(
            {
                "v": 1,
                "type": "error",
                "session": "room-1",
                "t": 1.0,
                "code": "bad_message",
                "detail": "x",
            }
        )
    )
    assert error == Other(session="room-1", t=1.0, type="error")


def test_invalid_sample_never_carries_a_number() -> None:
    # valid=false with a number, and valid=true with null: neither may be plotted.
    message = decode_message(
        encode(PHYSIO, values=[71.2, 99.0, None, 70.0], valid=[True, False, True, True])
    )
    assert isinstance(message, Physio)
    assert message.values == (71.2, None, None, 70.0)


def test_no_estimate_drops_every_number() -> None:
    message = decode_message(encode(SYNC, estimate=False, reason="gap"))
    assert isinstance(message, Sync)
    assert message.reason == "gap"
    assert (
        message.r,
        message.z,
        message.null_z,
        message.p,
        message.best_lag_s,
        message.leader,
        message.state,
    ) == (None,) * 7


@pytest.mark.parametrize(
    ("raw", "category"),
    [
        ("not json", "not_json"),
        (b"\xff\xfe", "not_json"),
        ("[1, 2]", "not_json"),
        (encode(SYNC, v=2), "unknown_version"),
        (encode(SYNC, v=True), "unknown_version"),
        (encode({k: v for k, v in SYNC.items() if k != "v"}), "unknown_version"),
        (encode(SYNC, type="telepathy"), "unknown_type"),
        (encode(SYNC, t="soon"), "malformed"),
        (encode(SYNC, session=3), "malformed"),
        (encode(SYNC, estimate="yes"), "malformed"),
        (encode(SYNC, state="ecstatic"), "malformed"),
        (encode(SYNC, leader="nobody"), "malformed"),
        (encode(SYNC, r="0.5"), "malformed"),
        (encode(SYNC, z=True), "malformed"),
        (encode(SYNC, signal="ecg"), "malformed"),
        (encode(SYNC, reason=7), "malformed"),
        ('{"v": 1, "type": "sync", "session": "s", "t": NaN}', "not_json"),
        (encode(PHYSIO, valid=[True, True, False]), "malformed"),
        (encode(PHYSIO, t_s=[1.0, 2.0, None, 4.0]), "malformed"),
        (encode(PHYSIO, values=[1.0, "x", None, None]), "malformed"),
        (encode(PHYSIO, valid=[1, 1, 0, 0]), "malformed"),
        (encode(PHYSIO, role="doctor"), "malformed"),
        (encode(PHYSIO, values=None), "malformed"),
        (encode(EPISODE, event="pause"), "malformed"),
        (encode(STATUS, kind="exploded"), "malformed"),
        (encode(STATUS, signal="hr"), "malformed"),
        (encode(HEALTH, streams=[]), "malformed"),
        (encode(HEALTH, streams={"therapist-ecg": 5}), "malformed"),
        (encode(HEALTH, streams={"therapist-ecg": {"received": -1}}), "malformed"),
        (encode(HELLO, grid_hz=0), "malformed"),
        (encode(HELLO, synchrony={"step_s": 0}), "malformed"),
        (encode(HELLO, synchrony={"step_s": "1"}), "malformed"),
        (encode(HELLO, synchrony={"window_s": 0}), "malformed"),
        (encode(HELLO, synchrony={"lag_s": -1.0}), "malformed"),
        (encode(HELLO, synchrony={"window_s": "30"}), "malformed"),
        (encode(HELLO, signals="hr"), "malformed"),
        (encode(HELLO, started_t="1200"), "malformed"),
        (encode(HELLO, thresholds={"z_enter": "high"}), "malformed"),
        (encode(HELLO, recording="room-1.xdf"), "malformed"),
        (encode(HELLO, recording={}), "malformed"),
        (encode(HELLO, recording={"file": ""}), "malformed"),
        (encode(HELLO, recording={"file": 3}), "malformed"),
        (encode(RECORDING, state="paused"), "malformed"),
        (encode(RECORDING, state=None), "malformed"),
        (encode(RECORDING, detail=["disk"]), "malformed"),
        ("x" * (2 << 20), "malformed"),
    ],
)
def test_nonconforming_messages_are_ignored_with_a_category(
    raw: str | bytes, category: str
) -> None:
    with pytest.raises(MessageIgnored) as info:
        decode_message(raw)
    assert info.value.category == category
    assert isinstance(info.value, ProtocolError)


def test_estimate_without_state_keeps_its_numbers() -> None:
    message = decode_message(encode(SYNC, state=None, reason="null warming up", null_z=None))
    assert isinstance(message, Sync)
    assert (message.estimate, message.state, message.z, message.null_z) == (True, None, 0.73, None)


def test_hello_session_start_and_coupling_threshold() -> None:
    hello = decode_message(
        encode(HELLO, started_t=1154.5, thresholds={"z_enter": 2.5, "z_exit": 1.5})
    )
    assert isinstance(hello, Hello)
    assert (hello.started_t, hello.origin_t, hello.z_enter) == (1154.5, 1154.5, 2.5)
    other = decode_message(encode(HELLO, started_t=None, thresholds={"z_exit": 1.0}))
    assert isinstance(other, Hello)
    assert (other.origin_t, other.z_enter) == (1234.5, 3.0)


def test_hello_keeps_only_known_signals() -> None:
    hello = decode_message(encode(HELLO, signals=["hr", "pupil", "phasic"]))
    assert isinstance(hello, Hello)
    assert hello.signals == ("hr", "phasic")


@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
        max_leaves=20,
    )
)
def test_arbitrary_json_never_crashes(doc: Any) -> None:
    for candidate in (
        doc,
        {**SYNC, "r": doc},
        {**PHYSIO, "values": doc},
        {**HEALTH, "streams": doc},
        {**HELLO, "recording": doc},
        {**RECORDING, "state": doc},
    ):
        # Either a typed message or MessageIgnored: any other exception fails the test.
        with contextlib.suppress(MessageIgnored):
            decode_message(json.dumps(candidate))


def test_hello_window_and_lag_are_optional() -> None:
    # The countdowns need them; a server that does not state them gets no countdown, and a
    # hello without any synchrony table still decodes with the documented step.
    stated = decode_message(encode(HELLO, synchrony={"window_s": 20.0, "lag_s": 3.0}))
    assert isinstance(stated, Hello)
    assert (stated.window_s, stated.lag_s, stated.step_s) == (20.0, 3.0, 1.0)
    bare = decode_message(encode({k: v for k, v in HELLO.items() if k != "synchrony"}))
    assert isinstance(bare, Hello)
    assert (bare.window_s, bare.lag_s, bare.step_s) == (None, None, 1.0)


def test_hello_names_the_recording_file_when_there_is_one() -> None:
    # Absent (an older server) and null (not recording) both mean: claim no recording.
    for doc in (HELLO, {**HELLO, "recording": None}):
        hello = decode_message(encode(doc))
        assert isinstance(hello, Hello) and hello.recording_file is None
    recording = decode_message(
        encode(HELLO, recording={"file": "room-1_20261202T100000Z.xdf", "future": 1})
    )
    assert isinstance(recording, Hello)
    assert recording.recording_file == "room-1_20261202T100000Z.xdf"


def test_hello_mode_says_whether_it_is_a_replay() -> None:
    live = decode_message(encode(HELLO))
    replay = decode_message(encode(HELLO, mode="replay"))
    assert isinstance(live, Hello) and isinstance(replay, Hello)
    assert (live.is_replay, replay.is_replay) == (False, True)


@pytest.mark.parametrize("state", ["failed", "lagging"])
def test_recording_problems_decode(state: str) -> None:
    message = decode_message(encode(RECORDING, state=state))
    assert message == Recording(
        session="room-1", t=1250.7, state=state, detail=str(RECORDING["detail"])
    )
    bare = decode_message(encode({k: v for k, v in RECORDING.items() if k != "detail"}))
    assert isinstance(bare, Recording) and bare.detail == ""

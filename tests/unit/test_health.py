"""/health and /metrics documents: the overall status logic, and the Prometheus text read
back by an independent parser (prometheus_client's) for any room names hypothesis finds."""

from __future__ import annotations

import json
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client.parser import text_string_to_metric_families

from dsp.exceptions import ConfigError
from dsp.types import StatusKind
from server.health import (
    OutputHealth,
    RoomHealth,
    RoomState,
    StreamHealth,
    health_document,
    metrics_text,
)

SampleKey = tuple[str, frozenset[tuple[str, str]]]


def stream(*, status: StatusKind = StatusKind.CONNECTED, received: int = 100) -> StreamHealth:
    return StreamHealth(
        samples_received=received, samples_lost=2, samples_duplicated=1, stalls=0, status=status
    )


def room(
    name: str = "room-1",
    *,
    state: RoomState = RoomState.RUNNING,
    detail: str = "",
    streams: dict[str, StreamHealth] | None = None,
    outputs: dict[str, OutputHealth] | None = None,
) -> RoomHealth:
    return RoomHealth(
        room=name,
        state=state,
        detail=detail,
        uptime_s=61.25,
        streams=streams if streams is not None else {"therapist/ecg": stream()},
        clients=1,
        updates_sent=30,
        dropped_messages=0,
        queue_depths={"ws-1": 0},
        outputs=outputs or {},
    )


# --- /health status -------------------------------------------------------------------


def test_all_running_and_connected_is_ok() -> None:
    doc = health_document(
        rooms=[
            room("a", outputs={"mqtt": OutputHealth(connected=True, messages_published=3)}),
            room("b"),
        ],
        version="1.2.3",
        uptime_s=10.0,
    )
    assert doc["status"] == "ok"
    assert doc["problems"] == []
    assert doc["version"] == "1.2.3"
    assert set(doc["rooms"]) == {"a", "b"}  # type: ignore[call-overload]


def test_no_rooms_is_ok() -> None:
    assert health_document(rooms=[], version="1", uptime_s=0.0)["status"] == "ok"


@pytest.mark.parametrize("state", [RoomState.WAITING, RoomState.FAILED, RoomState.STOPPED])
def test_a_room_not_running_degrades_with_its_detail(state: RoomState) -> None:
    doc = health_document(
        rooms=[room("a"), room("b", state=state, detail="why it is so")],
        version="1",
        uptime_s=1.0,
    )
    assert doc["status"] == "degraded"
    assert doc["problems"] == [f"room 'b' is {state.value}: why it is so"]


@pytest.mark.parametrize(
    "status", [kind for kind in StatusKind if kind is not StatusKind.CONNECTED]
)
def test_a_stream_not_connected_degrades(status: StatusKind) -> None:
    streams = {"therapist/ecg": stream(), "client/eda": stream(status=status)}
    doc = health_document(rooms=[room("a", streams=streams)], version="1", uptime_s=1.0)
    assert doc["status"] == "degraded"
    assert doc["problems"] == [f"room 'a': stream client/eda is {status.value}"]


def test_a_disconnected_output_degrades() -> None:
    outputs = {"mqtt": OutputHealth(connected=False, reconnects=4)}
    doc = health_document(rooms=[room("a", outputs=outputs)], version="1", uptime_s=1.0)
    assert doc["status"] == "degraded"
    assert doc["problems"] == ["room 'a': output mqtt is disconnected"]


def test_room_document_carries_counters() -> None:
    doc = health_document(rooms=[room("a")], version="1", uptime_s=1.0)
    assert json.loads(json.dumps(doc))["rooms"]["a"] == {
        "state": "running",
        "detail": "",
        "uptime_s": 61.25,
        "clients": 1,
        "updates_sent": 30,
        "dropped_messages": 0,
        "queue_depths": {"ws-1": 0},
        "streams": {
            "therapist/ecg": {
                "status": "connected",
                "samples_received": 100,
                "samples_lost": 2,
                "samples_duplicated": 1,
                "stalls": 0,
            }
        },
        "outputs": {},
    }


def test_duplicate_room_names_are_refused() -> None:
    rooms = [room("same"), room("same")]
    with pytest.raises(ConfigError, match="two rooms are named 'same'"):
        health_document(rooms=rooms, version="1", uptime_s=1.0)
    with pytest.raises(ConfigError, match="two rooms are named 'same'"):
        metrics_text(rooms=rooms, version="1")


# --- /metrics, read back by prometheus_client's parser ----------------------------------

# Any text, weighted towards the characters the format must escape.
hostile_text = st.text(
    alphabet=st.one_of(st.sampled_from('\\"\n{}=,# \t\r'), st.characters(codec="utf-8")),
    max_size=12,
)
counts = st.integers(min_value=0, max_value=2**53)

stream_health = st.builds(
    StreamHealth,
    samples_received=counts,
    samples_lost=counts,
    samples_duplicated=counts,
    stalls=counts,
    status=st.sampled_from(StatusKind),
)
output_health = st.builds(
    OutputHealth,
    connected=st.booleans(),
    messages_published=counts,
    messages_lost=counts,
    reconnects=counts,
)


@st.composite
def room_health(draw: st.DrawFn, name: str) -> RoomHealth:
    return RoomHealth(
        room=name,
        state=draw(st.sampled_from(RoomState)),
        detail=draw(hostile_text),
        uptime_s=draw(st.floats(min_value=0.0, max_value=1e9)),
        streams=draw(st.dictionaries(hostile_text, stream_health, max_size=3)),
        clients=draw(st.integers(min_value=0, max_value=100)),
        updates_sent=draw(counts),
        dropped_messages=draw(counts),
        queue_depths=draw(st.dictionaries(hostile_text, counts, max_size=3)),
        outputs=draw(st.dictionaries(hostile_text, output_health, max_size=2)),
    )


rooms_with_unique_names = st.lists(hostile_text, unique=True, max_size=3).flatmap(
    lambda names: st.tuples(*(room_health(name) for name in names))
)


def expected_samples(rooms: tuple[RoomHealth, ...], version: str) -> dict[SampleKey, float]:
    """The samples /metrics should hold, written out from the records (the oracle)."""
    samples: dict[SampleKey, float] = {}

    def put(name: str, value: float, **labels: str) -> None:
        samples[name, frozenset(labels.items())] = value

    put("dyadsync_build_info", 1, version=version)
    for r in rooms:
        put("dyadsync_room_up", r.state is RoomState.RUNNING, room=r.room)
        for state in RoomState:
            put("dyadsync_room_state", r.state is state, room=r.room, state=state.value)
        put("dyadsync_room_uptime_seconds", r.uptime_s, room=r.room)
        put("dyadsync_clients", r.clients, room=r.room)
        put("dyadsync_synchrony_updates_sent_total", r.updates_sent, room=r.room)
        put("dyadsync_messages_dropped_total", r.dropped_messages, room=r.room)
        for consumer, depth in r.queue_depths.items():
            put("dyadsync_queue_depth_messages", depth, room=r.room, consumer=consumer)
        for key, s in r.streams.items():
            labels = {"room": r.room, "stream": key}
            put("dyadsync_stream_up", s.status is StatusKind.CONNECTED, **labels)
            put("dyadsync_stream_samples_received_total", s.samples_received, **labels)
            put("dyadsync_stream_samples_lost_total", s.samples_lost, **labels)
            put("dyadsync_stream_samples_duplicated_total", s.samples_duplicated, **labels)
            put("dyadsync_stream_stalls_total", s.stalls, **labels)
        for name, o in r.outputs.items():
            labels = {"room": r.room, "output": name}
            put("dyadsync_output_connected", o.connected, **labels)
            put("dyadsync_output_messages_published_total", o.messages_published, **labels)
            put("dyadsync_output_messages_lost_total", o.messages_lost, **labels)
            put("dyadsync_output_reconnects_total", o.reconnects, **labels)
    return samples


@settings(max_examples=200, deadline=None)
@given(rooms=rooms_with_unique_names, version=hostile_text)
def test_metrics_round_trip_through_prometheus_parser(
    rooms: tuple[RoomHealth, ...], version: str
) -> None:
    text = metrics_text(rooms=rooms, version=version)
    families = list(text_string_to_metric_families(text))

    parsed: dict[SampleKey, float] = {}
    for family in families:
        for sample in family.samples:
            key = (sample.name, frozenset(sample.labels.items()))
            assert key not in parsed, f"sample {key} written twice"
            parsed[key] = sample.value
    assert parsed == expected_samples(rooms, version)

    # One HELP and one TYPE per family, each family's samples together: a family split in
    # two would come back from the parser twice.
    declared = [line.split(" ")[2] for line in text.splitlines() if line.startswith("# TYPE ")]
    assert len(set(declared)) == len(declared) == len({family.name for family in families})


@settings(max_examples=50, deadline=None)
@given(rooms=rooms_with_unique_names)
def test_health_document_is_json_and_names_every_room(rooms: tuple[RoomHealth, ...]) -> None:
    doc = json.loads(json.dumps(health_document(rooms=rooms, version="1", uptime_s=2.0)))
    assert list(doc["rooms"]) == [r.room for r in rooms]
    healthy = all(
        r.state is RoomState.RUNNING
        and all(s.status is StatusKind.CONNECTED for s in r.streams.values())
        and all(o.connected for o in r.outputs.values())
        for r in rooms
    )
    assert doc["status"] == ("ok" if healthy else "degraded")
    assert (doc["problems"] == []) == healthy


def test_metric_names_follow_prometheus_conventions() -> None:
    text = metrics_text(
        rooms=[room("a", outputs={"mqtt": OutputHealth(connected=True)})], version="1"
    )
    types = dict(
        line.removeprefix("# TYPE ").split(" ")
        for line in text.splitlines()
        if line.startswith("# TYPE ")
    )
    helps = Counter(line.split(" ")[2] for line in text.splitlines() if line.startswith("# HELP "))
    assert set(helps) == set(types) and set(helps.values()) == {1}
    for name, kind in types.items():
        assert name.startswith("dyadsync_")
        assert name.endswith("_total") == (kind == "counter"), name
    assert text.endswith("\n")


def test_every_family_is_declared_without_rooms() -> None:
    families = {
        f.name: f for f in text_string_to_metric_families(metrics_text(rooms=[], version="9"))
    }
    assert "dyadsync_stream_samples_lost" in families  # counters' names, less _total
    assert families["dyadsync_stream_samples_lost"].samples == []
    [build] = families["dyadsync_build_info"].samples
    assert build.labels == {"version": "9"} and build.value == 1

"""What ``GET /health`` (JSON) and ``GET /metrics`` (Prometheus text) say about a service.

Pure functions of plain records: the servers collect one :class:`RoomHealth` per room
(one dyad each) and hand the list here, so the documents are the same whichever port
serves them and can be tested without a network.

``/health`` is for people and probes: an overall ``status`` (``"ok"`` or ``"degraded"``)
with the reasons in ``problems``. ``/metrics`` is the Prometheus text exposition format
0.0.4 that ops teams scrape: counters end in ``_total``, units are in the names, and
label values are escaped so that any room name is safe.

Neither document holds a physiological value: only counts, states and the ``detail``
texts, which are free of such values by contract (as :class:`dsp.types.StatusEvent`'s).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Literal

from dsp.exceptions import ConfigError
from dsp.types import StatusKind


class RoomState(StrEnum):
    """Where a room's session is in its life."""

    WAITING = "waiting"  # for its sensors' LSL streams
    RUNNING = "running"
    FAILED = "failed"  # stopped by an error; RoomHealth.detail says which
    STOPPED = "stopped"  # ended on purpose


@dataclass(frozen=True, slots=True, kw_only=True)
class StreamHealth:
    """Counters of one sensor stream (``"therapist/ecg"``, ...) since the room started."""

    samples_received: int
    samples_lost: int  # gaps in the device's sample counter
    samples_duplicated: int
    stalls: int  # times the stream went silent
    status: StatusKind  # the last status event; only CONNECTED is healthy


@dataclass(frozen=True, slots=True, kw_only=True)
class OutputHealth:
    """Counters of one output of a room (``"mqtt"``, ``"lsl"``, ...)."""

    connected: bool  # an output that cannot be connected (an LSL outlet) reports True
    messages_published: int = 0
    messages_lost: int = 0  # given up on (queue overflow, broker gone)
    reconnects: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class RoomHealth:
    """A snapshot of one room, as the service that runs it sees it.

    ``streams`` is keyed by stream key (``"client/eda"``), ``queue_depths`` by consumer
    name (as :meth:`server.hub.Hub.queue_depths`), ``outputs`` by output name.
    ``dropped_messages`` is cumulative (:attr:`server.hub.Hub.dropped`).
    """

    room: str
    state: RoomState
    detail: str = ""  # why the room is in its state (the error of a failed room), or ""
    uptime_s: float
    streams: Mapping[str, StreamHealth]
    clients: int
    updates_sent: int
    dropped_messages: int
    queue_depths: Mapping[str, int]
    outputs: Mapping[str, OutputHealth] = field(default_factory=dict)


def _room_problems(room: RoomHealth) -> list[str]:
    """Why ``room`` makes the service degraded; empty when it is healthy: running, every
    stream connected and every output connected."""
    problems = []
    if room.state is not RoomState.RUNNING:
        because = f": {room.detail}" if room.detail else ""
        problems.append(f"room {room.room!r} is {room.state.value}{because}")
    problems.extend(
        f"room {room.room!r}: stream {key} is {stream.status.value}"
        for key, stream in sorted(room.streams.items())
        if stream.status is not StatusKind.CONNECTED
    )
    problems.extend(
        f"room {room.room!r}: output {name} is disconnected"
        for name, output in sorted(room.outputs.items())
        if not output.connected
    )
    return problems


def health_document(
    *, rooms: Sequence[RoomHealth], version: str, uptime_s: float
) -> dict[str, object]:
    """The JSON body of ``GET /health``.

    ``status`` is ``"degraded"`` when any room is not running or any of its streams or
    outputs is not connected (``problems`` lists each reason), else ``"ok"``; a service
    with no rooms is ``"ok"``. ``uptime_s`` is the service's. Raises
    :class:`~dsp.exceptions.ConfigError` when two rooms share a name.
    """
    _require_unique_names(rooms)
    problems = [problem for room in rooms for problem in _room_problems(room)]
    return {
        "status": "degraded" if problems else "ok",
        "problems": problems,
        "version": version,
        "uptime_s": round(uptime_s, 3),
        "rooms": {room.room: _room_document(room) for room in rooms},
    }


def _room_document(room: RoomHealth) -> dict[str, object]:
    return {
        "state": room.state.value,
        "detail": room.detail,
        "uptime_s": round(room.uptime_s, 3),
        "clients": room.clients,
        "updates_sent": room.updates_sent,
        "dropped_messages": room.dropped_messages,
        "queue_depths": dict(sorted(room.queue_depths.items())),
        "streams": {
            key: {
                "status": stream.status.value,
                "samples_received": stream.samples_received,
                "samples_lost": stream.samples_lost,
                "samples_duplicated": stream.samples_duplicated,
                "stalls": stream.stalls,
            }
            for key, stream in sorted(room.streams.items())
        },
        "outputs": {
            name: {
                "connected": output.connected,
                "messages_published": output.messages_published,
                "messages_lost": output.messages_lost,
                "reconnects": output.reconnects,
            }
            for name, output in sorted(room.outputs.items())
        },
    }


def _require_unique_names(rooms: Sequence[RoomHealth]) -> None:
    # Two rooms of one name would be one label set twice: Prometheus rejects the whole
    # scrape, and /health would silently show only the last.
    seen: set[str] = set()
    for room in rooms:
        if room.room in seen:
            raise ConfigError(
                f"two rooms are named {room.room!r}; give each room its own name",
                key="room",
            )
        seen.add(room.room)


# --- Prometheus text exposition format 0.0.4 ---------------------------------------------

MetricKind = Literal["counter", "gauge"]
Labels = tuple[tuple[str, str], ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class _Family:
    """One metric family: written as one HELP line, one TYPE line, then its samples."""

    name: str  # counters' names end in _total, as the 0.0.4 convention has them
    kind: MetricKind
    help: str
    samples: Sequence[tuple[Labels, float]]


# Per stream and per output counters: (metric name, help, the value of one record).
_STREAM_COUNTERS: tuple[tuple[str, str, Callable[[StreamHealth], int]], ...] = (
    (
        "dyadsync_stream_samples_received_total",
        "Samples received from the sensor stream.",
        lambda stream: stream.samples_received,
    ),
    (
        "dyadsync_stream_samples_lost_total",
        "Samples missing from the sensor stream, by its device sample counter.",
        lambda stream: stream.samples_lost,
    ),
    (
        "dyadsync_stream_samples_duplicated_total",
        "Samples the sensor stream delivered twice, by its device sample counter.",
        lambda stream: stream.samples_duplicated,
    ),
    (
        "dyadsync_stream_stalls_total",
        "Times the sensor stream went silent.",
        lambda stream: stream.stalls,
    ),
)
_OUTPUT_COUNTERS: tuple[tuple[str, str, Callable[[OutputHealth], int]], ...] = (
    (
        "dyadsync_output_messages_published_total",
        "Messages the output published.",
        lambda output: output.messages_published,
    ),
    (
        "dyadsync_output_messages_lost_total",
        "Messages the output gave up on.",
        lambda output: output.messages_lost,
    ),
    (
        "dyadsync_output_reconnects_total",
        "Times the output reconnected.",
        lambda output: output.reconnects,
    ),
)


def metrics_text(*, rooms: Sequence[RoomHealth], version: str) -> str:
    """The body of ``GET /metrics`` (content type
    ``text/plain; version=0.0.4; charset=utf-8``).

    Every family is present (with HELP and TYPE) even without samples, so dashboards and
    alerts can be written before the first room runs. Raises
    :class:`~dsp.exceptions.ConfigError` when two rooms share a name.
    """
    _require_unique_names(rooms)

    def per_room(
        name: str, kind: MetricKind, help_text: str, value: Callable[[RoomHealth], float]
    ) -> _Family:
        samples = [((("room", room.room),), value(room)) for room in rooms]
        return _Family(name=name, kind=kind, help=help_text, samples=samples)

    streams = [
        ((("room", room.room), ("stream", key)), stream)
        for room in rooms
        for key, stream in sorted(room.streams.items())
    ]
    outputs = [
        ((("room", room.room), ("output", name)), output)
        for room in rooms
        for name, output in sorted(room.outputs.items())
    ]
    families = [
        _Family(
            name="dyadsync_build_info",
            kind="gauge",
            help="Always 1; the version label says which dyadsync is running.",
            samples=[((("version", version),), 1)],
        ),
        per_room(
            "dyadsync_room_up",
            "gauge",
            "1 while the room's session is running, else 0.",
            lambda room: room.state is RoomState.RUNNING,
        ),
        _Family(
            name="dyadsync_room_state",
            kind="gauge",
            help="1 for the room's current state, 0 for its other states.",
            samples=[
                ((("room", room.room), ("state", state.value)), room.state is state)
                for room in rooms
                for state in RoomState
            ],
        ),
        per_room(
            "dyadsync_room_uptime_seconds",
            "gauge",
            "Seconds since the room started.",
            lambda room: room.uptime_s,
        ),
        per_room(
            "dyadsync_clients",
            "gauge",
            "Websocket clients connected to the room.",
            lambda room: room.clients,
        ),
        per_room(
            "dyadsync_synchrony_updates_sent_total",
            "counter",
            "Synchrony updates the room published.",
            lambda room: room.updates_sent,
        ),
        per_room(
            "dyadsync_messages_dropped_total",
            "counter",
            "Messages dropped for slow consumers, including consumers that have left.",
            lambda room: room.dropped_messages,
        ),
        _Family(
            name="dyadsync_queue_depth_messages",
            kind="gauge",
            help="Messages waiting in a consumer's queue.",
            samples=[
                ((("room", room.room), ("consumer", consumer)), depth)
                for room in rooms
                for consumer, depth in sorted(room.queue_depths.items())
            ],
        ),
        _Family(
            name="dyadsync_stream_up",
            kind="gauge",
            help="1 while the sensor stream is connected, else 0.",
            samples=[(labels, stream.status is StatusKind.CONNECTED) for labels, stream in streams],
        ),
        *(
            _Family(
                name=name,
                kind="counter",
                help=help_text,
                samples=[(labels, value(stream)) for labels, stream in streams],
            )
            for name, help_text, value in _STREAM_COUNTERS
        ),
        _Family(
            name="dyadsync_output_connected",
            kind="gauge",
            help="1 while the output is connected, else 0.",
            samples=[(labels, output.connected) for labels, output in outputs],
        ),
        *(
            _Family(
                name=name,
                kind="counter",
                help=help_text,
                samples=[(labels, value(output)) for labels, output in outputs],
            )
            for name, help_text, value in _OUTPUT_COUNTERS
        ),
    ]
    lines = []
    for family in families:
        lines.append(f"# HELP {family.name} {family.help}")
        lines.append(f"# TYPE {family.name} {family.kind}")
        lines.extend(
            f"{family.name}{_format_labels(labels)} {_format_value(value)}"
            for labels, value in family.samples
        )
    return "\n".join(lines) + "\n"  # the format wants every line, the last too, ended


def _format_labels(labels: Labels) -> str:
    return "{" + ",".join(f'{name}="{_escape_label_value(v)}"' for name, v in labels) + "}"


def _escape_label_value(value: str) -> str:
    # The three escapes of the 0.0.4 format; the backslash first, or it would double the
    # others' backslashes. Everything else (quotes aside) is literal UTF-8.
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _format_value(value: float) -> str:
    # Python's float repr ("12.5", "1e+21", "inf", "nan") is what Prometheus's parser
    # reads; only bools need help, as their repr is "True".
    return str(int(value)) if isinstance(value, int) else repr(value)

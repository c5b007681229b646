"""Decode and validate server -> client messages of the dyadsync wire protocol.

The dashboard relies only on ``docs/protocol.md`` (version 1), never on server code, so a
third-party server speaking the documented protocol drives it equally well. Every message
is turned into a small typed value here, once; the rest of the dashboard never touches raw
JSON. Anything that does not conform raises :class:`~server.errors.ProtocolError` whose
``category`` lets the caller count what it ignored (unknown version, unknown type, ...).

Conformance rules taken from the protocol document:

- messages whose ``v`` the client does not know are ignored;
- unknown fields are ignored (fields may be added within a version);
- ``null`` means "no value"; numbers are never NaN or Infinity, so a non-finite number is
  treated as malformed rather than plotted;
- ``physio.values[i]`` is meaningless when ``valid[i]`` is false.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, TypeGuard

from server.errors import ProtocolError

PROTOCOL_VERSION = 1

# Largest message the dashboard accepts from the server. A physio batch of a few seconds
# is a few kB; health grows with the number of streams. 1 MiB leaves two orders of
# magnitude of headroom while still bounding memory per message.
MAX_MESSAGE_BYTES = 1 << 20

ROLES = ("therapist", "client")
RAW_SIGNALS = ("ecg", "eda")
DERIVED_SIGNALS = ("hr", "scl", "phasic")
SYNC_STATES = ("coupled", "anti_phase", "decoupled")
# Sign convention of ``best_lag_s`` for a server whose hello does not state it.
LAG_CONVENTION = "positive lag = client follows therapist"
# Coupling threshold (z against the surrogate null) for a server whose hello does not state
# its ``thresholds``: the episode engine's default ``z_enter`` (dsp/episodes.py).
DEFAULT_Z_ENTER = 3.0

STATUS_KINDS = (
    "connected",
    "stalled",
    "recovered",
    "mismatch",
    "clock_break",
    "bad_samples",
    "missing",
)

# ``recording.state`` values: nothing more is recorded, or items are being lost from it.
RECORDING_STATES = ("failed", "lagging")
# ``hello.mode`` of a server replaying a recorded session (the other documented one: "live").
REPLAY_MODE = "replay"

IgnoreCategory = Literal["not_json", "unknown_version", "unknown_type", "malformed"]


class MessageIgnored(ProtocolError):
    """A message the dashboard must ignore; ``category`` says which rule it broke."""

    def __init__(self, message: str, *, category: IgnoreCategory) -> None:
        super().__init__(message)
        self.category: IgnoreCategory = category


@dataclass(frozen=True, slots=True, kw_only=True)
class Hello:
    """``started_t`` is None from a server that does not send it; ``origin_t`` is then the
    hello's own ``t``. ``z_enter`` is the coupling threshold on ``null_z``. ``window_s`` and
    ``lag_s`` (the synchrony window and maximum lag) are None when the hello does not state
    them; the dashboard then shows no countdown rather than a guessed one.
    ``recording_file`` is the name of the file the server records to, None when it does
    not record or its hello predates the field (the two are not told apart: neither may
    claim a recording is on)."""

    session: str
    t: float
    started_t: float | None
    mode: str
    signals: tuple[str, ...]
    grid_hz: float
    step_s: float
    z_enter: float
    lag_convention: str
    window_s: float | None = None
    lag_s: float | None = None
    recording_file: str | None = None

    @property
    def is_replay(self) -> bool:
        return self.mode == REPLAY_MODE

    @property
    def origin_t(self) -> float:
        """LSL time shown as 00:00: the session start, else when this hello was sent."""
        return self.t if self.started_t is None else self.started_t


@dataclass(frozen=True, slots=True, kw_only=True)
class Physio:
    """A batch of grid samples; ``values[i]`` is None exactly when the sample is invalid."""

    session: str
    t: float
    role: str
    signal: str
    t_s: tuple[float, ...]
    values: tuple[float | None, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class Sync:
    """One synchrony step; when ``estimate`` is False every number is None. ``state`` may
    be None even with an estimate (not classified yet; ``reason`` may say why)."""

    session: str
    t: float
    signal: str
    estimate: bool
    reason: str | None
    r: float | None
    z: float | None
    best_lag_s: float | None
    leader: str | None
    null_z: float | None
    p: float | None
    anti_null_z: float | None
    state: str | None


@dataclass(frozen=True, slots=True, kw_only=True)
class Episode:
    session: str
    t: float
    signal: str
    event: Literal["start", "end"]
    state: str
    leader: str | None


@dataclass(frozen=True, slots=True, kw_only=True)
class Status:
    session: str
    t: float
    role: str
    signal: str
    kind: str
    detail: str


@dataclass(frozen=True, slots=True, kw_only=True)
class StreamHealth:
    received: int | None
    lost: int | None
    status: str | None


@dataclass(frozen=True, slots=True, kw_only=True)
class Health:
    session: str
    t: float
    streams: dict[str, StreamHealth]
    dropped_messages: int | None


@dataclass(frozen=True, slots=True, kw_only=True)
class Recording:
    """The session recording has a problem: ``state`` is one of RECORDING_STATES."""

    session: str
    t: float
    state: str
    detail: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Other:
    """A documented message the dashboard has no use for (``error``, ``pong``)."""

    session: str
    t: float
    type: str


Message = Hello | Physio | Sync | Episode | Status | Health | Recording | Other


def _malformed(what: str) -> MessageIgnored:
    return MessageIgnored(what, category="malformed")


def _finite(value: object) -> TypeGuard[int | float]:
    # bool is an int subclass; a JSON true is not a number.
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _number(doc: dict[str, Any], key: str) -> float:
    value = doc.get(key)
    if not _finite(value):
        raise _malformed(f"field {key!r} must be a finite number, got {value!r}")
    return float(value)


def _optional_number(doc: dict[str, Any], key: str) -> float | None:
    value = doc.get(key)
    if value is None:
        return None
    if not _finite(value):
        raise _malformed(f"field {key!r} must be a finite number or null, got {value!r}")
    return float(value)


def _optional_count(doc: dict[str, Any], key: str) -> int | None:
    value = doc.get(key)
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise _malformed(f"field {key!r} must be a non-negative integer, got {value!r}")
    return value


def _choice(doc: dict[str, Any], key: str, allowed: tuple[str, ...]) -> str:
    value = doc.get(key)
    if value not in allowed:
        raise _malformed(f"field {key!r} must be one of {allowed}, got {value!r}")
    return str(value)


def _optional_choice(doc: dict[str, Any], key: str, allowed: tuple[str, ...]) -> str | None:
    return None if doc.get(key) is None else _choice(doc, key, allowed)


def _text(doc: dict[str, Any], key: str, *, default: str | None = None) -> str:
    value = doc.get(key, default)
    if not isinstance(value, str):
        raise _malformed(f"field {key!r} must be a string, got {value!r}")
    return value


def _list(doc: dict[str, Any], key: str) -> list[Any]:
    value = doc.get(key)
    if not isinstance(value, list):
        raise _malformed(f"field {key!r} must be a list, got {type(value).__name__}")
    return value


def _hello(doc: dict[str, Any], session: str, t: float) -> Hello:
    # Derived signals this dashboard does not know how to label are ignored rather than
    # rejected: a newer server may add signals within version 1.
    signals = tuple(s for s in _list(doc, "signals") if s in DERIVED_SIGNALS)
    grid_hz = _number(doc, "grid_hz")
    synchrony = doc.get("synchrony")
    if not isinstance(synchrony, dict):
        synchrony = {}
    step_s = _optional_number(synchrony, "step_s")
    if step_s is None:
        step_s = 1.0  # protocol.md's default synchrony step, for a hello that does not state it
    if grid_hz <= 0 or step_s <= 0:
        raise _malformed(f"grid_hz and synchrony.step_s must be > 0, got {grid_hz}, {step_s}")
    window_s = _optional_number(synchrony, "window_s")
    lag_s = _optional_number(synchrony, "lag_s")
    if (window_s is not None and window_s <= 0) or (lag_s is not None and lag_s < 0):
        raise _malformed(f"synchrony.window_s must be > 0 and lag_s >= 0, got {window_s}, {lag_s}")
    thresholds = doc.get("thresholds")
    z_enter = DEFAULT_Z_ENTER
    if isinstance(thresholds, dict) and thresholds.get("z_enter") is not None:
        z_enter = _number(thresholds, "z_enter")
    return Hello(
        session=session,
        t=t,
        started_t=_optional_number(doc, "started_t"),
        z_enter=z_enter,
        mode=_text(doc, "mode", default="live"),
        signals=signals,
        grid_hz=grid_hz,
        step_s=step_s,
        window_s=window_s,
        lag_s=lag_s,
        lag_convention=_text(doc, "lag_convention", default=LAG_CONVENTION),
        recording_file=_recording_file(doc),
    )


def _recording_file(doc: dict[str, Any]) -> str | None:
    recording = doc.get("recording")
    if recording is None:
        return None
    if not isinstance(recording, dict):
        raise _malformed(f"field 'recording' must be an object or null, got {recording!r}")
    # A hello that says "recording" must say to which file, or the chip would claim a
    # recording nobody can find afterwards.
    name = _text(recording, "file")
    if not name:
        raise _malformed("field 'recording.file' must not be empty")
    return name


def _physio(doc: dict[str, Any], session: str, t: float) -> Physio:
    t_s = _list(doc, "t_s")
    values = _list(doc, "values")
    valid = _list(doc, "valid")
    if not len(t_s) == len(values) == len(valid):
        raise _malformed(
            f"t_s, values and valid must have equal lengths, got "
            f"{len(t_s)}, {len(values)}, {len(valid)}"
        )
    if not all(_finite(x) for x in t_s):
        raise _malformed("every t_s must be a finite number")
    clean: list[float | None] = []
    for value, ok in zip(values, valid, strict=True):
        if not isinstance(ok, bool) or not (value is None or _finite(value)):
            raise _malformed(f"bad sample value={value!r} valid={ok!r}")
        # A sample the server marks invalid carries no number, whatever it sent; a valid
        # flag on a null value is contradictory, so the sample is not trusted either.
        clean.append(float(value) if ok and value is not None else None)
    return Physio(
        session=session,
        t=t,
        role=_choice(doc, "role", ROLES),
        signal=_choice(doc, "signal", DERIVED_SIGNALS),
        t_s=tuple(float(x) for x in t_s),
        values=tuple(clean),
    )


def _sync(doc: dict[str, Any], session: str, t: float) -> Sync:
    estimate = doc.get("estimate")
    if not isinstance(estimate, bool):
        raise _malformed(f"field 'estimate' must be true or false, got {estimate!r}")
    reason = doc.get("reason")
    if reason is not None and not isinstance(reason, str):
        raise _malformed(f"field 'reason' must be a string or null, got {reason!r}")
    # An estimate may come without a state (e.g. while the surrogate null fills up): the
    # numbers are real, the classification is "no value" yet.
    state = _optional_choice(doc, "state", SYNC_STATES)
    signal = _choice(doc, "signal", DERIVED_SIGNALS)
    if not estimate:
        # The protocol says every number is null without an estimate; never show one.
        return Sync(
            session=session,
            t=t,
            signal=signal,
            estimate=False,
            reason=reason,
            r=None,
            z=None,
            best_lag_s=None,
            leader=None,
            null_z=None,
            p=None,
            anti_null_z=None,
            state=None,
        )
    return Sync(
        session=session,
        t=t,
        signal=signal,
        estimate=True,
        reason=reason,
        r=_optional_number(doc, "r"),
        z=_optional_number(doc, "z"),
        best_lag_s=_optional_number(doc, "best_lag_s"),
        leader=_optional_choice(doc, "leader", ROLES),
        null_z=_optional_number(doc, "null_z"),
        p=_optional_number(doc, "p"),
        anti_null_z=_optional_number(doc, "anti_null_z"),
        state=state,
    )


def _episode(doc: dict[str, Any], session: str, t: float) -> Episode:
    event = _choice(doc, "event", ("start", "end"))
    return Episode(
        session=session,
        t=t,
        signal=_choice(doc, "signal", DERIVED_SIGNALS),
        event="start" if event == "start" else "end",
        state=_choice(doc, "state", SYNC_STATES),
        leader=_optional_choice(doc, "leader", ROLES),
    )


def _status(doc: dict[str, Any], session: str, t: float) -> Status:
    return Status(
        session=session,
        t=t,
        role=_choice(doc, "role", ROLES),
        signal=_choice(doc, "signal", RAW_SIGNALS),
        kind=_choice(doc, "kind", STATUS_KINDS),
        detail=_text(doc, "detail", default=""),
    )


def _recording(doc: dict[str, Any], session: str, t: float) -> Recording:
    return Recording(
        session=session,
        t=t,
        state=_choice(doc, "state", RECORDING_STATES),
        detail=_text(doc, "detail", default=""),
    )


def _health(doc: dict[str, Any], session: str, t: float) -> Health:
    streams_doc = doc.get("streams")
    if not isinstance(streams_doc, dict):
        raise _malformed("field 'streams' must be an object")
    streams: dict[str, StreamHealth] = {}
    for name, entry in streams_doc.items():
        if not isinstance(entry, dict):
            raise _malformed(f"streams[{name!r}] must be an object")
        status = entry.get("status")
        streams[name] = StreamHealth(
            received=_optional_count(entry, "received"),
            lost=_optional_count(entry, "lost"),
            status=status if status in STATUS_KINDS else None,
        )
    return Health(
        session=session,
        t=t,
        streams=streams,
        dropped_messages=_optional_count(doc, "dropped_messages"),
    )


_DECODERS: dict[str, Callable[[dict[str, Any], str, float], Message]] = {
    "hello": _hello,
    "physio": _physio,
    "sync": _sync,
    "episode": _episode,
    "status": _status,
    "health": _health,
    "recording": _recording,
}
_UNUSED_TYPES = ("error", "pong")


def decode_message(raw: str | bytes) -> Message:
    """Parse one websocket message into a typed value.

    Raises :class:`MessageIgnored` (a :class:`ProtocolError`) when the message must be
    ignored; the caller counts it by ``category`` and carries on.
    """
    if len(raw) > MAX_MESSAGE_BYTES:
        raise _malformed(f"message of {len(raw)} bytes exceeds {MAX_MESSAGE_BYTES}")
    try:
        # Reject the NaN/Infinity extensions Python's json accepts: the protocol forbids them.
        doc = json.loads(raw, parse_constant=_reject_constant)
    except (ValueError, UnicodeDecodeError) as exc:
        raise MessageIgnored(f"not JSON: {exc}", category="not_json") from None
    if not isinstance(doc, dict):
        raise MessageIgnored("not a JSON object", category="not_json")
    version = doc.get("v")
    if version != PROTOCOL_VERSION or isinstance(version, bool):
        raise MessageIgnored(f"unknown protocol version {version!r}", category="unknown_version")
    kind = doc.get("type")
    if kind not in _DECODERS and kind not in _UNUSED_TYPES:
        raise MessageIgnored(f"unknown message type {kind!r}", category="unknown_type")
    session = _text(doc, "session")
    t = _number(doc, "t")
    decoder = _DECODERS.get(str(kind))
    if decoder is None:
        return Other(session=session, t=t, type=str(kind))
    return decoder(doc, session, t)


def _reject_constant(name: str) -> float:
    raise ValueError(f"{name} is not allowed by the protocol")

"""Versioned JSON messages of docs/protocol.md: building, encoding and validating them.

Everything that leaves the server goes through :func:`make_message` and :func:`encode`, so
the required fields (``v``, ``type``, ``session``, ``t``) are always present and NaN or
infinity can never reach a client (they become ``null``).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from dsp.synchrony import EpisodeEvent, SyncUpdate
from server.errors import ProtocolError

PROTOCOL_VERSION = 1
# Clients only send tiny control messages; anything bigger is abuse or a bug.
MAX_CLIENT_MESSAGE_BYTES = 4096


Message = dict[str, Any]


def jsonable(value: Any) -> Any:
    """Plain JSON values: numpy scalars/arrays unwrapped, NaN/inf -> None, enums -> value."""
    if isinstance(value, float | np.floating):
        as_float = float(value)
        return as_float if math.isfinite(as_float) else None
    if isinstance(value, bool | np.bool_):
        return bool(value)
    if isinstance(value, int | np.integer):
        return int(value)
    if isinstance(value, np.ndarray):
        return [jsonable(item) for item in value.tolist()]
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(item) for item in value]
    if hasattr(value, "value") and isinstance(value.value, str):  # StrEnum members
        return value.value
    return value


def make_message(msg_type: str, *, session: str, t: float, **fields: Any) -> Message:
    """A protocol message with the required header fields first."""
    message: Message = {"v": PROTOCOL_VERSION, "type": msg_type, "session": session, "t": t}
    message.update(fields)
    return jsonable(message)


def encode(message: Message) -> str:
    """Compact JSON; raises ProtocolError rather than emitting NaN/Infinity."""
    try:
        return json.dumps(message, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError) as exc:
        kind = message.get("type")
        raise ProtocolError(f"message of type {kind!r} is not JSON-safe: {exc}") from None


def decode_client_message(raw: str | bytes) -> Message:
    """Parse and validate a message a client sent; ProtocolError says what is wrong."""
    size = len(raw.encode() if isinstance(raw, str) else raw)
    if size > MAX_CLIENT_MESSAGE_BYTES:
        raise ProtocolError(
            f"message of {size} bytes exceeds the {MAX_CLIENT_MESSAGE_BYTES}-byte limit"
        )
    try:
        message = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise ProtocolError("message is not valid JSON") from None
    if not isinstance(message, dict):
        raise ProtocolError("message is not a JSON object")
    if "v" not in message:
        raise ProtocolError(f"message has no 'v' field; send \"v\": {PROTOCOL_VERSION}")
    if message.get("v") != PROTOCOL_VERSION:
        raise ProtocolError(
            f"unsupported protocol version {message.get('v')!r}; "
            f"this server speaks v={PROTOCOL_VERSION}"
        )
    if not isinstance(message.get("type"), str):
        raise ProtocolError("message has no string 'type' field")
    return message


class MessageFactory:
    """Builds messages for one session, stamping ``t`` from the injected LSL clock."""

    __slots__ = ("_clock", "session")

    def __init__(self, *, session: str, clock: Callable[[], float]) -> None:
        self.session = session
        self._clock = clock

    def __call__(self, msg_type: str, *, t: float | None = None, **fields: Any) -> Message:
        return make_message(
            msg_type, session=self.session, t=self._clock() if t is None else t, **fields
        )

    def now(self) -> float:
        """The current time on the session's (LSL) clock."""
        return self._clock()

    def error(self, code: str, detail: str) -> Message:
        return self("error", code=code, detail=detail)


def sync_fields(update: SyncUpdate) -> dict[str, Any]:
    """The protocol's ``sync`` fields for one engine update (names in docs/protocol.md)."""
    return {
        "estimate": update.estimate_valid,
        "reason": update.reason or None,
        "r": update.r_lag0,
        "z": update.peak_z,
        "z_lag0": update.z_lag0,
        "trough_z": update.trough_z,
        "best_lag_s": update.best_lag_s,
        "leader": update.leader or None,
        "null_z": update.surrogate_z,
        "p": update.p_value,
        "anti_null_z": update.anti_surrogate_z,
        "anti_p": update.anti_p_value,
        "concordance": update.concordance,
        "state": update.state or None,
        "window_center_s": update.window_center_s,
    }


def episode_fields(event: EpisodeEvent) -> dict[str, Any]:
    """The protocol's ``episode`` fields for one engine event."""
    return {
        "event": event.kind.value,
        "state": event.state.value,
        "leader": event.leader or None,
        "onset_s": event.onset_s,
        "reason": event.reason or None,
    }

"""The session recorder: every raw stream and every result of a session in one XDF file.

The service hands it raw chunks (:meth:`SessionRecorder.record_raw`) and the protocol
messages it publishes (:meth:`SessionRecorder.record_message`); both only enqueue, so
the event loop never waits on the disk. A background thread owns the
:class:`~streamer.xdf_writer.XdfWriter`: it turns each item into samples of the streams
of ``docs/recording.md``, ticks the writer (flush each 0.5 s, ClockOffset each 5 s,
Boundary each 10 s, fsync each 5 s) and closes it with the footers.

When the disk fills or fails the writer raises; the thread then stops recording (the
file up to the failure stays readable, ``dyadsync repair`` adds the footers) and posts an
alarm that the service publishes within one loop step. The live session goes on.
"""

from __future__ import annotations

import json
import logging
import math
import queue
import threading
import xml.etree.ElementTree as ET
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Final

import numpy as np

from server.protocol import Message, encode
from streamer.errors import RecordingError
from streamer.inlet import RawChunk
from streamer.xdf_format import EVENTS_STREAM, SESSION_STREAM
from streamer.xdf_writer import XdfWriter, recording_path

log = logging.getLogger(__name__)

# Channels of a ``sync`` stream, in order (docs/recording.md).
SYNC_CHANNELS: Final = (
    "estimate",
    "r",
    "z",
    "z_lag0",
    "trough_z",
    "best_lag_s",
    "null_z",
    "p",
    "anti_null_z",
    "anti_p",
    "concordance",
    "window_center_s",
    "state",
    "leader",
)
STATE_CODES: Final = {None: 0.0, "decoupled": 1.0, "coupled": 2.0, "anti_phase": 3.0}
LEADER_CODES: Final = {None: 0.0, "therapist": 1.0, "client": 2.0}

# Message types kept as JSON samples of a string stream: type -> stream name.
_STRING_STREAMS: Final = {
    "status": EVENTS_STREAM,
    "recording": EVENTS_STREAM,
    "episode": "dyadsync-episodes",
    "marker": "dyadsync-markers",
}
_PHYSIO_TYPE: Final = {"hr": "HR", "scl": "EDA", "phasic": "EDA"}
# How often the thread ticks the writer (its own cadences are 0.5 s and up).
_TICK_S: Final = 0.1
_NOTHING: Final[Message] = {}


def resolve_target(target: Path, *, room: str, started_utc: datetime) -> Path:
    """The file to record into: ``target`` itself, or a new file named after the room and
    the start time when ``target`` is an existing directory. Raises RecordingError when
    the file exists already (recordings are never overwritten) or its folder is missing."""
    path = recording_path(target, room=room, started_utc=started_utc) if target.is_dir() else target
    if path.exists():
        raise RecordingError(
            f"{path}: a file of that name already exists; recordings are never overwritten "
            "(give --record a new file name or a directory)"
        )
    if not path.parent.is_dir():
        raise RecordingError(
            f"{path}: folder {path.parent} does not exist; create it or give --record another path"
        )
    return path


@dataclass(frozen=True, slots=True, kw_only=True)
class RecordingSummary:
    """What a finished recording holds, for the run summary and the session store."""

    path: Path
    bytes_written: int
    samples: dict[str, int]
    failure: str | None
    items_lost: int

    def format(self) -> str:
        lines = [f"Recording: {self.path} ({self.bytes_written / 1e6:.1f} MB)"]
        if self.failure is not None:
            lines.append(f"  recording STOPPED early: {self.failure}")
        if self.items_lost:
            lines.append(f"  {self.items_lost} items could not be recorded (see above)")
        return "\n".join(lines)


@dataclass(frozen=True, slots=True)
class _Raw:
    key: str
    desc: Mapping[str, str]
    chunk: RawChunk


@dataclass(slots=True)
class _State:
    """Writer-side bookkeeping (only the recorder thread touches it)."""

    stream_ids: dict[str, int] = field(default_factory=dict)
    raw_segments: dict[str, int] = field(default_factory=dict)
    raw_samples: dict[str, int] = field(default_factory=dict)


class SessionRecorder:
    """Records one session; construct (opens the file), feed, :meth:`close`."""

    __slots__ = (
        "_alarms",
        "_clock",
        "_failure",
        "_grid_hz",
        "_items",
        "_lost",
        "_state",
        "_step_s",
        "_thread",
        "_writer",
        "path",
    )

    def __init__(
        self,
        *,
        path: Path,
        session_info: Mapping[str, Any],
        grid_hz: float,
        step_s: float,
        started_utc: datetime,
        clock: Callable[[], float],
        max_queue_items: int = 50_000,
    ) -> None:
        """Create the file now (RecordingError if it cannot be) and start the writer
        thread. ``session_info`` (JSON-able: room, roles, version, settings) becomes the
        one sample of the ``dyadsync-session`` stream."""
        self.path = path
        self._clock = clock
        self._grid_hz = grid_hz
        self._step_s = step_s
        self._writer = XdfWriter.open(path, started_utc=started_utc)
        self._state = _State()
        # Bounded: at ~50 items/s this is a quarter of an hour of a stalled disk.
        self._items: queue.Queue[_Raw | Message | None] = queue.Queue(maxsize=max_queue_items)
        self._alarms: queue.SimpleQueue[tuple[str, str]] = queue.SimpleQueue()
        self._failure: str | None = None
        self._lost = 0
        info_json = json.dumps(dict(session_info), sort_keys=True, allow_nan=False)
        self._string_sample(SESSION_STREAM, "SessionInfo", clock(), info_json)
        self._thread = threading.Thread(target=self._run, name="dyadsync-recorder", daemon=True)
        self._thread.start()

    # -- caller's side (event loop): never blocks ---------------------------------------

    def record_raw(self, *, key: str, desc: Mapping[str, str], chunk: RawChunk) -> None:
        """Queue a raw chunk of the stream ``key`` (e.g. ``therapist-ecg``)."""
        self._put(_Raw(key, desc, chunk))

    def record_message(self, message: Message) -> None:
        """Queue a published protocol message (types the file does not keep are ignored)."""
        if message.get("type") in ("physio", "sync") or message.get("type") in _STRING_STREAMS:
            self._put(message)

    def alarms(self) -> list[tuple[str, str]]:
        """``(state, detail)`` of problems since the last call; never blocks. ``state`` is
        "failed" (nothing more is recorded) or "lagging" (items are being lost)."""
        found = []
        while True:
            try:
                found.append(self._alarms.get_nowait())
            except queue.Empty:
                return found

    def close(self) -> RecordingSummary:
        """Write what is queued, the footers, and close the file (waits for the thread).
        Idempotent."""
        if self._thread.is_alive():
            self._items.put(None)
            self._thread.join()
        return RecordingSummary(
            path=self.path,
            bytes_written=self._writer.bytes_written,
            samples=dict(self._state.raw_samples),
            failure=self._failure,
            items_lost=self._lost,
        )

    def _put(self, item: _Raw | Message) -> None:
        if self._failure is not None:
            return  # already alarmed: the recording has stopped
        try:
            self._items.put_nowait(item)
        except queue.Full:
            self._lost += 1
            if self._lost == 1:
                self._alarms.put(
                    (
                        "lagging",
                        "recording cannot keep up with the session (the disk is too slow); "
                        "items are being lost from the recording",
                    )
                )

    # -- recorder thread ------------------------------------------------------------------

    def _run(self) -> None:
        next_tick = -math.inf
        while True:
            try:
                item = self._items.get(timeout=_TICK_S)
            except queue.Empty:
                item = _NOTHING  # nothing new: the writer still has to be ticked
            if item is None:
                break
            if self._failure is not None:
                continue  # drain the queue; the caller stops feeding after the alarm
            try:
                if item is not _NOTHING:
                    self._write_item(item)
                now = self._clock()
                if now >= next_tick:
                    self._writer.tick(now)
                    next_tick = now + _TICK_S
            except RecordingError as exc:
                self._fail(str(exc))
        try:
            self._writer.close()
        except RecordingError as exc:
            self._fail(str(exc))

    def _fail(self, detail: str) -> None:
        if self._failure is None:
            self._failure = detail
            # The path and the OS error only: no sample values in logs.
            log.error("recording stopped: %s", detail)
            self._alarms.put(
                ("failed", f"recording stopped: {detail}; the session goes on unrecorded")
            )

    def _write_item(self, item: _Raw | Message) -> None:
        if isinstance(item, _Raw):
            self._write_raw(item)
            return
        kind = item["type"]
        if kind == "physio":
            self._write_physio(item)
        elif kind == "sync":
            self._write_sync(item)
        else:
            text = encode(item)
            self._string_sample(_STRING_STREAMS[kind], "Markers", float(item["t"]), text)

    def _write_raw(self, item: _Raw) -> None:
        state = self._state
        stream_id = state.stream_ids.get(item.key)
        if stream_id is None:
            stream_id = self._writer.add_lsl_stream(
                item.chunk.header_xml, name=item.key, dyadsync=item.desc
            )
            state.stream_ids[item.key] = stream_id
            state.raw_segments[item.key] = item.chunk.segment
            state.raw_samples[item.key] = 0
        chunk = item.chunk
        if chunk.segment != state.raw_segments[item.key]:
            # Sample-exact segment starts, so a replay restores them (docs/recording.md).
            state.raw_segments[item.key] = chunk.segment
            marker = {
                "event": "segment",
                "stream": item.key,
                "segment": chunk.segment,
                "first_sample": state.raw_samples[item.key],
            }
            stamp = float(chunk.timestamps_s[0])
            self._string_sample(EVENTS_STREAM, "Markers", stamp, json.dumps(marker))
        self._writer.push(stream_id, chunk.timestamps_s, chunk.data)
        state.raw_samples[item.key] += int(chunk.timestamps_s.shape[0])

    def _numeric_stream(
        self,
        name: str,
        *,
        type_: str,
        labels: tuple[str, ...],
        rate: float,
        dyadsync: Mapping[str, str],
    ) -> int:
        stream_id = self._state.stream_ids.get(name)
        if stream_id is None:
            stream_id = self._writer.add_stream(
                name=name,
                type=type_,
                channel_count=len(labels),
                nominal_srate=rate,
                channel_format="double64",
                desc=_channels_desc(labels),
                dyadsync=dyadsync,
            )
            self._state.stream_ids[name] = stream_id
        return stream_id

    def _write_physio(self, message: Message) -> None:
        role, signal = message["role"], message["signal"]
        stream_id = self._numeric_stream(
            f"dyadsync-{role}-{signal}",
            type_=_PHYSIO_TYPE.get(signal, "Physio"),
            labels=("value", "valid"),
            rate=self._grid_hz,
            dyadsync={"kind": "physio", "role": role, "signal": signal},
        )
        values = np.array(message["values"], dtype=np.float64)  # None -> NaN
        valid = np.array(message["valid"], dtype=np.float64)
        self._writer.push(stream_id, message["t_s"], np.column_stack([values, valid]))

    def _write_sync(self, message: Message) -> None:
        signal = message["signal"]
        stream_id = self._numeric_stream(
            f"dyadsync-sync-{signal}",
            type_="Synchrony",
            labels=SYNC_CHANNELS,
            rate=1.0 / self._step_s,
            dyadsync={"kind": "sync", "signal": signal},
        )
        self._writer.push(stream_id, [float(message["t"])], [sync_row(message)])

    def _string_sample(self, name: str, type_: str, t_s: float, text: str) -> None:
        stream_id = self._state.stream_ids.get(name)
        if stream_id is None:
            kind = name.removeprefix("dyadsync-")
            stream_id = self._writer.add_stream(
                name=name,
                type=type_,
                channel_count=1,
                nominal_srate=0.0,
                channel_format="string",
                dyadsync={"kind": kind},
            )
            self._state.stream_ids[name] = stream_id
        self._writer.push(stream_id, [t_s], [[text]])


def sync_row(message: Message) -> list[float]:
    """A ``sync`` message as the channels of a recorded sync stream (NaN for null)."""
    row = []
    for name in SYNC_CHANNELS:
        value = message.get(name)
        if name == "state":
            row.append(STATE_CODES.get(value, math.nan))
        elif name == "leader":
            row.append(LEADER_CODES.get(value, math.nan))
        elif name == "estimate":
            row.append(1.0 if value else 0.0)
        else:
            row.append(math.nan if value is None else float(value))
    return row


def _channels_desc(labels: tuple[str, ...]) -> ET.Element:
    desc = ET.Element("desc")
    channels = ET.SubElement(desc, "channels")
    for label in labels:
        ET.SubElement(ET.SubElement(channels, "channel"), "label").text = label
    return desc

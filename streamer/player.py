"""The XDF player: a recording replayed into the pipeline, or re-published as LSL outlets.

:func:`open_replay` reads a recording (dyadsync's own, see ``docs/recording.md``, or a
LabRecorder file of other tools' streams mapped to roles by a session TOML) into one
:class:`RecordedStream` per sensor and returns a :class:`Replay`: one :class:`ReplaySource`
per stream (the service's ``FrameSource``: ``role``, ``signal``, ``rate_hz``, ``poll()``,
``close()``), all driven by one shared :class:`ReplayClock`.

Scheduling. Each stream is cut into chunks of about ``chunk_s`` of data (never across a
segment start). At a finite ``speed`` a chunk is due when the wall time reaches
``start + (t_last - t0) / speed``, ``t_last`` being its last sample's time and ``t0`` the
recording's first: targets are absolute, so a poll that wakes late releases everything
due at once (catches up) and error never accumulates. At ``speed=math.inf`` the clock
has no wall time: a playback cursor advances by at most ``max_speed_step_s`` of recording
per poll, from the earliest data still pending, so every consumer poll does bounded work
and the streams come out interleaved in time order (what a live session would see, give or
take the step; the step stays well below the pipeline aligner's 10 s wait).

Live and replay share the processing: a :class:`ReplaySource` hands out the same
:class:`~dsp.types.Frame` objects an inlet would, converted by the same device config,
with the recorded segments, so ``dsp`` cannot tell them apart. :class:`ReplayPublisher`
(``--lsl``) instead re-creates LSL outlets with the recorded headers and pushes the raw
samples on the same schedule.
"""

from __future__ import annotations

import itertools
import json
import logging
import math
import threading
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pylsl

from dsp.exceptions import ConfigError
from dsp.types import FloatArray, Frame, IntArray, Role, SignalKind, StatusEvent, StatusKind
from streamer.clock import ClockConfig, find_clock_breaks
from streamer.devices import (
    DeviceConfig,
    StreamMeta,
    device_config_by_name,
    sample_counters,
    stream_meta,
)
from streamer.errors import RecordingError
from streamer.inlet import check_stream
from streamer.session import SensorSource, SessionConfig, parse_session
from streamer.xdf_format import EVENTS_STREAM, SESSION_STREAM
from streamer.xdf_read import load_recording

log = logging.getLogger(__name__)

__all__ = [
    "RecordedStream",
    "Replay",
    "ReplayClock",
    "ReplayPublisher",
    "ReplaySource",
    "Span",
    "StreamHeader",
    "open_replay",
    "outlet_info",
    "publish_replay",
]

#: Data per released chunk: the live simulator's and most devices' packet rhythm.
DEFAULT_CHUNK_S = 0.1
#: Recording time released per poll at max speed (bounded work; far below the aligner's
#: 10 s wait, so both people's series meet as they would live).
DEFAULT_MAX_SPEED_STEP_S = 1.0


# ---------------------------------------------------------------------------------------
# reading


class _DropPlaceholderSegmentWarning(logging.Filter):
    """pyxdf warns "Segments and clock-segments differ" for every stream when dejittering
    is off (its segment list is then only a placeholder); the warning says nothing about
    the file, and would greet every replay."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "Segments and clock-segments differ" not in record.getMessage()


logging.getLogger("pyxdf.pyxdf").addFilter(_DropPlaceholderSegmentWarning())


def _load_xdf(path: Path) -> list[dict[str, Any]]:
    """pyxdf's stream dicts for ``path``, clock offsets applied, time stamps as recorded.

    No dejittering: our files hold the already-dejittered session-clock stamps, and
    foreign files get the live inlet's own dejitter below. A damaged file replays its
    readable part, with a warning that says where it broke.
    """
    if not path.is_file():
        raise RecordingError(f"{path}: no such file; give the path of an .xdf recording")
    recording = load_recording(path, synchronize_clocks=True, dejitter_timestamps=False)
    if recording.problem is not None:
        log.warning(
            "%s is damaged at byte %d (%s); replaying the part before it "
            "(`dyadsync repair` writes a complete copy)",
            path,
            recording.problem.offset,
            recording.problem.reason,
        )
    return list(recording.streams)


@dataclass(frozen=True, slots=True)
class StreamHeader:
    """A recorded stream's ``<info>`` header as XML (what the outlet declared, minus the
    fields that may name a person or a machine)."""

    xml: str

    def as_xml(self) -> str:
        return self.xml


def _element(tag: str, value: Any) -> ET.Element:
    """pyxdf's dict-of-lists form of an XML element back into the element."""
    element = ET.Element(tag)
    if isinstance(value, Mapping):
        for child_tag, children in value.items():
            for child in children:
                element.append(_element(child_tag, child))
    elif value is not None:
        element.text = str(value)
    return element


# Header fields kept: enough to re-create the outlet; hostname and the like are dropped
# because they may name a person (docs/recording.md).
_HEADER_FIELDS = ("name", "type", "channel_count", "nominal_srate", "channel_format", "source_id")


def _header(info: Mapping[str, Any]) -> StreamHeader:
    root = ET.Element("info")
    for key in _HEADER_FIELDS:
        values = info.get(key) or [""]
        ET.SubElement(root, key).text = str(values[0] or "")
    desc = (info.get("desc") or [None])[0]
    root.append(_element("desc", desc))
    return StreamHeader(ET.tostring(root, encoding="unicode"))


@dataclass(frozen=True, kw_only=True, slots=True)
class RecordedStream:
    """One sensor's raw stream as recorded, ready to replay.

    ``raw`` holds every channel in device units, in the recorded numeric type (so
    republished samples are bit-identical); ``timestamps_s`` are on the session clock.
    ``segment_starts`` are the sample indices where segments begin (the first is 0) and
    ``segment_numbers`` their numbers (``Frame.segment``). ``value_channel`` and
    ``counter_channel`` index ``raw``'s columns.
    """

    role: Role
    signal: SignalKind
    header: StreamHeader
    meta: StreamMeta
    device: DeviceConfig
    timestamps_s: FloatArray
    raw: npt.NDArray[Any]
    value_channel: int
    counter_channel: int | None
    segment_starts: IntArray
    segment_numbers: IntArray

    def __post_init__(self) -> None:
        n = self.timestamps_s.shape[0]
        if self.raw.ndim != 2 or self.raw.shape[0] != n:
            raise RecordingError(f"{self.meta.name}: {self.raw.shape} samples for {n} time stamps")
        starts = self.segment_starts
        if (
            starts.shape != self.segment_numbers.shape
            or starts.shape[0] == 0
            or starts[0] != 0
            or np.any(np.diff(starts) <= 0)
            or (n > 0 and starts[-1] >= n)
        ):
            raise RecordingError(
                f"{self.meta.name}: segment starts {starts.tolist()[:10]} must begin at 0 and "
                f"increase within the {n} samples"
            )

    @property
    def rate_hz(self) -> float:
        """Nominal rate, as the live inlet judges it (device config first, else declared)."""
        return self.device.spec(self.signal).rate_hz(self.meta)

    @property
    def key(self) -> str:
        return f"{self.role.value}-{self.signal.value}"


def _desc(info: Mapping[str, Any]) -> Mapping[str, Any]:
    desc = (info.get("desc") or [None])[0]
    return desc if isinstance(desc, Mapping) else {}


def _dyadsync_desc(info: Mapping[str, Any]) -> dict[str, str]:
    """The ``<dyadsync>`` element's leaves (empty for other tools' streams)."""
    ours = (_desc(info).get("dyadsync") or [None])[0]
    if not isinstance(ours, Mapping):
        return {}
    return {key: str(values[0] or "") for key, values in ours.items() if values}


def _first(info: Mapping[str, Any], key: str) -> str:
    return str((info.get(key) or [""])[0] or "")


def _numeric(stream: Mapping[str, Any]) -> bool:
    return _first(stream["info"], "channel_format") not in ("string", "")


def _segment_events(
    path: Path, streams: Sequence[Mapping[str, Any]]
) -> dict[str, list[tuple[int, int]]]:
    """``stream name -> [(first_sample, segment)]`` from our events stream."""
    found: dict[str, list[tuple[int, int]]] = {}
    for stream in streams:
        info = stream["info"]
        if _first(info, "name") != EVENTS_STREAM and _dyadsync_desc(info).get("kind") != "events":
            continue
        for index, sample in enumerate(stream["time_series"]):
            text = sample[0] if sample else ""
            try:
                event = json.loads(text)
            except json.JSONDecodeError:
                raise RecordingError(
                    f"{path}: sample {index} of {EVENTS_STREAM} is not JSON; "
                    "the file is damaged (try `dyadsync repair`)"
                ) from None
            if not isinstance(event, dict) or event.get("event") != "segment":
                continue
            try:
                entry = (int(event["first_sample"]), int(event["segment"]))
                found.setdefault(str(event["stream"]), []).append(entry)
            except (KeyError, TypeError, ValueError):
                raise RecordingError(
                    f"{path}: segment event {index} of {EVENTS_STREAM} lacks a valid "
                    f"stream / segment / first_sample: {text[:200]}"
                ) from None
    return found


def _session_info(streams: Sequence[Mapping[str, Any]]) -> Mapping[str, Any]:
    for stream in streams:
        info = stream["info"]
        if _first(info, "name") == SESSION_STREAM or _dyadsync_desc(info).get("kind") == "session":
            for sample in stream["time_series"]:
                try:
                    parsed = json.loads(sample[0])
                except (json.JSONDecodeError, IndexError, TypeError):
                    continue  # the session record is a convenience; roles come from desc
                if isinstance(parsed, dict):
                    return parsed
    return {}


def _channel(ours: Mapping[str, str], key: str, path: Path, name: str) -> int | None:
    text = ours.get(key, "")
    if text == "":
        return None
    try:
        return int(text)
    except ValueError:
        raise RecordingError(
            f"{path}: stream {name!r} has <dyadsync><{key}> {text!r}, not a channel index"
        ) from None


def _our_streams(
    path: Path, streams: Sequence[Mapping[str, Any]], session: SessionConfig | None
) -> list[RecordedStream]:
    """Raw streams of a dyadsync recording, by their ``<dyadsync>`` desc."""
    segments = _segment_events(path, streams)
    wanted = None if session is None else set(session.signals)
    recorded: list[RecordedStream] = []
    for stream in streams:
        info = stream["info"]
        ours = _dyadsync_desc(info)
        if ours.get("kind") != "raw":
            continue
        name = _first(info, "name")
        try:
            role, signal = Role(ours.get("role", "")), SignalKind(ours.get("signal", ""))
        except ValueError:
            raise RecordingError(
                f"{path}: raw stream {name!r} has role {ours.get('role')!r} / signal "
                f"{ours.get('signal')!r}; allowed: {[r.value for r in Role]} / "
                f"{[s.value for s in SignalKind]}"
            ) from None
        if wanted is not None and signal not in wanted:
            continue
        device = _our_device(path, name, ours, session, role, signal)
        header = _header(info)
        meta = stream_meta(header)
        value_channel = _channel(ours, "value_channel", path, name)
        if value_channel is None:
            value_channel = device.spec(signal).find_channel(meta)
        if value_channel is None or value_channel >= meta.channel_count:
            raise RecordingError(f"{path}: stream {name!r} has no usable value channel")
        counter = _channel(ours, "counter_channel", path, name)
        stamps = np.asarray(stream["time_stamps"], dtype=np.float64)
        starts = sorted(segments.get(name, []))
        if any(not 0 < first < stamps.shape[0] for first, _ in starts):
            raise RecordingError(
                f"{path}: a segment event of {name!r} starts outside its "
                f"{stamps.shape[0]} samples: {starts[:10]}"
            )
        recorded.append(
            RecordedStream(
                role=role,
                signal=signal,
                header=header,
                meta=meta,
                device=device,
                timestamps_s=stamps,
                raw=_raw(stream, meta),
                value_channel=value_channel,
                counter_channel=counter,
                segment_starts=np.array([0, *(f for f, _ in starts)], dtype=np.int64),
                segment_numbers=np.array([0, *(s for _, s in starts)], dtype=np.int64),
            )
        )
    return recorded


def _our_device(
    path: Path,
    name: str,
    ours: Mapping[str, str],
    session: SessionConfig | None,
    role: Role,
    signal: SignalKind,
) -> DeviceConfig:
    """The session's device config for the sensor if given, else the recorded one by name
    (a custom device file is not in the recording: the session TOML must then be given)."""
    if session is not None:
        try:
            return session.sensor(role, signal).device
        except KeyError:
            pass
    recorded = ours.get("device_config", "")
    try:
        return device_config_by_name(recorded)
    except ConfigError as exc:
        raise ConfigError(
            f"{path}: stream {name!r} was recorded with device config {recorded!r}, which is "
            f"not available ({exc.detail}); pass the session TOML used for the recording"
        ) from None


def _raw(stream: Mapping[str, Any], meta: StreamMeta) -> npt.NDArray[Any]:
    series = np.asarray(stream["time_series"])
    if series.ndim == 1:
        series = series.reshape(-1, max(meta.channel_count, 1))
    return series


def _foreign_streams(
    path: Path, streams: Sequence[Mapping[str, Any]], session: SessionConfig
) -> list[RecordedStream]:
    """Other tools' streams mapped to the session's sensors (``SensorSource.accepts``)."""
    candidates = [(s, stream_meta(_header(s["info"]))) for s in streams if _numeric(s)]
    seen = (
        ", ".join(
            f"(type {m.type!r}, source_id {m.source_id!r}, {m.channel_count} ch, "
            f"{m.nominal_srate_hz:g} Hz)"
            for _, m in candidates
        )
        or "none"
    )
    recorded: list[RecordedStream] = []
    for sensor in session.sensors:
        matching = [(s, m) for s, m in candidates if sensor.accepts(m)]
        key = f"{sensor.role.value}.{sensor.signal.value}"
        if not matching:
            raise ConfigError(
                f"recording {path} has no stream for {sensor.describe()}; numeric streams in "
                f"the file: {seen}",
                path=session.source,
                key=key,
            )
        if len(matching) > 1:
            ids = ", ".join(repr(m.source_id) for _, m in matching)
            raise ConfigError(
                f"recording {path} has {len(matching)} streams for {sensor.describe()} "
                f"(source_ids {ids}); give a source_id or a narrower name to pick one",
                path=session.source,
                key=key,
            )
        stream, meta = matching[0]
        problem = check_stream(meta, sensor.device, sensor.signal)
        if problem is not None:
            raise ConfigError(
                f"recording {path}: the stream for {sensor.describe()} cannot be used: {problem}",
                path=session.source,
                key=key,
            )
        recorded.append(_foreign_stream(stream, meta, sensor))
    return recorded


def _foreign_stream(
    stream: Mapping[str, Any], meta: StreamMeta, sensor: SensorSource
) -> RecordedStream:
    """Segments and time stamps treated as the live inlet would: clock resets (pyxdf's
    clock segments) and timestamp jumps start segments; stamps dejittered per segment."""
    spec = sensor.device.spec(sensor.signal)
    stamps = np.asarray(stream["time_stamps"], dtype=np.float64)
    raw = _raw(stream, meta)
    timed = np.isfinite(stamps)
    if not timed.all():  # the inlet drops samples it cannot place in time
        stamps, raw = stamps[timed], raw[timed]
    clock = ClockConfig()
    starts = {0}
    if timed.all():
        starts.update(int(first) for first, _last in stream["info"].get("clock_segments", []))
    starts.update(
        find_clock_breaks(
            stamps,
            previous_s=None,
            arrival_advance_s=0.0,
            backward_jump_s=clock.backward_jump_s,
            forward_jump_s=clock.forward_jump_s,
        )
    )
    ordered = sorted(s for s in starts if s < max(stamps.shape[0], 1))
    rate_hz = spec.rate_hz(meta)
    smoothed = np.empty_like(stamps)
    for start, stop in itertools.pairwise([*ordered, stamps.shape[0]]):
        dejitter = clock.dejitter(rate_hz=rate_hz, chunk_samples=spec.chunk_samples)
        smoothed[start:stop] = dejitter.push(stamps[start:stop])
    channel = spec.find_channel(meta)
    assert channel is not None  # check_stream guaranteed it
    return RecordedStream(
        role=sensor.role,
        signal=sensor.signal,
        header=_header(stream["info"]),
        meta=meta,
        device=sensor.device,
        timestamps_s=smoothed,
        raw=raw,
        value_channel=channel,
        counter_channel=spec.counter_channel_index,
        segment_starts=np.array(ordered, dtype=np.int64),
        segment_numbers=np.arange(len(ordered), dtype=np.int64),
    )


def _rebuilt_session(
    path: Path, recorded: Sequence[RecordedStream], info: Mapping[str, Any]
) -> SessionConfig:
    """The session to analyse our recording with when no TOML is given: its raw streams'
    roles, signals and device configs, and the recorded room and synchrony settings."""
    signals = sorted({s.signal for s in recorded}, key=list(SignalKind).index)
    data: dict[str, Any] = {
        "session": {
            "room": str(info.get("room") or path.stem),
            "signals": [s.value for s in signals],
        }
    }
    for stream in recorded:
        table = {"device": stream.device.name}
        if stream.meta.source_id:
            table["source_id"] = stream.meta.source_id
        data.setdefault(stream.role.value, {})[stream.signal.value] = table
    synchrony = info.get("synchrony")
    if isinstance(synchrony, Mapping):
        data["synchrony"] = dict(synchrony)
    try:
        return parse_session(data, source=f"{path} (recorded session)")
    except ConfigError as exc:
        raise ConfigError(
            f"{exc}; pass the session TOML to replay this recording with", path=str(path)
        ) from None


# ---------------------------------------------------------------------------------------
# scheduling


class ReplayClock:
    """The playback position shared by a replay's sources.

    ``clock`` is a monotonic wall clock in seconds (injected: tests drive it by hand). The
    replay starts at the first :meth:`position_s` call, so slow setup does not count as
    lateness.
    """

    __slots__ = ("_clock", "_cursor_s", "_start_wall_s", "max_speed_step_s", "speed", "t0_s")

    def __init__(
        self,
        *,
        speed: float,
        t0_s: float,
        clock: Callable[[], float] = time.monotonic,
        max_speed_step_s: float = DEFAULT_MAX_SPEED_STEP_S,
    ) -> None:
        if not (speed > 0) or math.isnan(speed):
            raise ConfigError(f"replay speed {speed!r} is not allowed; allowed: > 0 or inf (max)")
        if not (math.isfinite(max_speed_step_s) and max_speed_step_s > 0):
            raise ConfigError(
                f"max_speed_step_s {max_speed_step_s!r} is not allowed; allowed: finite, > 0"
            )
        self.speed = speed
        self.t0_s = t0_s
        self.max_speed_step_s = max_speed_step_s
        self._clock = clock
        self._start_wall_s: float | None = None
        self._cursor_s = -math.inf

    @property
    def max_speed(self) -> bool:
        return math.isinf(self.speed)

    @property
    def started(self) -> bool:
        return self._start_wall_s is not None

    def now(self) -> float:
        return self._clock()

    def position_s(self) -> float:
        """Recording time up to which data is due now."""
        if self.max_speed:
            return self._cursor_s
        if self._start_wall_s is None:
            self._start_wall_s = self._clock()
        return self.t0_s + (self._clock() - self._start_wall_s) * self.speed

    def due_at(self, t_s: float) -> float:
        """Wall time at which recording time ``t_s`` is due (finite speed, once started)."""
        if self._start_wall_s is None or self.max_speed:
            raise RuntimeError("due_at() needs a started replay at a finite speed")
        return self._start_wall_s + (t_s - self.t0_s) / self.speed

    def advance(self, earliest_pending_s: float) -> None:
        """Max speed: release the next ``max_speed_step_s`` of recording after the earliest
        data still pending (gaps in the recording are skipped, not waited out)."""
        self._cursor_s = max(self._cursor_s, earliest_pending_s) + self.max_speed_step_s


@dataclass(frozen=True, slots=True)
class Span:
    """Released samples ``start:stop`` of a stream, all in segment ``segment``."""

    start: int
    stop: int
    segment: int


def _chunk_ends(stream: RecordedStream, chunk_s: float) -> IntArray:
    """Exclusive end index of each chunk: ``chunk_s`` of data (by the nominal rate, by time
    for irregular streams), restarted at every segment start so no chunk spans one."""
    n = stream.timestamps_s.shape[0]
    bounds = [*stream.segment_starts.tolist(), n]
    rate = stream.rate_hz
    ends: list[IntArray] = []
    for start, stop in itertools.pairwise(bounds):
        if rate > 0:
            size = max(1, round(chunk_s * rate))
            ends.append(np.arange(start + size, stop, size, dtype=np.int64))
        else:
            t = stream.timestamps_s[start:stop]
            grid = np.arange(t[0] + chunk_s, t[-1], chunk_s) if stop > start else np.empty(0)
            ends.append(start + np.unique(np.searchsorted(t, grid, side="right")).astype(np.int64))
        ends.append(np.array([stop], dtype=np.int64))
    merged = np.concatenate(ends) if ends else np.empty(0, dtype=np.int64)
    return np.unique(merged[merged > 0])


class ReplaySource:
    """One recorded stream as a ``FrameSource``: :meth:`poll` returns what is due.

    Made by :func:`open_replay` (all sources of a replay share its :class:`ReplayClock`).
    Use either :meth:`poll` (frames in canonical units) or :meth:`take` (raw sample
    ranges, for re-publishing), not both.
    """

    __slots__ = (
        "_announced",
        "_clock",
        "_counters",
        "_done",
        "_ends",
        "_keys",
        "_peers",
        "_segment",
        "_values",
        "chunk_samples",
        "stream",
    )

    def __init__(
        self,
        *,
        stream: RecordedStream,
        clock: ReplayClock,
        peers: list[ReplaySource],
        chunk_s: float = DEFAULT_CHUNK_S,
    ) -> None:
        self.stream = stream
        self._clock = clock
        self._peers = peers  # every source of the replay (this one included), for max speed
        self._ends = _chunk_ends(stream, chunk_s)
        # A chunk is due at its last sample's time; the running maximum keeps release times
        # ordered across a backward clock break (those samples then play at once).
        times = stream.timestamps_s
        self._keys = np.maximum.accumulate(times)[self._ends - 1] if times.shape[0] else np.empty(0)
        self._done = 0  # chunks released so far
        self.chunk_samples = max(1, round(chunk_s * stream.rate_hz)) if stream.rate_hz > 0 else 0
        self._values: FloatArray | None = None
        self._counters: IntArray | None = None
        self._announced = False
        self._segment = int(stream.segment_numbers[0])

    @property
    def role(self) -> Role:
        return self.stream.role

    @property
    def signal(self) -> SignalKind:
        return self.stream.signal

    @property
    def rate_hz(self) -> float:
        return self.stream.rate_hz

    @property
    def finished(self) -> bool:
        return self._done >= self._ends.shape[0]

    def next_key_s(self) -> float:
        """Recording time at which the next chunk is due (inf when drained)."""
        return float(self._keys[self._done]) if not self.finished else math.inf

    def take(self) -> list[Span]:
        """Raw sample ranges that became due since the last call (never blocks)."""
        if self.finished:
            return []
        position = self._clock.position_s()
        if self._clock.max_speed and self.next_key_s() > position:
            self._clock.advance(min(peer.next_key_s() for peer in self._peers))
            position = self._clock.position_s()
        due = int(np.searchsorted(self._keys, position, side="right"))
        if due <= self._done:
            return []
        start = int(self._ends[self._done - 1]) if self._done else 0
        stop = int(self._ends[due - 1])
        self._done = due
        return self._split(start, stop)

    def _split(self, start: int, stop: int) -> list[Span]:
        starts = self.stream.segment_starts
        first = int(np.searchsorted(starts, start, side="right")) - 1
        last = int(np.searchsorted(starts, stop - 1, side="right")) - 1
        spans = []
        for index in range(first, last + 1):
            lo = max(start, int(starts[index]))
            hi = min(stop, int(starts[index + 1])) if index + 1 < starts.shape[0] else stop
            spans.append(Span(lo, hi, int(self.stream.segment_numbers[index])))
        return spans

    def poll(self) -> tuple[list[Frame], list[StatusEvent]]:
        """Frames (one per segment) and status events that became due; never blocks."""
        spans = self.take()
        events: list[StatusEvent] = []
        if not spans:
            return [], events
        values, counters = self._converted()
        stream = self.stream
        if not self._announced:
            self._announced = True
            events.append(
                self._event(
                    StatusKind.CONNECTED,
                    float(stream.timestamps_s[spans[0].start]),
                    f"replaying a {stream.device.name} stream, {stream.meta.channel_count} ch, "
                    f"{self.rate_hz:g} Hz",
                )
            )
        frames = []
        for span in spans:
            if span.segment != self._segment:
                self._segment = span.segment
                events.append(
                    self._event(
                        StatusKind.CLOCK_BREAK,
                        float(stream.timestamps_s[span.start]),
                        f"recorded segment {span.segment} starts",
                    )
                )
            part = slice(span.start, span.stop)
            frames.append(
                Frame(
                    role=stream.role,
                    signal=stream.signal,
                    timestamps_s=stream.timestamps_s[part],
                    values=values[part],
                    counters=None if counters is None else counters[part],
                    segment=span.segment,
                )
            )
        return frames, events

    def _converted(self) -> tuple[FloatArray, IntArray | None]:
        """Canonical values and counters of the whole stream, computed once on first use
        (one vectorised pass; frames are views into them)."""
        if self._values is None:
            stream = self.stream
            raw = stream.raw
            values = stream.device.convert(
                stream.signal, raw[:, stream.value_channel].astype(np.float64)
            )
            # As the live inlet: a non-finite value goes on as NaN, never as a number.
            values[~np.isfinite(values)] = np.nan
            self._values = values
            if stream.counter_channel is not None:
                self._counters = sample_counters(raw[:, stream.counter_channel])
        return self._values, self._counters

    def _event(self, kind: StatusKind, t_s: float, detail: str) -> StatusEvent:
        return StatusEvent(self.role, self.signal, kind, t_s, detail)

    def close(self) -> None:
        """Nothing to release (the recording is in memory); present for ``FrameSource``."""


class Replay:
    """A recording being replayed: its streams, the session to analyse it with, one
    :class:`ReplaySource` per stream and their shared :class:`ReplayClock`."""

    __slots__ = ("clock", "path", "session", "sources", "streams")

    def __init__(
        self,
        *,
        streams: Sequence[RecordedStream],
        session: SessionConfig,
        path: Path | None = None,
        speed: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
        chunk_s: float = DEFAULT_CHUNK_S,
        max_speed_step_s: float = DEFAULT_MAX_SPEED_STEP_S,
    ) -> None:
        if not (math.isfinite(chunk_s) and chunk_s > 0):
            raise ConfigError(f"chunk_s {chunk_s!r} is not allowed; allowed: finite, > 0")
        self.path = path
        self.session = session
        self.streams = tuple(streams)
        firsts = [float(s.timestamps_s[0]) for s in self.streams if s.timestamps_s.shape[0]]
        self.clock = ReplayClock(
            speed=speed,
            t0_s=min(firsts, default=0.0),
            clock=clock,
            max_speed_step_s=max_speed_step_s,
        )
        peers: list[ReplaySource] = []
        peers.extend(
            ReplaySource(stream=s, clock=self.clock, peers=peers, chunk_s=chunk_s)
            for s in self.streams
        )
        self.sources = tuple(peers)

    @property
    def finished(self) -> bool:
        """True once every source has released all its samples."""
        return all(source.finished for source in self.sources)

    @property
    def duration_s(self) -> float:
        """Recording time from the first to the last sample of any stream."""
        lasts = [float(s.timestamps_s[-1]) for s in self.streams if s.timestamps_s.shape[0]]
        return max(lasts, default=self.clock.t0_s) - self.clock.t0_s

    def now_s(self) -> float:
        """The session clock of a replay: the playback position in recording time, held
        within the recording (before the start it is the first sample's time)."""
        t0 = self.clock.t0_s
        return min(max(self.clock.position_s(), t0), t0 + self.duration_s)

    def next_due_s(self) -> float | None:
        """Wall time (the injected clock's) at which the next chunk is due; None when
        finished. At max speed, "now": everything pending is due."""
        pending = min((s.next_key_s() for s in self.sources), default=math.inf)
        if math.isinf(pending):
            return None
        if self.clock.max_speed:
            return self.clock.now()
        self.clock.position_s()  # starts the clock on first use
        return self.clock.due_at(pending)

    def close(self) -> None:
        for source in self.sources:
            source.close()


def open_replay(
    path: str | Path,
    *,
    session: SessionConfig | None = None,
    speed: float = 1.0,
    clock: Callable[[], float] = time.monotonic,
    chunk_s: float = DEFAULT_CHUNK_S,
    max_speed_step_s: float = DEFAULT_MAX_SPEED_STEP_S,
) -> Replay:
    """Open an XDF recording for replay at ``speed`` (1.0, N, or ``math.inf`` = max).

    A dyadsync recording replays its raw streams by their ``<dyadsync>`` desc and restores
    the recorded segments; ``session`` (optional) then only supplies device configs and
    the signals to replay. Any other XDF file (LabRecorder) needs ``session``: each of its
    sensors must match exactly one stream. Raises :class:`RecordingError` for a file that
    cannot be read, :class:`ConfigError` for a sensor without a stream (or with several).
    """
    path = Path(path)
    loaded = _load_xdf(path)
    ours = any(_dyadsync_desc(s["info"]).get("kind") == "raw" for s in loaded)
    if ours:
        recorded = _our_streams(path, loaded, session)
        if session is None:
            session = _rebuilt_session(path, recorded, _session_info(loaded))
        have = {(s.role, s.signal) for s in recorded}
        for sensor in session.sensors:
            if (sensor.role, sensor.signal) not in have:
                raise ConfigError(
                    f"recording {path} has no raw {sensor.role.value}-{sensor.signal.value} "
                    "stream; replay only the signals it has (session.signals)",
                    path=session.source,
                    key=f"{sensor.role.value}.{sensor.signal.value}",
                )
    elif session is None:
        raise RecordingError(
            f"{path}: not a dyadsync recording (no stream with <dyadsync><kind>raw); "
            "give a session TOML that maps its streams to therapist/client sensors"
        )
    else:
        recorded = _foreign_streams(path, loaded, session)
    return Replay(
        streams=recorded,
        session=session,
        path=path,
        speed=speed,
        clock=clock,
        chunk_s=chunk_s,
        max_speed_step_s=max_speed_step_s,
    )


# ---------------------------------------------------------------------------------------
# re-publishing as LSL outlets (--lsl)


def _copy_children(source: ET.Element, target: pylsl.XMLElement) -> None:
    for child in source:
        if len(child) == 0:
            target.append_child_value(child.tag, child.text or "")
        else:
            _copy_children(child, target.append_child(child.tag))


def outlet_info(stream: RecordedStream, *, name_prefix: str = "") -> pylsl.StreamInfo:
    """A ``StreamInfo`` with the recorded header: name (after ``name_prefix``), type,
    channel count and format, nominal rate, source_id and the whole ``desc``."""
    meta = stream.meta
    info = pylsl.StreamInfo(
        name=name_prefix + meta.name,
        type=meta.type,
        channel_count=meta.channel_count,
        nominal_srate=meta.nominal_srate_hz,
        channel_format=meta.channel_format,
        source_id=meta.source_id,
    )
    desc = ET.fromstring(stream.header.xml).find("desc")
    if desc is not None:
        _copy_children(desc, info.desc())
    return info


class ReplayPublisher:
    """``--lsl``: the replay's streams as LSL outlets with their recorded headers.

    :meth:`step` pushes what the replay's clock says is due, with time stamps shifted so
    the recording's first sample is "now" on the LSL clock (spacing kept exactly; at
    N x the stamps therefore advance N times slower than they arrive). Close it (or use it
    as a context manager) so the outlets disappear.
    """

    __slots__ = ("_offset_s", "outlets", "pushed", "replay")

    def __init__(self, replay: Replay, *, name_prefix: str = "") -> None:
        self.replay = replay
        self.outlets = tuple(
            pylsl.StreamOutlet(outlet_info(s, name_prefix=name_prefix)) for s in replay.streams
        )
        self._offset_s: float | None = None
        self.pushed = [0] * len(self.outlets)

    def wait_for_consumers(self, timeout_s: float) -> bool:
        """Wait until every outlet has a consumer (samples pushed before an inlet connects
        are not delivered to it); False if ``timeout_s`` passed first."""
        deadline = time.monotonic() + timeout_s
        for outlet in self.outlets:
            if not outlet.wait_for_consumers(max(0.0, deadline - time.monotonic())):
                return False
        return True

    def step(self) -> int:
        """Push every chunk that is due; returns the number of samples pushed."""
        if self._offset_s is None:
            self._offset_s = pylsl.local_clock() - self.replay.clock.t0_s
        total = 0
        for index, (source, outlet) in enumerate(
            zip(self.replay.sources, self.outlets, strict=True)
        ):
            for span in source.take():
                stream = source.stream
                part = slice(span.start, span.stop)
                stamps = stream.timestamps_s[part] + self._offset_s
                outlet.push_chunk(stream.raw[part], stamps.tolist())
                total += span.stop - span.start
                self.pushed[index] += span.stop - span.start
        return total

    def close(self) -> None:
        # Dropping the outlets destroys them (pylsl frees the outlet in __del__).
        self.outlets = ()

    def __enter__(self) -> ReplayPublisher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def publish_replay(
    replay: Replay,
    *,
    name_prefix: str = "",
    wait_for_consumers_s: float | None = None,
    stop: threading.Event | None = None,
    linger_s: float = 1.0,
    sleep: Callable[[float], None] = time.sleep,
) -> int:
    """Re-publish ``replay`` as LSL outlets until it is finished or ``stop`` is set;
    returns the samples pushed. Blocks: sleeps until the next chunk's absolute due time.

    ``wait_for_consumers_s``: first wait (at most this long) for an inlet on every
    outlet. ``name_prefix`` is put before each recorded name, e.g. ``"dyadsync-sim-"`` so
    the simulator's device config (which matches names ``dyadsync-sim-*``) accepts a
    replayed simulator session. ``linger_s``: the outlets stay open this long after the
    last push, because destroying an outlet cuts its consumers off before they have
    pulled the samples still in transit.
    """
    with ReplayPublisher(replay, name_prefix=name_prefix) as publisher:
        if wait_for_consumers_s is not None:
            publisher.wait_for_consumers(wait_for_consumers_s)
        total = 0
        while not (stop is not None and stop.is_set()):
            total += publisher.step()
            due = replay.next_due_s()
            if due is None:
                break
            delay = due - replay.clock.now()
            if delay > 0:
                sleep(min(delay, 0.5))  # wake at least twice a second to notice ``stop``
        if replay.finished and linger_s > 0 and not (stop is not None and stop.is_set()):
            if stop is None:
                sleep(linger_s)
            else:
                stop.wait(linger_s)
        return total

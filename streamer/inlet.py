"""The acquisition inlet: one person's signal from LSL, as clean frames and status events.

:class:`SensorInlet` owns two background threads so that :meth:`SensorInlet.poll` never
blocks (the server calls it from its asyncio loop):

* a *watcher* keeps a ``pylsl.ContinuousResolver`` (by ``source_id`` once known) and
  reads what it has accumulated every ``watch_interval_s``: that is how a device that
  reappears with a new uid is found, and how a changed channel count or two streams
  claiming one ``source_id`` are reported (liblsl's own recovery would hang silently in
  both cases, so it is switched off). A continuous resolver, not one short resolve per
  look: on a machine without a multicast route (an offline therapy-room laptop) only the
  newest outlet answers at once, the others answer liblsl's unicast wave about 0.5 s
  later, so a 0.5 s one-shot resolve missed them about half the time;
* a *puller* owns the ``pylsl.StreamInlet``: connects, pulls raw chunks, samples
  ``time_correction()`` and hands everything to ``poll()`` through a bounded queue.

``poll()`` (caller's thread) does the bookkeeping: offset tracking, clock-break detection
and jitter smoothing (:mod:`streamer.clock`), unit conversion (:mod:`streamer.devices`),
NaN/inf masking, stall timing, and turns all of it into :class:`~dsp.types.Frame` and
:class:`~dsp.types.StatusEvent` objects. Status details never contain sample values,
nor stream or host names (users may name a stream or a laptop after a person); they name
the role, signal and device config.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import queue
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import pylsl
from pylsl.util import LostError

from dsp.types import FloatArray, Frame, IntArray, Role, SignalKind, StatusEvent, StatusKind
from dsp.validation import require_at_least, require_finite_positive
from streamer.clock import ClockConfig, Dejitter, OffsetTracker, find_clock_breaks
from streamer.devices import (
    CANONICAL_UNIT,
    DeviceConfig,
    StreamMeta,
    sample_counters,
    stream_meta,
)
from streamer.errors import StreamNotFoundError
from streamer.session import SensorSource, SessionConfig

# Spacing of samples retimed past their predecessor: far below any sensor's sample period.
_MIN_STEP_S = 1e-6


@dataclass(frozen=True, kw_only=True, slots=True)
class InletConfig:
    """Timing rules of a :class:`SensorInlet`.

    ``max_stall_s`` / ``stall_intervals``: a dropout is reported after 5 nominal sample
    intervals, at most 2 s (DESIGN.md reliability defaults), but never sooner than
    ``min_stall_s`` nor than two device packets (a Polar H10 delivers 73 samples at once,
    so its stream is legitimately silent for 0.56 s). ``watch_interval_s`` bounds how fast
    a new uid, a changed channel count or a duplicate ``source_id`` is seen once liblsl's
    resolver has it (within about 0.5 s, its resolve interval); ``forget_after_s``: an
    outlet that stopped answering leaves the candidates after this long (four of liblsl's
    0.5 s resolve waves, so one lost reply does not drop a live stream).
    ``resolve_timeout_s`` bounds one ``time_correction()`` query. ``max_buflen_s``: liblsl
    buffers this much while the caller is slow. ``max_queue_chunks`` bounds the hand-over queue (the
    puller then waits, liblsl keeps buffering: nothing is dropped);
    ``max_messages_per_poll`` bounds the work one ``poll()`` does.
    """

    max_stall_s: float = 2.0
    stall_intervals: float = 5.0
    min_stall_s: float = 0.25
    watch_interval_s: float = 1.0
    forget_after_s: float = 2.0
    resolve_timeout_s: float = 0.5
    connect_timeout_s: float = 2.0
    pull_timeout_s: float = 0.05
    max_buflen_s: int = 60
    max_queue_chunks: int = 1000
    max_messages_per_poll: int = 100
    bad_sample_report_s: float = 1.0
    missing_after_s: float = 5.0
    clock: ClockConfig = field(default_factory=ClockConfig)

    def __post_init__(self) -> None:
        require_finite_positive(
            self,
            (
                "max_stall_s",
                "stall_intervals",
                "min_stall_s",
                "watch_interval_s",
                "forget_after_s",
                "resolve_timeout_s",
                "connect_timeout_s",
                "pull_timeout_s",
                "bad_sample_report_s",
                "missing_after_s",
            ),
        )
        require_at_least(self, ("max_buflen_s", "max_queue_chunks", "max_messages_per_poll"), 1)

    def stall_after_s(self, rate_hz: float, chunk_samples: int) -> float:
        """Silence after which the stream counts as stalled."""
        if rate_hz <= 0:
            return self.max_stall_s
        intervals_s = self.stall_intervals / rate_hz
        wanted = max(intervals_s, 2.0 * chunk_samples / rate_hz, self.min_stall_s)
        return min(wanted, self.max_stall_s)


def check_stream(
    meta: StreamMeta,
    device: DeviceConfig,
    signal: SignalKind,
    *,
    expected_channel_count: int | None = None,
    expected_rate_hz: float | None = None,
) -> str | None:
    """Why ``meta`` cannot serve as ``signal`` of ``device`` (None if it can).

    The message names what differs (channel count, missing channel, declared unit) and
    never contains sample values.
    """
    spec = device.spec(signal)
    expected = expected_channel_count or spec.channel_count
    if expected is not None and meta.channel_count != expected:
        return f"stream has {meta.channel_count} channels, expected {expected}"
    if expected_rate_hz is not None and abs(meta.nominal_srate_hz - expected_rate_hz) > (
        0.01 * expected_rate_hz
    ):
        # The dsp was set up for the first rate; a silent change would skew every estimate.
        return f"stream declares {meta.nominal_srate_hz:g} Hz, expected {expected_rate_hz:g} Hz"
    if meta.channel_format in ("string", "undefined"):
        return f"stream has channel format {meta.channel_format!r}, expected a numeric format"
    if not device.matches(meta, signal=signal):
        return (
            f"stream (type {meta.type!r}, {meta.channel_count} channels, "
            f"{meta.nominal_srate_hz:g} Hz) does not match device config {device.name!r} "
            f"for {signal.value}"
        )
    channel = spec.find_channel(meta)
    if channel is None:
        return f"stream has no channel matching {spec.channel_label or spec.channel_index!r}"
    if spec.counter_channel_index is not None and spec.counter_channel_index >= meta.channel_count:
        return f"stream has no counter channel {spec.counter_channel_index}"
    return spec.unit_conflict(meta, channel)


def full_stream_meta(info: pylsl.StreamInfo, *, timeout_s: float) -> StreamMeta | None:
    """Metadata including ``desc`` (a resolve returns the stream's info without it; a
    short-lived inlet fetches it). None if the stream vanished meanwhile."""
    try:
        probe = pylsl.StreamInlet(info, recover=False)
        try:
            return stream_meta(probe.info(timeout=timeout_s))
        finally:
            probe.close_stream()
    except (TimeoutError, LostError):
        return None


@dataclass(frozen=True, slots=True)
class RawChunk:
    """Samples exactly as the device sent them (every channel, device units), stamped with
    the session-clock times the pipeline used, for the recorder. ``header_xml`` is the
    full LSL header of the outlet they came from."""

    timestamps_s: FloatArray
    data: FloatArray
    segment: int
    header_xml: str


@dataclass(frozen=True, slots=True)
class _Connected:
    meta: StreamMeta
    offset_s: float | None


@dataclass(frozen=True, slots=True)
class _Chunk:
    arrival_s: float
    timestamps_s: FloatArray
    data: FloatArray


@dataclass(frozen=True, slots=True)
class _Offset:
    offset_s: float


@dataclass(frozen=True, slots=True)
class _Lost:
    detail: str


@dataclass(frozen=True, slots=True)
class _Mismatch:
    detail: str


_Message = _Connected | _Chunk | _Offset | _Lost | _Mismatch


class _Acquisition:
    """The two background threads (watcher and puller) of one inlet; all pylsl calls."""

    __slots__ = (
        "_candidates",
        "_clock",
        "_config",
        "_current_uid",
        "_dead_uids",
        "_lock",
        "_meta_cache",
        "_outbox",
        "_reported",
        "_sensor",
        "_stop",
        "_threads",
        "connected_meta",
        "expected_channel_count",
        "expected_rate_hz",
        "last_problem",
        "last_pull_s",
        "wakeup",
    )

    def __init__(
        self, *, sensor: SensorSource, config: InletConfig, clock: Callable[[], float]
    ) -> None:
        self._sensor = sensor
        self._config = config
        self._clock = clock
        self._outbox: queue.Queue[_Message] = queue.Queue(maxsize=config.max_queue_chunks)
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._candidates: tuple[tuple[pylsl.StreamInfo, StreamMeta], ...] | None = None
        self._meta_cache: dict[str, StreamMeta] = {}
        self._reported: set[str] = set()
        self._dead_uids: set[str] = set()
        self._current_uid: str | None = None
        self.expected_channel_count: int | None = sensor.device.spec(sensor.signal).channel_count
        self.expected_rate_hz: float | None = None
        # Set by the puller when a connection is made (read by other threads: one atomic
        # attribute assignment, never mutated in place).
        self.connected_meta: StreamMeta | None = None
        self.last_problem: str | None = None  # latest mismatch, for "not found" messages
        # When the puller last came back from liblsl (session clock). Silence only counts
        # as a stall while the puller was really listening: a process starved of CPU
        # (or of the GIL) pulls nothing from any stream, and that is not the sensors' fault.
        self.last_pull_s = -math.inf
        # Called (from the puller thread) after each message is handed over, so a
        # consumer can react to data instead of polling (see SensorInlet.set_wakeup).
        self.wakeup: Callable[[], None] | None = None
        label = f"dyadsync-inlet-{sensor.role.value}-{sensor.signal.value}"
        self._threads = (
            threading.Thread(target=self._watch, name=f"{label}-watch", daemon=True),
            threading.Thread(target=self._pull, name=f"{label}-pull", daemon=True),
        )
        for thread in self._threads:
            thread.start()

    @property
    def outbox(self) -> queue.Queue[_Message]:
        return self._outbox

    def request_stop(self) -> None:
        self._stop.set()

    def join(self) -> None:
        for thread in self._threads:
            thread.join(timeout=self._config.connect_timeout_s + 1.0)

    # -- watcher thread ---------------------------------------------------------------

    def _watch(self) -> None:
        resolver: pylsl.ContinuousResolver | None = None
        resolving_for: str | None = None
        while not self._stop.is_set():
            connected = self._current_uid is not None
            try:
                source_id = self._sensor.source_id
                if resolver is None or source_id != resolving_for:
                    # Once a stream without a configured source_id is connected, follow
                    # it by the source_id it declares (reconnects, duplicates).
                    resolver = self._new_resolver(source_id)
                    resolving_for = source_id
                found = self._usable(resolver.results())
            except Exception as exc:  # a liblsl failure must surface, not kill the thread
                name = type(exc).__name__
                self._report_once(f"discovery:{name}", f"stream discovery failed ({name})")
                resolver, found = None, ()
            with self._lock:
                self._candidates = found
            # Searching for a lost stream is urgent (the gap grows); while connected the
            # periodic check only has to catch duplicates and replacements.
            self._stop.wait(self._config.watch_interval_s if connected else 0.1)

    def _new_resolver(self, source_id: str | None) -> pylsl.ContinuousResolver:
        forget_after = self._config.forget_after_s
        if source_id is not None:
            return pylsl.ContinuousResolver(
                prop="source_id", value=source_id, forget_after=forget_after
            )
        return pylsl.ContinuousResolver(forget_after=forget_after)

    def _usable(
        self, infos: Sequence[pylsl.StreamInfo]
    ) -> tuple[tuple[pylsl.StreamInfo, StreamMeta], ...]:
        """The resolved streams this sensor accepts (full metadata fetched once per uid)."""
        found = []
        for info in infos:
            if info.uid() in self._dead_uids:
                continue  # lingers in the resolver for forget_after_s; probing it would block
            meta = self._full_meta(info)
            if meta is not None and self._sensor.accepts(meta):
                found.append((info, meta))
        return tuple(found)

    def _full_meta(self, info: pylsl.StreamInfo) -> StreamMeta | None:
        uid = stream_meta(info).uid
        cached = self._meta_cache.get(uid)
        if cached is None:
            cached = full_stream_meta(info, timeout_s=self._config.connect_timeout_s)
            if cached is not None:
                self._meta_cache[uid] = cached
        return cached

    # -- puller thread ----------------------------------------------------------------

    def _send(self, message: _Message) -> None:
        while not self._stop.is_set():
            try:
                self._outbox.put(message, timeout=0.1)
            except queue.Full:
                continue
            wakeup = self.wakeup
            if wakeup is not None:
                wakeup()
            return

    def _report_once(self, key: str, detail: str) -> None:
        if key not in self._reported:
            self._reported.add(key)
            self.last_problem = detail
            self._send(_Mismatch(detail))

    def _live_candidates(self, *, take: bool) -> tuple[tuple[pylsl.StreamInfo, StreamMeta], ...]:
        """The watcher's latest candidates (consumed if ``take``) without the outlets known
        to be dead: a lost outlet can linger in a resolve that started before it died."""
        with self._lock:
            candidates = self._candidates
            if take:
                self._candidates = None
        return tuple(c for c in candidates or () if c[1].uid not in self._dead_uids)

    def _pick(self, current_uid: str | None) -> tuple[pylsl.StreamInfo, StreamMeta] | None:
        """A stream to (re)connect to among the watcher's candidates, reporting problems."""
        candidates = self._live_candidates(take=True)
        if not candidates:
            return None
        if len(candidates) > 1:
            sensor = self._sensor
            ident = sensor.source_id or sensor.name_pattern or sensor.device.name
            self._report_once(
                "dup:" + ",".join(sorted(meta.uid for _, meta in candidates)),
                f"{len(candidates)} streams claim {ident!r}; "
                "stop all but one device or give each a distinct source_id",
            )
            return None
        info, meta = candidates[0]
        if meta.uid == current_uid:
            return None
        problem = check_stream(
            meta,
            self._sensor.device,
            self._sensor.signal,
            expected_channel_count=self.expected_channel_count,
            expected_rate_hz=self.expected_rate_hz,
        )
        if problem is not None:
            self._report_once("bad:" + meta.uid, f"{problem}; not connecting")
            return None
        return info, meta

    def _pull(self) -> None:
        inlet: pylsl.StreamInlet | None = None
        uid: str | None = None
        next_correction = 0.0
        config = self._config
        while not self._stop.is_set():
            if inlet is None or self._replacement_pending(uid):
                picked = self._pick(uid)
                if picked is not None:
                    if inlet is not None:
                        inlet.close_stream()
                    inlet, uid = self._connect(*picked)
                    self._current_uid = uid
                    next_correction = time.monotonic() + config.clock.correction_interval_s
                    continue
                if inlet is None:
                    self._stop.wait(0.05)
                    continue
            try:
                data, stamps = inlet.pull_chunk(
                    timeout=config.pull_timeout_s, max_samples=4096, min_samples=1, as_numpy=True
                )
                self.last_pull_s = self._clock()
                if len(stamps):
                    arrival = self._clock()
                    stamps_s = np.asarray(stamps, np.float64)
                    self._send(_Chunk(arrival, stamps_s, np.asarray(data, np.float64)))
                if time.monotonic() >= next_correction:
                    next_correction = time.monotonic() + config.clock.correction_interval_s
                    self._send(_Offset(inlet.time_correction(timeout=config.resolve_timeout_s)))
            except LostError:
                self._send(_Lost("connection to the stream was lost"))
                if uid is not None:
                    self._dead_uids.add(uid)
                inlet.close_stream()
                inlet = None
                self._current_uid = None
            except TimeoutError:
                pass  # time_correction had no fresh answer: keep the previous estimate
            except Exception as exc:  # surface anything unexpected; reconnect, never die
                self._send(_Lost(f"acquisition error ({type(exc).__name__}); reconnecting"))
                inlet.close_stream()
                inlet, uid = None, None
                self._current_uid = None
                self._stop.wait(0.5)

        if inlet is not None:
            inlet.close_stream()

    def _replacement_pending(self, uid: str | None) -> bool:
        """A new uid with our source_id while connected: the old outlet is gone for good
        (liblsl would not notice a restarted outlet of another shape)."""
        candidates = self._live_candidates(take=False)
        if not candidates:
            return False
        if len(candidates) > 1:
            return True  # let _pick report the duplicate
        return candidates[0][1].uid != uid

    def _connect(
        self, info: pylsl.StreamInfo, meta: StreamMeta
    ) -> tuple[pylsl.StreamInlet | None, str | None]:
        config = self._config
        try:
            inlet = pylsl.StreamInlet(info, max_buflen=config.max_buflen_s, recover=False)
            inlet.open_stream(timeout=config.connect_timeout_s)
        except (TimeoutError, LostError):
            return None, None
        try:
            offset: float | None = inlet.time_correction(timeout=config.connect_timeout_s)
        except (TimeoutError, LostError):
            offset = None
        if self.expected_channel_count is None:
            self.expected_channel_count = meta.channel_count
        if self.expected_rate_hz is None:
            self.expected_rate_hz = meta.nominal_srate_hz
        self.connected_meta = meta
        if meta.source_id:
            # From now on follow this stream by its source_id (reconnect, duplicates).
            self._sensor = dataclasses.replace(self._sensor, source_id=meta.source_id)
        self._send(_Connected(meta, offset))
        return inlet, meta.uid


class SensorInlet:
    """One person's ECG or EDA stream: resolves, connects, reconnects, corrects clocks.

    Construct it, call :meth:`poll` regularly (every ~50 ms, or when the callback given
    to :meth:`set_wakeup` says data arrived) and :meth:`close` at the end.
    ``source_id`` (exact) or ``name_pattern`` (glob) selects the stream; with neither, any
    stream of ``device`` whose ``desc/dyadsync/role`` is not another role's is accepted.
    ``clock`` is injected so tests and replay can control time (default
    ``pylsl.local_clock``).
    """

    __slots__ = (
        "_acq",
        "_bad_pending",
        "_bad_reported_at",
        "_channel",
        "_counter",
        "_dejitter",
        "_last_arrival_s",
        "_last_out",
        "_last_raw_s",
        "_meta",
        "_missing_reported",
        "_offsets",
        "_pieces",
        "_raw",
        "_segment",
        "_stall_after_s",
        "_stalled_since_s",
        "_started_s",
        "bad_samples",
        "clock",
        "config",
        "device",
        "retimed_samples",
        "role",
        "signal",
    )

    def __init__(
        self,
        *,
        role: Role,
        signal: SignalKind,
        device: DeviceConfig,
        source_id: str | None,
        name_pattern: str | None = None,
        config: InletConfig | None = None,
        clock: Callable[[], float] = pylsl.local_clock,
    ) -> None:
        device.spec(signal)  # fail early (ConfigError) if the device lacks the signal
        self.role = role
        self.signal = signal
        self.device = device
        self.config = config or InletConfig()
        self.clock = clock
        self.bad_samples = 0
        # Samples moved forward to keep time strictly increasing (see _monotonic).
        self.retimed_samples = 0
        self._segment = 0
        self._last_out: tuple[int, float] | None = None
        self._meta: StreamMeta | None = None
        self._channel = 0
        self._counter: int | None = None
        self._dejitter = Dejitter(rate_hz=0.0)
        self._offsets = OffsetTracker(
            window=self.config.clock.offset_window, jump_s=self.config.clock.offset_jump_s
        )
        self._last_raw_s: float | None = None
        self._last_arrival_s = clock()
        self._started_s = self._last_arrival_s
        self._stalled_since_s: float | None = None
        self._stall_after_s = self.config.max_stall_s
        self._bad_pending = 0
        self._bad_reported_at = -math.inf
        self._pieces: list[Frame] = []
        self._raw: list[RawChunk] | None = None  # None: nobody records this inlet
        self._missing_reported = False
        sensor = SensorSource(
            role=role, signal=signal, device=device, source_id=source_id, name_pattern=name_pattern
        )
        self._acq = _Acquisition(sensor=sensor, config=self.config, clock=clock)

    @property
    def stream(self) -> StreamMeta | None:
        """Metadata of the stream currently (or last) connected."""
        return self._acq.connected_meta or self._meta

    @property
    def rate_hz(self) -> float:
        """Nominal sampling rate of the connected stream (device config first, else what the
        stream declares; 0.0 for irregular streams or before the first connection)."""
        meta = self.stream
        return 0.0 if meta is None else self.device.spec(self.signal).rate_hz(meta)

    def close(self) -> None:
        """Stop the background threads and close the LSL connection."""
        close_inlets([self])

    def start_raw_capture(self) -> None:
        """Keep every raw chunk from now on for :meth:`drain_raw` (the recorder calls this
        before its first poll; the caller must then drain after every poll)."""
        if self._raw is None:
            self._raw = []

    def recording_desc(self) -> dict[str, str]:
        """The ``<dyadsync>`` fields of this sensor's raw stream in a recording
        (docs/recording.md): role, signal, device config, which channel is the signal
        (and the counter) and the canonical unit after conversion."""
        fields = {
            "kind": "raw",
            "role": self.role.value,
            "signal": self.signal.value,
            "device_config": self.device.name,
            "value_channel": str(self._channel),
            "unit": CANONICAL_UNIT[self.signal],
        }
        if self._counter is not None:
            fields["counter_channel"] = str(self._counter)
        return fields

    def drain_raw(self) -> list[RawChunk]:
        """Raw chunks captured since the last call, in order (empty without capture)."""
        if not self._raw:
            return []
        chunks, self._raw = self._raw, []
        return chunks

    def set_wakeup(self, callback: Callable[[], None] | None) -> None:
        """``callback`` is called from the acquisition thread whenever something arrived
        for :meth:`poll` (a chunk, a connection change); it must be thread-safe and quick
        (e.g. ``loop.call_soon_threadsafe(event.set)``)."""
        self._acq.wakeup = callback

    def poll(self) -> tuple[list[Frame], list[StatusEvent]]:
        """Frames and status events since the last call; never blocks."""
        events: list[StatusEvent] = []
        outbox = self._acq.outbox
        # Bounded work per call: after a long pause of the caller the backlog is worked
        # off over several polls instead of holding the event loop.
        for _ in range(self.config.max_messages_per_poll):
            try:
                message = outbox.get_nowait()
            except queue.Empty:
                break
            self._handle(message, events)
        now = self.clock()
        if (
            self._meta is not None
            and self._stalled_since_s is None
            and now - self._last_arrival_s > self._stall_after_s
            # ...and the puller listened all that time and nothing is waiting in the
            # hand-over queue (under CPU load all four streams used to "stall" at once).
            and self._acq.last_pull_s - self._last_arrival_s > self._stall_after_s
            and outbox.empty()
        ):
            self._stalled_since_s = self._last_arrival_s
            silent_s = now - self._last_arrival_s
            events.append(self._event(StatusKind.STALLED, f"no samples for {silent_s:.1f} s"))
        if (
            self._meta is None
            and not self._missing_reported
            and now - self._started_s > self.config.missing_after_s
        ):
            self._missing_reported = True
            events.append(
                self._event(
                    StatusKind.MISSING,
                    f"no matching stream found after {now - self._started_s:.0f} s; still looking",
                )
            )
        if self._bad_pending and now - self._bad_reported_at >= self.config.bad_sample_report_s:
            events.append(
                self._event(
                    StatusKind.BAD_SAMPLES,
                    f"{self._bad_pending} bad samples: non-finite values masked as NaN, "
                    f"samples without a finite timestamp dropped ({self.bad_samples} in total)",
                )
            )
            self._bad_pending = 0
            self._bad_reported_at = now
        frames = _merge_by_segment(self._pieces)
        self._pieces = []
        return frames, events

    # -- message handling (caller's thread) ---------------------------------------------

    def _event(self, kind: StatusKind, detail: str) -> StatusEvent:
        return StatusEvent(self.role, self.signal, kind, float(self.clock()), detail)

    def _handle(self, message: _Message, events: list[StatusEvent]) -> None:
        if isinstance(message, _Chunk):
            self._on_chunk(message, events)
        elif isinstance(message, _Connected):
            self._on_connected(message, events)
        elif isinstance(message, _Offset):
            if self._offsets.add(message.offset_s):
                self._new_segment(events, "sender clock offset stepped (clock reset)")
        elif isinstance(message, _Lost):
            if self._stalled_since_s is None and self._meta is not None:
                self._stalled_since_s = self._last_arrival_s
                events.append(self._event(StatusKind.STALLED, message.detail))
        else:
            events.append(self._event(StatusKind.MISMATCH, message.detail))

    def _on_connected(self, message: _Connected, events: list[StatusEvent]) -> None:
        meta = message.meta
        spec = self.device.spec(self.signal)
        channel = spec.find_channel(meta)
        self._channel = 0 if channel is None else channel
        self._counter = spec.counter_channel_index
        rate_hz = spec.rate_hz(meta)
        self._stall_after_s = self.config.stall_after_s(rate_hz, spec.chunk_samples)
        self._dejitter = self.config.clock.dejitter(
            rate_hz=rate_hz, chunk_samples=spec.chunk_samples
        )
        self._offsets = OffsetTracker(
            window=self.config.clock.offset_window, jump_s=self.config.clock.offset_jump_s
        )
        if message.offset_s is not None:
            self._offsets.add(message.offset_s)
        self._last_raw_s = None
        now = self.clock()
        # Stream and host names can carry people's names: details name the device config.
        where = f"a {self.device.name} stream, {meta.channel_count} ch, {rate_hz:g} Hz"
        if self._meta is None:
            events.append(self._event(StatusKind.CONNECTED, f"connected to {where}"))
        else:
            gap_s = now - self._last_arrival_s
            self._segment += 1
            events.append(
                self._event(
                    StatusKind.RECOVERED,
                    f"reconnected to a new outlet {where} after a gap of {gap_s:.1f} s; "
                    f"new segment {self._segment}",
                )
            )
        self._meta = meta
        self._stalled_since_s = None
        self._last_arrival_s = now

    def _new_segment(self, events: list[StatusEvent], detail: str) -> None:
        self._segment += 1
        self._dejitter.reset()
        events.append(self._event(StatusKind.CLOCK_BREAK, f"{detail}; new segment {self._segment}"))

    def _on_chunk(self, chunk: _Chunk, events: list[StatusEvent]) -> None:
        if self._stalled_since_s is not None:
            events.append(
                self._event(
                    StatusKind.RECOVERED,
                    f"samples resumed after {chunk.arrival_s - self._stalled_since_s:.1f} s",
                )
            )
            self._stalled_since_s = None
        clock_config = self.config.clock
        stamps, data = chunk.timestamps_s, chunk.data
        timed = np.isfinite(stamps)
        if not timed.all():
            # A sample without a usable time cannot be placed: drop it, count it as bad.
            self._count_bad(int((~timed).sum()))
            stamps, data = stamps[timed], data[timed]
            if stamps.shape[0] == 0:
                return
        breaks = find_clock_breaks(
            stamps,
            previous_s=self._last_raw_s,
            arrival_advance_s=chunk.arrival_s - self._last_arrival_s,
            backward_jump_s=clock_config.backward_jump_s,
            forward_jump_s=clock_config.forward_jump_s,
        )
        previous_raw_s = self._last_raw_s
        self._last_arrival_s = chunk.arrival_s
        self._last_raw_s = float(stamps[-1])
        starts = sorted({0, *breaks})
        for start, stop in itertools.pairwise([*starts, stamps.shape[0]]):
            if start in breaks:
                before_s = stamps[start - 1] if start > 0 else previous_raw_s
                step_s = math.nan if before_s is None else float(stamps[start] - before_s)
                self._new_segment(events, f"timestamps jumped by {step_s:+.1f} s")
            self._emit(stamps[start:stop], data[start:stop])

    def _monotonic(self, times_s: FloatArray) -> FloatArray:
        """``times_s`` made to follow the segment's previous output strictly.

        The offset is added after dejittering, so a small backward step of its median
        (a few ms) can place a chunk's first samples before the previous chunk's last;
        the DSP rejects that. Those samples are moved just past the previous one
        (``_MIN_STEP_S`` apart), an error no larger than the offset's step, rather than
        ending the stream or starting a new segment at every offset update."""
        last = self._last_out
        if last is not None and last[0] == self._segment and times_s[0] <= last[1]:
            floor_s = last[1] + _MIN_STEP_S * np.arange(1, times_s.shape[0] + 1)
            times_s = np.maximum(times_s, floor_s)
            self.retimed_samples += int(np.count_nonzero(times_s == floor_s))
        self._last_out = (self._segment, float(times_s[-1]))
        return times_s

    def _count_bad(self, count: int) -> None:
        self.bad_samples += count
        self._bad_pending += count

    def _emit(self, raw_s: FloatArray, data: FloatArray) -> None:
        times_s = self._monotonic(self._dejitter.push(raw_s) + self._offsets.offset_s)
        values = self.device.convert(self.signal, data[:, self._channel])
        bad = ~np.isfinite(values)
        if bad.any():
            values[bad] = np.nan
            self._count_bad(int(bad.sum()))
        if self._raw is not None and self._meta is not None:
            self._raw.append(RawChunk(times_s, data, self._segment, self._meta.header_xml))
        counters: IntArray | None = None
        if self._counter is not None:
            counters = sample_counters(data[:, self._counter])
        self._pieces.append(
            Frame(
                role=self.role,
                signal=self.signal,
                timestamps_s=times_s,
                values=values,
                counters=counters,
                segment=self._segment,
            )
        )


def _merge_by_segment(pieces: list[Frame]) -> list[Frame]:
    """One frame per run of equal segments (the pieces of one poll are consecutive)."""
    merged: list[Frame] = []
    start = 0
    for index in range(1, len(pieces) + 1):
        if index < len(pieces) and pieces[index].segment == pieces[start].segment:
            continue
        run = pieces[start:index]
        if len(run) == 1:
            merged.append(run[0])
        else:
            counters = [p.counters for p in run]
            merged.append(
                Frame(
                    role=run[0].role,
                    signal=run[0].signal,
                    timestamps_s=np.concatenate([p.timestamps_s for p in run]),
                    values=np.concatenate([p.values for p in run]),
                    counters=None
                    if counters[0] is None
                    else np.concatenate([c for c in counters if c is not None]),
                    segment=run[0].segment,
                )
            )
        start = index
    return merged


def close_inlets(inlets: Sequence[SensorInlet]) -> None:
    """Close several inlets at once: all threads are told to stop before any is waited for,
    so closing a session takes one resolve timeout, not one per inlet."""
    for inlet in inlets:
        inlet._acq.request_stop()
    for inlet in inlets:
        inlet._acq.join()


def inlets_for_session(
    session: SessionConfig, *, config: InletConfig | None = None
) -> list[SensorInlet]:
    """One :class:`SensorInlet` per sensor of a :class:`~streamer.session.SessionConfig`
    (connecting in the background; see :func:`open_session_inlets` to wait for them)."""
    return [
        SensorInlet(
            role=sensor.role,
            signal=sensor.signal,
            device=sensor.device,
            source_id=sensor.source_id,
            name_pattern=sensor.name_pattern,
            config=config,
        )
        for sensor in session.sensors
    ]


def open_session_inlets(
    session: SessionConfig, *, timeout_s: float, config: InletConfig | None = None
) -> list[SensorInlet]:
    """Inlets for every sensor of the session, all connected within ``timeout_s``.

    Raises :class:`StreamNotFoundError` naming every stream that did not appear (role,
    signal, device and what was searched for) and how to start the simulator; any inlets
    already open are closed first so nothing half-started is left behind. Events that
    arrived while waiting are kept for the caller's first ``poll()``.
    """
    inlets = inlets_for_session(session, config=config)
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline and not all(i.stream is not None for i in inlets):
            time.sleep(0.02)
    except BaseException:  # a stop signal while waiting: leave no inlet threads behind
        close_inlets(inlets)
        raise
    missing = [inlet for inlet in inlets if inlet.stream is None]
    if missing:
        close_inlets(inlets)
        raise StreamNotFoundError(_missing_message(session, missing, timeout_s))
    return inlets


def _missing_message(
    session: SessionConfig, missing: Sequence[SensorInlet], timeout_s: float
) -> str:
    lines = [f"{len(missing)} stream(s) not found on the network within {timeout_s:g} s:"]
    for inlet in missing:
        sensor = session.sensor(inlet.role, inlet.signal)
        problem = inlet._acq.last_problem
        found = f" (a stream was found but is unusable: {problem})" if problem else ""
        lines.append(f"  - {sensor.describe()}{found}")
    lines.append(
        "Check that the devices are streaming (`dyadsync streams` lists what is visible); "
        "to try dyadsync without hardware start the simulator with `dyadsync simulate` "
        "(or run `dyadsync demo`)."
    )
    return "\n".join(lines)

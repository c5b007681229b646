"""The live session service: inlets -> dyad pipeline -> hub, on one asyncio loop.

The loop polls every inlet without blocking (the streamer does its blocking resolves in
background threads), pushes frames through the pure :class:`DyadPipeline`, and publishes
what became final. Physio samples are batched (a few messages per second instead of one
per grid sample); synchrony updates, episodes and status changes go out at once; a
``health`` message with per-stream counters goes out every couple of seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import importlib.metadata
import logging
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol, runtime_checkable

import numpy as np

from dsp.counters import SampleCounterCheck
from dsp.exceptions import SignalError
from dsp.pipeline import Derived, DyadPipeline, PipelineOutput
from dsp.synchrony import LAG_CONVENTION
from dsp.types import Frame, GridSamples, Role, SignalKind, StatusEvent, StatusKind
from server.hub import Hub
from server.protocol import Message, MessageFactory, episode_fields, sync_fields

if TYPE_CHECKING:
    from server.recorder import RecordingSummary, SessionRecorder
    from streamer.inlet import RawChunk

log = logging.getLogger(__name__)

SERVER_VERSION = importlib.metadata.version("dyadsync")


class FrameSource(Protocol):
    """What the service needs from an inlet (``streamer.inlet.SensorInlet`` or a replay)."""

    @property
    def role(self) -> Role: ...

    @property
    def signal(self) -> SignalKind: ...

    @property
    def rate_hz(self) -> float: ...

    def poll(self) -> tuple[list[Frame], list[StatusEvent]]: ...

    def close(self) -> None: ...


@runtime_checkable
class DataWakeup(Protocol):
    """A source that can say when data arrived (``streamer.inlet.SensorInlet``), so the
    service reacts to data instead of waiting for its next poll."""

    def set_wakeup(self, callback: Callable[[], None] | None) -> None: ...


@runtime_checkable
class RawCapture(Protocol):
    """A source whose raw samples can be recorded (``streamer.inlet.SensorInlet``)."""

    def start_raw_capture(self) -> None: ...

    def drain_raw(self) -> list[RawChunk]: ...

    def recording_desc(self) -> dict[str, str]: ...


@dataclass(frozen=True, slots=True, kw_only=True)
class ServiceConfig:
    """Loop timing. The loop runs when a source says data arrived (:class:`DataWakeup`),
    and at the latest every ``poll_interval_s`` (liveness, stall detection, sources that
    cannot say)."""

    poll_interval_s: float = 0.05
    physio_batch_s: float = 0.5
    health_interval_s: float = 2.0


@dataclass(slots=True)
class StreamStats:
    counter: SampleCounterCheck = field(default_factory=SampleCounterCheck)
    samples: int = 0
    status: str = "connected"
    stalls: int = 0  # times the stream went stalled (cumulative, for /metrics)


@dataclass(frozen=True, slots=True)
class RunSummary:
    """What a finished run did (printed by ``dyadsync demo``; asserted by tests)."""

    updates_sent: int
    messages_published: int
    dropped_messages: int
    streams: dict[str, dict[str, int | str]]
    recording: RecordingSummary | None = None

    def format(self) -> str:
        """Human summary: updates sent, samples received / lost / duplicated per stream."""
        lines = [
            f"Synchrony updates sent: {self.updates_sent}",
            f"Messages published: {self.messages_published} "
            f"(dropped for slow clients: {self.dropped_messages})",
            f"{'stream':<16} {'received':>9} {'lost':>6} {'duplicated':>10}  status",
        ]
        for key, stats in sorted(self.streams.items()):
            lines.append(
                f"{key:<16} {stats['received']:>9} {stats['lost']:>6} "
                f"{stats['duplicated']:>10}  {stats['status']}"
            )
        if self.recording is not None:
            lines.append(self.recording.format())
        return "\n".join(lines)


def stream_key(role: Role, signal: SignalKind | Derived) -> str:
    return f"{role.value}-{signal.value}"


class SessionService:
    """Runs one dyad: call :meth:`run` inside the event loop; stop with :meth:`request_stop`."""

    def __init__(
        self,
        *,
        sources: Sequence[FrameSource],
        pipeline: DyadPipeline,
        hub: Hub,
        messages: MessageFactory,
        mode: str = "live",
        config: ServiceConfig | None = None,
        recorder: SessionRecorder | None = None,
    ) -> None:
        """``mode`` "live": the pipeline's liveness clock is the LSL clock (a silent sensor
        is given up on after ``max_wait_s``). "replay": sources hold recorded data whose
        holes are already in the data, so the pipeline is only flushed at the end and
        the result does not depend on playback speed."""
        self._sources = list(sources)
        self._pipeline = pipeline
        self._hub = hub
        self._messages = messages
        self._mode = mode
        self._config = config or ServiceConfig()
        self._stop = asyncio.Event()
        self._wake = asyncio.Event()  # set by data arriving, and by a stop request
        self._stats: dict[str, StreamStats] = {
            stream_key(s.role, s.signal): StreamStats() for s in self._sources
        }
        self._pending: dict[tuple[Role, Derived], list[GridSamples]] = defaultdict(list)
        self._started_t = messages.now()
        self._recorder = recorder
        self._raw_sources: list[tuple[str, RawCapture]] = []
        # Each raw stream's <dyadsync> desc, built at its first chunk: only a connected
        # inlet knows its value and counter channels, and they do not change after that.
        self._raw_descs: dict[str, dict[str, str]] = {}
        self.updates_sent = 0

    def hello(self) -> Message:
        cfg = self._pipeline.config
        sync = cfg.synchrony
        return self._messages(
            "hello",
            server=f"dyadsync {SERVER_VERSION}",
            mode=self._mode,
            started_t=self._started_t,
            signals=[d.value for d in cfg.sync_signals],
            grid_hz=cfg.grid_hz,
            synchrony={"window_s": sync.window_s, "lag_s": sync.lag_s, "step_s": sync.step_s},
            thresholds={"z_enter": sync.episodes.z_enter, "z_exit": sync.episodes.z_exit},
            lag_convention=LAG_CONVENTION,
            # The file name only (the folder may name a person's home directory).
            recording=None if self._recorder is None else {"file": self._recorder.path.name},
        )

    def request_stop(self) -> None:
        self._stop.set()
        self._wake.set()

    async def run(
        self, *, duration_s: float | None = None, until: Callable[[], bool] | None = None
    ) -> RunSummary:
        """Process until ``duration_s`` elapses, ``until()`` is true (a replay that has
        played everything) or :meth:`request_stop` is called."""
        self._start_recording()
        self._wake_on_data(asyncio.get_running_loop())
        start = time.monotonic()
        last_flush = last_health = start
        try:
            while not self._stop.is_set():
                now = time.monotonic()
                if duration_s is not None and now - start >= duration_s:
                    break
                if until is not None and until():
                    break
                self._wake.clear()  # before stepping: data arriving meanwhile wakes us again
                self.step()
                if now - last_flush >= self._config.physio_batch_s:
                    self._flush_physio()
                    last_flush = now
                if now - last_health >= self._config.health_interval_s:
                    self._send(self._health())
                    last_health = now
                # Timing out is normal too: the poll interval elapsed without data.
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self._config.poll_interval_s)
        finally:
            for source in self._sources:
                if isinstance(source, DataWakeup):
                    source.set_wakeup(None)
            self.step()
            # End of the session: whatever the aligner still holds is final now.
            self._publish(self._pipeline.flush())
            self._flush_physio()
            self._send(self._health())
            for source in self._sources:
                source.close()
        recording = self._recorder.close() if self._recorder is not None else None
        return dataclasses.replace(self.summary(), recording=recording)

    def _wake_on_data(self, loop: asyncio.AbstractEventLoop) -> None:
        def wake() -> None:  # on an acquisition thread
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                loop.call_soon_threadsafe(self._wake.set)

        for source in self._sources:
            if isinstance(source, DataWakeup):
                source.set_wakeup(wake)

    def _start_recording(self) -> None:
        if self._recorder is None:
            return
        for source in self._sources:
            if isinstance(source, RawCapture):
                source.start_raw_capture()
                self._raw_sources.append((stream_key(source.role, source.signal), source))

    def step(self) -> None:
        """Poll every source once and publish what became final (never blocks)."""
        for source in self._sources:
            frames, events = source.poll()
            for event in events:
                self._on_status(event)
            for frame in frames:
                self._on_frame(frame)
        self._record_raw()
        if self._mode != "live":
            return
        # Liveness: a silent sensor must not stall the other person's synchrony. The only
        # clock read of the pipeline, on the LSL clock the frames are stamped with.
        self._publish(self._pipeline.advance(now_s=self._messages.now()))

    def summary(self) -> RunSummary:
        return RunSummary(
            updates_sent=self.updates_sent,
            messages_published=self._hub.published,
            dropped_messages=self._hub.dropped,
            streams=self.stream_stats(),
        )

    def _on_frame(self, frame: Frame) -> None:
        key = stream_key(frame.role, frame.signal)
        stats = self._stats.get(key)
        if stats is None:  # not a declared source's stream (every source's exist already)
            stats = self._stats[key] = StreamStats()
        stats.samples += int(frame.timestamps_s.size)
        if frame.counters is not None:
            # Segment-aware: a restarted source's counter starting again is no duplicate.
            stats.counter.push(frame.counters, segment=frame.segment)
        try:
            out = self._pipeline.push(frame)
        except SignalError as exc:
            # One bad frame must not end the session: the other streams go on, and this
            # stream goes on with its next frame. The error names times, never values.
            stamps = frame.timestamps_s[np.isfinite(frame.timestamps_s)]
            t_s = float(stamps[-1]) if stamps.size else self._messages.now()
            detail = f"{frame.timestamps_s.size} samples dropped: {exc}"
            self._on_status(
                StatusEvent(frame.role, frame.signal, StatusKind.BAD_SAMPLES, t_s, detail)
            )
            return
        self._publish(out)

    def _record_raw(self) -> None:
        recorder = self._recorder
        if recorder is None:
            return
        for key, source in self._raw_sources:
            for chunk in source.drain_raw():
                desc = self._raw_descs.get(key)
                if desc is None:
                    desc = self._raw_descs[key] = source.recording_desc()
                recorder.record_raw(key=key, desc=desc, chunk=chunk)
        for state, detail in recorder.alarms():
            # The recorder's texts name the file and the OS error, never sample values.
            log.error("%s", detail)
            self._send(self._messages("recording", state=state, detail=detail))

    def _send(self, message: Message) -> None:
        """Publish to every client and keep it in the recording."""
        self._hub.publish(message)
        if self._recorder is not None:
            self._recorder.record_message(message)

    def _publish(self, out: PipelineOutput) -> None:
        for role, derived, samples in out.physio:
            self._pending[(role, derived)].append(samples)
        for derived, update in out.sync:
            fields = sync_fields(update)
            self._send(self._messages("sync", t=update.t_s, signal=derived.value, **fields))
            self.updates_sent += 1
        for derived, event in out.episodes:
            fields = episode_fields(event)
            self._send(self._messages("episode", t=event.t_s, signal=derived.value, **fields))

    def _on_status(self, event: StatusEvent) -> None:
        key = stream_key(event.role, event.signal)
        if key in self._stats and event.kind is not StatusKind.BAD_SAMPLES:
            # "recovered" is news, not a state: the stream is connected again (the event
            # itself still goes out below).
            kind = StatusKind.CONNECTED if event.kind is StatusKind.RECOVERED else event.kind
            self._stats[key].status = kind.value
            if kind is StatusKind.STALLED:
                self._stats[key].stalls += 1
        # Status details are free of physiological values by contract, safe to log.
        log.info("stream %s: %s %s", key, event.kind.value, event.detail)
        self._send(
            self._messages(
                "status",
                t=event.t_s,
                role=event.role.value,
                signal=event.signal.value,
                kind=event.kind.value,
                detail=event.detail,
            )
        )

    def _flush_physio(self) -> None:
        for (role, derived), chunks in self._pending.items():
            if not chunks:
                continue
            t_s = np.concatenate([c.t_s for c in chunks])
            valid = np.concatenate([c.valid for c in chunks])
            values = np.where(valid, np.concatenate([c.values for c in chunks]), np.nan)
            self._send(
                self._messages(
                    "physio",
                    t=float(t_s[-1]),
                    role=role.value,
                    signal=derived.value,
                    t_s=t_s,
                    values=values,
                    valid=valid,
                )
            )
            chunks.clear()

    def stream_stats(self) -> dict[str, dict[str, int | str]]:
        """Per-stream counters, as in ``health.streams``, :attr:`RunSummary.streams` and
        ``/health``."""
        return {
            key: {
                "received": stats.samples,
                "lost": stats.counter.lost,
                "duplicated": stats.counter.duplicated,
                "status": stats.status,
                "stalls": stats.stalls,
                "restarts": stats.counter.restarts,
            }
            for key, stats in self._stats.items()
        }

    def _health(self) -> Message:
        return self._messages(
            "health",
            streams=self.stream_stats(),
            updates_sent=self.updates_sent,
            clients=self._hub.consumer_count,
            dropped_messages=self._hub.dropped,
        )

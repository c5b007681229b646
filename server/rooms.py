"""The rooms of one service: each a dyad with its own hub, pipeline and service, isolated.

:func:`assemble_session` builds one room's core (pipeline, service, recording).
A clinic runs several therapy rooms on one server. Each :class:`Room` goes through
``waiting`` (for its sensors: discovery is retried in a worker thread until they appear,
so a room whose devices are switched on late joins when they are) -> ``running`` ->
``stopped``; a room whose pipeline raises goes to ``failed`` with the error as its
detail, and the other rooms go on (each room's work runs in its own task, and every
exception of that task ends there). The room's :class:`~server.hub.Hub` exists from the
start, so outputs (MQTT, LSL) can subscribe before the room runs.

:class:`Rooms` is the directory the websocket endpoint and the dashboard look rooms up
in (:class:`server.ws.RoomDirectory`), and what ``/health`` and ``/metrics`` report.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

import pylsl

from dsp.exceptions import ConfigError
from dsp.pipeline import SOURCE_OF, DyadPipeline, PipelineConfig
from dsp.types import StatusKind
from server.catalogue import RecordedSession, RecordingOptions
from server.health import OutputHealth, RoomHealth, RoomState, StreamHealth
from server.hub import Hub
from server.protocol import MessageFactory
from server.service import FrameSource, RunSummary, ServiceConfig, SessionService
from server.ws import RoomChannel
from streamer.errors import StreamNotFoundError
from streamer.session import SessionConfig, synchrony_config

log = logging.getLogger(__name__)

# Room names appear in URL paths, MQTT topics and LSL source ids: keep them plain.
_ROOM_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")


def pipeline_config(session: SessionConfig) -> PipelineConfig:
    """The session's ``[synchrony]`` table as pipeline + engine settings."""
    # Synchronise what the session records (the pipeline's defaults, minus missing signals).
    sync_signals = tuple(
        d for d in PipelineConfig().sync_signals if SOURCE_OF[d] in session.signals
    )
    return PipelineConfig(
        grid_hz=float(session.synchrony["grid_hz"]),
        sync_signals=sync_signals,
        synchrony=synchrony_config(session.synchrony),
    )


@dataclass(frozen=True, slots=True)
class SessionParts:
    """The core of a served session: hub, message factory, pipeline, service and, when
    recording, the recorded session (file + store row)."""

    hub: Hub
    messages: MessageFactory
    pipeline: DyadPipeline
    service: SessionService
    recorded: RecordedSession | None = None


def assemble_session(
    session: SessionConfig,
    *,
    sources: Sequence[FrameSource],
    hub: Hub | None = None,
    mode: str = "live",
    recording: RecordingOptions | None = None,
    clock: Callable[[], float] = pylsl.local_clock,
    service_config: ServiceConfig | None = None,
) -> SessionParts:
    """Build pipeline and service for ``session`` fed by ``sources``, publishing to
    ``hub`` (a new one if not given); with ``recording``, create the recording file and
    its store row now. ``clock`` is the session clock messages are stamped with: the LSL
    clock live, the playback position (recording time) in a replay."""
    hub = Hub() if hub is None else hub
    messages = MessageFactory(session=session.room, clock=clock)
    rates = {(s.role, s.signal): s.rate_hz for s in sources}
    config = pipeline_config(session)
    pipeline = DyadPipeline(stream_rates_hz=rates, config=config)
    recorded = (
        None
        if recording is None
        else RecordedSession(options=recording, session=session, pipeline=config, clock=clock)
    )
    service = SessionService(
        sources=sources,
        pipeline=pipeline,
        hub=hub,
        messages=messages,
        mode=mode,
        config=service_config,
        recorder=None if recorded is None else recorded.recorder,
    )
    return SessionParts(
        hub=hub, messages=messages, pipeline=pipeline, service=service, recorded=recorded
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class RoomPlan:
    """How to run one room. ``sources`` already open (a replay, or a lone room whose
    streams were found before serving), or None to discover the session's streams in
    the background, retrying every ``discovery_s`` until they appear. ``clock`` stamps
    the messages (the LSL clock live, the playback position in a replay); ``until`` ends
    the room early (a replay played to its end)."""

    session: SessionConfig
    sources: Sequence[FrameSource] | None = None
    mode: str = "live"
    recording: RecordingOptions | None = None
    clock: Callable[[], float] = pylsl.local_clock
    until: Callable[[], bool] | None = None
    service_config: ServiceConfig | None = None
    discovery_s: float = 5.0


class Room:
    """One dyad of the service; :meth:`run` takes it through its states."""

    def __init__(self, plan: RoomPlan) -> None:
        self.plan = plan
        self.name = plan.session.room
        self.hub = Hub()
        self.state = RoomState.WAITING
        self.detail = "waiting for its sensors" if plan.sources is None else "starting"
        self.summary: RunSummary | None = None
        self._parts: SessionParts | None = None
        self._stop = asyncio.Event()
        self._started_s = time.monotonic()

    @property
    def channel(self) -> RoomChannel | None:
        parts = self._parts
        if parts is None or self.state is not RoomState.RUNNING:
            return None
        return RoomChannel(hub=parts.hub, messages=parts.messages, hello=parts.service.hello)

    def request_stop(self) -> None:
        self._stop.set()
        if self._parts is not None:
            self._parts.service.request_stop()

    async def run(self, *, duration_s: float | None) -> RunSummary | None:
        """Discover (if needed) and serve until stopped, the duration elapses or the
        plan's ``until``; never raises (a failure is the room's state)."""
        deadline = None if duration_s is None else time.monotonic() + duration_s
        try:
            sources = self.plan.sources
            if sources is None:
                sources = await self._discover(deadline)
            if sources is None:  # stopped while waiting
                self.state, self.detail = RoomState.STOPPED, "stopped before its sensors appeared"
                return None
            self.summary = await self._serve(sources, deadline)
        except Exception as exc:  # the room's own failure, whatever it is: the others go on
            log.exception("room %s failed", self.name)
            self.state, self.detail = RoomState.FAILED, f"{type(exc).__name__}: {exc}"
            return None
        self.state, self.detail = RoomState.STOPPED, "session ended"
        return self.summary

    async def _discover(self, deadline: float | None) -> Sequence[FrameSource] | None:
        from streamer.inlet import open_session_inlets

        while not self._stop.is_set() and (deadline is None or time.monotonic() < deadline):
            try:
                return await asyncio.to_thread(
                    open_session_inlets, self.plan.session, timeout_s=self.plan.discovery_s
                )
            except StreamNotFoundError as exc:
                self.detail = str(exc).splitlines()[0]
        return None

    async def _serve(self, sources: Sequence[FrameSource], deadline: float | None) -> RunSummary:
        plan = self.plan
        parts = assemble_session(
            plan.session,
            sources=sources,
            hub=self.hub,
            mode=plan.mode,
            recording=plan.recording,
            clock=plan.clock,
            service_config=plan.service_config,
        )
        self._parts = parts
        try:
            if self._stop.is_set():
                parts.service.request_stop()
            self.state, self.detail = RoomState.RUNNING, "serving"
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            summary = await parts.service.run(duration_s=remaining, until=plan.until)
        finally:
            for source in sources:
                source.close()
            if parts.recorded is not None:
                parts.recorded.recorder.close()  # footers even on a failure (idempotent)
        if parts.recorded is not None and summary.recording is not None:
            parts.recorded.finish(summary.recording, coregulation=parts.pipeline.summary())
        return summary

    def health(self, outputs: Mapping[str, OutputHealth]) -> RoomHealth:
        service = None if self._parts is None else self._parts.service
        streams = {} if service is None else service.stream_stats()
        return RoomHealth(
            room=self.name,
            state=self.state,
            detail=self.detail,
            uptime_s=time.monotonic() - self._started_s,
            streams={
                key: StreamHealth(
                    samples_received=int(stats["received"]),
                    samples_lost=int(stats["lost"]),
                    samples_duplicated=int(stats["duplicated"]),
                    stalls=int(stats["stalls"]),
                    status=StatusKind(str(stats["status"])),
                )
                for key, stats in streams.items()
            },
            clients=self.hub.consumer_count,
            updates_sent=0 if service is None else service.updates_sent,
            dropped_messages=self.hub.dropped,
            queue_depths=self.hub.queue_depths(),
            outputs=outputs,
        )


class Output(Protocol):
    """Something that carries the rooms' messages elsewhere (MQTT bridge, LSL outlets)."""

    async def run(self) -> None: ...

    def health(self, room: str) -> OutputHealth: ...


class Rooms:
    """The service's rooms by name (a :class:`server.ws.RoomDirectory`)."""

    def __init__(self, plans: Sequence[RoomPlan]) -> None:
        names = [plan.session.room for plan in plans]
        if not names:
            raise ConfigError("no room to run: give at least one session file")
        for name in names:
            if not _ROOM_NAME.fullmatch(name):
                raise ConfigError(
                    f"room name {name!r} cannot be used in URLs and topics: use letters, "
                    "digits, '-' and '_' (at most 64), starting with a letter or digit",
                    key="session.room",
                )
        duplicated = sorted({name for name in names if names.count(name) > 1})
        if duplicated:
            raise ConfigError(
                f"two sessions use the room name {duplicated[0]!r}: each room needs its own "
                "[session] room",
                key="session.room",
            )
        self._rooms = {plan.session.room: Room(plan) for plan in plans}
        # Outputs (MQTT, LSL) serving the rooms, by name, for their health counters.
        self.outputs: dict[str, Output] = {}

    def __iter__(self) -> Iterator[Room]:
        return iter(self._rooms.values())

    def __getitem__(self, name: str) -> Room:
        return self._rooms[name]

    def names(self) -> Sequence[str]:
        return list(self._rooms)

    def channel(self, name: str) -> RoomChannel | None:
        room = self._rooms.get(name)
        return None if room is None else room.channel

    def state(self, name: str) -> str:
        room = self._rooms[name]
        return f"{room.state.value}: {room.detail}"

    def health(self) -> list[RoomHealth]:
        """Each room's snapshot, with the counters of the outputs serving it."""
        return [
            room.health({name: output.health(room.name) for name, output in self.outputs.items()})
            for room in self._rooms.values()
        ]

    def request_stop(self) -> None:
        for room in self._rooms.values():
            room.request_stop()

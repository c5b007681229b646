"""Wiring of one live (or replayed) session: service + websocket + dashboard.

Used by ``dyadsync run`` and ``dyadsync demo``; everything runs on one asyncio loop (the
Bokeh server shares it through tornado), so shutdown is a single ordered sequence.

Start-up order, so that every mistake in what was asked is reported at once rather than
after stream discovery (which waits seconds for devices): :class:`ServeOptions` validates
host, token, ports and origins when it is built; :func:`bind_ports` then binds and listens
on both ports (a port in use fails here); only then does the caller discover the streams,
and :func:`serve_session` starts serving on the sockets already bound. Binding first is
not racy, unlike probing a port and binding it later, and keeps discovery a plain blocking
call outside the event loop: a browser that connects in between waits in the listen
backlog and is served once the session starts.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
import sys
import webbrowser
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import pylsl

from dsp.exceptions import ConfigError
from dsp.pipeline import SOURCE_OF, DyadPipeline, PipelineConfig
from server.catalogue import RecordedSession, RecordingOptions
from server.exposure import is_unspecified
from server.hub import Hub
from server.protocol import MessageFactory
from server.service import FrameSource, RunSummary, ServiceConfig, SessionService
from server.ws import (
    WebsocketConfig,
    WebsocketEndpoint,
    listen_tcp,
    machine_names,
    require_origins,
)
from streamer.session import SessionConfig, synchrony_config

if TYPE_CHECKING:
    from dashboard.serve import DashboardHandle

# The signals that end a session in order (summary printed), whoever sends them: Ctrl-C,
# a service manager's stop, a closed terminal.
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


@dataclass(frozen=True, slots=True, kw_only=True)
class ServeOptions:
    """How to expose a session: websocket settings, dashboard port, run time, browser.

    Validated when built (errors name the ``dyadsync`` options): the websocket's token
    and origin rules (:class:`WebsocketConfig`), the dashboard port, and that a dashboard
    on every interface is told its origins (``--allow-origin``).
    """

    websocket: WebsocketConfig = field(default_factory=WebsocketConfig)
    dashboard_port: int = 5006
    duration_s: float | None = None
    open_browser: bool = False

    def __post_init__(self) -> None:
        if not 0 <= self.dashboard_port <= 65535:
            raise ConfigError(
                f"--dashboard-port {self.dashboard_port} is not in 0..65535 (0 picks a free one)"
            )
        require_origins(
            host=self.websocket.host,
            origins=self.websocket.allowed_origins,
            port_hint=self.dashboard_port,
        )


class BoundPorts:
    """The websocket and dashboard sockets, bound and listening but not yet served.

    Close them (or use the object as a context manager) if the session does not start;
    :func:`serve_session` takes them over otherwise.
    """

    __slots__ = ("dashboard", "websocket")

    def __init__(self, *, websocket: socket.socket, dashboard: socket.socket) -> None:
        self.websocket = websocket
        self.dashboard = dashboard

    def close(self) -> None:
        """Stop listening (idempotent; harmless after the servers closed them)."""
        self.websocket.close()
        self.dashboard.close()

    def __enter__(self) -> BoundPorts:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


def bind_ports(options: ServeOptions) -> BoundPorts:
    """Bind both ports now; :class:`~dsp.exceptions.ServeError` naming ``--ws-port``,
    ``--dashboard-port`` or ``--host`` if one cannot be bound."""
    host = options.websocket.host
    websocket = listen_tcp(
        host=host, port=options.websocket.port, what="websocket clients", flag="--ws-port"
    )
    try:
        dashboard = listen_tcp(
            host=host, port=options.dashboard_port, what="the dashboard", flag="--dashboard-port"
        )
    except BaseException:
        websocket.close()
        raise
    return BoundPorts(websocket=websocket, dashboard=dashboard)


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

    def websocket(self, config: WebsocketConfig) -> WebsocketEndpoint:
        return WebsocketEndpoint(
            hub=self.hub, config=config, messages=self.messages, hello=self.service.hello
        )


def assemble_session(
    session: SessionConfig,
    *,
    sources: Sequence[FrameSource],
    mode: str = "live",
    recording: RecordingOptions | None = None,
    clock: Callable[[], float] = pylsl.local_clock,
    service_config: ServiceConfig | None = None,
) -> SessionParts:
    """Build hub, pipeline and service for ``session`` fed by ``sources``; with
    ``recording``, create the recording file and its store row now. ``clock`` is the
    session clock messages are stamped with: the LSL clock live, the playback position
    (recording time) in a replay."""
    hub = Hub()
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


async def serve_session(
    session: SessionConfig,
    *,
    sources: Sequence[FrameSource],
    options: ServeOptions,
    ports: BoundPorts | None = None,
    mode: str = "live",
    recording: RecordingOptions | None = None,
    clock: Callable[[], float] = pylsl.local_clock,
    until: Callable[[], bool] | None = None,
    service_config: ServiceConfig | None = None,
) -> RunSummary:
    """Serve until the duration elapses, ``until()`` is true (a replay played to its end)
    or a stop signal (:data:`STOP_SIGNALS`) arrives; returns the run summary.

    ``ports`` are the sockets from :func:`bind_ports`, bound before the caller discovered
    ``sources``; without them both ports are bound now. The sources and ports are closed
    when this returns or raises. Must run on the main thread (it handles the signals).
    """
    parts = assemble_session(
        session,
        sources=sources,
        mode=mode,
        recording=recording,
        clock=clock,
        service_config=service_config,
    )
    service = parts.service
    endpoint = parts.websocket(options.websocket)
    async with contextlib.AsyncExitStack() as cleanup:
        # Exits in reverse order: servers stop, signal handlers go back, sockets and
        # sources close (service.run closes the sources too; closing is idempotent).
        cleanup.callback(_close_all, sources)
        if parts.recorded is not None:
            # Footers even if serving fails to start (closing twice is harmless).
            cleanup.callback(parts.recorded.recorder.close)
        ports = ports if ports is not None else bind_ports(options)
        cleanup.callback(ports.close)
        cleanup.enter_context(_stop_on_signals(service.request_stop))
        await endpoint.start(listener=ports.websocket)
        cleanup.push_async_callback(endpoint.stop)
        # start_dashboard adds the token to the feed's URL itself.
        dashboard = _start_dashboard(endpoint.local_url, options, listener=ports.dashboard)
        cleanup.callback(dashboard.stop)
        _announce(dashboard=dashboard, endpoint=endpoint, options=options)
        if options.open_browser:
            webbrowser.open(dashboard.url)
        summary = await service.run(duration_s=options.duration_s, until=until)
    if parts.recorded is not None and summary.recording is not None:
        parts.recorded.finish(summary.recording, coregulation=parts.pipeline.summary())
    return summary


def _close_all(sources: Sequence[FrameSource]) -> None:
    for source in sources:
        source.close()


@contextlib.contextmanager
def _stop_on_signals(request_stop: Callable[[], None]) -> Iterator[None]:
    """While serving, each of :data:`STOP_SIGNALS` asks the service to stop (it then
    drains and returns its summary). The handlers in place before (the CLI's) are put
    back afterwards: asyncio's own removal resets them to the defaults, and a SIGTERM
    while the summary prints would then kill the process without it."""
    loop = asyncio.get_running_loop()
    previous = {sig: signal.getsignal(sig) for sig in STOP_SIGNALS}

    def on_signal(sig: signal.Signals) -> None:
        print(f"dyadsync: {sig.name} received, stopping", file=sys.stderr, flush=True)
        request_stop()

    for sig in STOP_SIGNALS:
        loop.add_signal_handler(sig, on_signal, sig)
    try:
        yield
    finally:
        for sig, handler in previous.items():
            loop.remove_signal_handler(sig)
            if handler is not None:  # None: installed outside Python, nothing to restore
                signal.signal(sig, handler)


def _announce(
    *, dashboard: DashboardHandle, endpoint: WebsocketEndpoint, options: ServeOptions
) -> None:
    """Print where to open the dashboard: URLs that work from where they will be opened.

    On loopback or a single address that address. On every interface (``0.0.0.0``,
    ``::``) the ``--allow-origin`` names on the dashboard's port (the names other
    machines use, and the only ones the dashboard accepts besides loopback), then the
    bind address and this machine's own URL.
    """
    host = options.websocket.host
    if not is_unspecified(host):
        print(f"Dashboard: {dashboard.url}", flush=True)
        print(f"Websocket: {endpoint.url}", flush=True)
        return
    remote = [
        parts
        for parts in map(urlsplit, options.websocket.allowed_origins)
        if (parts.port or (443 if parts.scheme == "https" else 80)) == dashboard.port
    ]
    for parts in remote:
        print(f"Dashboard: {dashboard.url_for(parts.hostname or '', scheme=parts.scheme)}")
    ws_host = remote[0].hostname if remote else (machine_names() or ["127.0.0.1"])[0]
    print(f"Websocket: {endpoint.url_for(ws_host or '127.0.0.1')}")
    print(
        f"Listening on every interface ({host}): dashboard port {dashboard.port}, websocket "
        f"port {endpoint.port}; on this machine: {dashboard.url}",
        flush=True,
    )
    if not remote:
        names = machine_names() or ["HOST"]
        print(
            f"dyadsync: warning: no --allow-origin is on dashboard port {dashboard.port}, so "
            "browsers on other machines will be refused; add e.g. "
            f"--allow-origin http://{names[0]}:{dashboard.port}",
            file=sys.stderr,
            flush=True,
        )


def _start_dashboard(
    ws_url: str, options: ServeOptions, *, listener: socket.socket
) -> DashboardHandle:
    from dashboard.serve import start_dashboard  # bokeh is heavy: import only when serving

    return start_dashboard(
        ws_url=ws_url,
        host=options.websocket.host,
        port=options.dashboard_port,
        token=options.websocket.token,
        allow_websocket_origins=options.websocket.allowed_origins,
        listener=listener,
    )

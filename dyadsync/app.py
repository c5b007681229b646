"""Wiring of a service: its rooms (one live or replayed dyad each) + websocket + dashboard.

Used by ``dyadsync run``, ``demo`` and ``replay``; everything runs on one asyncio loop (the
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
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import pylsl

from dsp.exceptions import ConfigError
from server.catalogue import RecordingOptions
from server.closing import ClosedOnExit
from server.errors import ServeError
from server.exposure import is_unspecified
from server.outputs import OutputOptions, RunningOutputs
from server.rooms import RoomPlan, Rooms
from server.service import FrameSource, RunSummary, ServiceConfig
from server.signals import STOP_SIGNALS
from server.tls import TlsConfig, exposure_warning
from server.ws import (
    WebsocketConfig,
    WebsocketEndpoint,
    default_port,
    listen_tcp,
    machine_names,
    require_origins,
)
from streamer.session import SessionConfig

if TYPE_CHECKING:
    from dashboard.serve import DashboardHandle


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
    tls: TlsConfig | None = None
    outputs: OutputOptions = field(default_factory=OutputOptions)

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


class BoundPorts(ClosedOnExit):
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


def bind_ports(options: ServeOptions) -> BoundPorts:
    """Bind both ports now; :class:`~server.errors.ServeError` naming ``--ws-port``,
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
    """Serve one room whose ``sources`` are open (see :func:`serve_rooms`); its summary."""
    plan = RoomPlan(
        session=session,
        sources=sources,
        mode=mode,
        recording=recording,
        clock=clock,
        until=until,
        service_config=service_config,
    )
    summaries = await serve_rooms([plan], options=options, ports=ports)
    summary = summaries[session.room]
    if summary is None:
        raise ServeError(f"the session stopped: {summaries.failures[session.room]}")
    return summary


class RoomSummaries(dict[str, RunSummary | None]):
    """Each room's run summary (None for a room that never ran or failed: see
    :attr:`failures` for why)."""

    def __init__(self, rooms: Rooms) -> None:
        super().__init__((room.name, room.summary) for room in rooms)
        self.failures = {room.name: room.detail for room in rooms if room.summary is None}


async def serve_rooms(
    plans: Sequence[RoomPlan],
    *,
    options: ServeOptions,
    ports: BoundPorts | None = None,
) -> RoomSummaries:
    """Serve every room until the duration elapses, each room's plan ends it (a replay
    played to its end) or a stop signal (:data:`STOP_SIGNALS`) arrives.

    One websocket endpoint (``/ws/<room>``) and one dashboard (``/dashboard/<room>``,
    a landing page at ``/``) serve all rooms; a room that fails or waits for its sensors
    does not hold up the others. ``ports`` are the sockets from :func:`bind_ports`, bound
    before the caller discovered any stream; without them both ports are bound now. The
    sources and ports are closed when this returns or raises. Must run on the main
    thread (it handles the signals).
    """
    rooms = Rooms(plans)
    endpoint = WebsocketEndpoint(
        rooms=rooms,
        config=options.websocket,
        ssl_context=None if options.tls is None else options.tls.server_context(),
    )
    async with contextlib.AsyncExitStack() as cleanup:
        # Exits in reverse order: servers stop, signal handlers go back, sockets and
        # sources close (each room closes its sources too; closing is idempotent).
        for plan in plans:
            if plan.sources is not None:
                cleanup.callback(_close_all, plan.sources)
        ports = ports if ports is not None else bind_ports(options)
        cleanup.callback(ports.close)
        outputs = RunningOutputs(rooms, options.outputs)
        cleanup.push_async_callback(outputs.stop)
        cleanup.enter_context(_stop_on_signals(rooms.request_stop))
        await endpoint.start(listener=ports.websocket)
        cleanup.push_async_callback(endpoint.stop)
        # start_dashboard adds the token to the feeds' URLs itself.
        dashboard = _start_dashboard(rooms, endpoint, options, listener=ports.dashboard)
        cleanup.callback(dashboard.stop)
        _announce(dashboard=dashboard, endpoint=endpoint, options=options)
        if options.open_browser:
            webbrowser.open(dashboard.url)
        await asyncio.gather(*(room.run(duration_s=options.duration_s) for room in rooms))
    return RoomSummaries(rooms)


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
    bind address and this machine's own URL. With several rooms the first URL is the
    landing page listing them, then one line per room.
    """
    host = options.websocket.host
    warning = exposure_warning(host=host, tls=options.tls)
    if warning is not None:
        print(f"dyadsync: warning: {warning}", file=sys.stderr, flush=True)
    scheme = "https" if options.tls is not None else "http"
    names = machine_names() if is_unspecified(host) else []
    remote = [
        parts
        for parts in map(urlsplit, options.websocket.allowed_origins)
        if (parts.port or default_port(parts.scheme)) == dashboard.port
    ]
    if not is_unspecified(host):
        pages = [(host, scheme)]
    elif remote:
        pages = [(parts.hostname or "", parts.scheme) for parts in remote]
    else:
        pages = [((names or ["127.0.0.1"])[0], scheme)]
    for page_host, page_scheme in pages:
        print(f"Dashboard: {dashboard.url_for(page_host, scheme=page_scheme)}", flush=True)
    ws_host = pages[0][0]
    if len(dashboard.rooms) == 1:
        print(f"Websocket: {endpoint.url_for(ws_host)}", flush=True)
    else:
        page_host, page_scheme = pages[0]
        for room in dashboard.rooms:
            page = dashboard.url_for(page_host, scheme=page_scheme, room=room)
            ws = endpoint.url_for(ws_host, room=room)
            print(f"  room {room}: {page}  websocket {ws}", flush=True)
    if not is_unspecified(host):
        return
    print(
        f"Listening on every interface ({host}): dashboard port {dashboard.port}, websocket "
        f"port {endpoint.port}; on this machine: {dashboard.url}",
        flush=True,
    )
    if not remote:
        print(
            f"dyadsync: warning: no --allow-origin is on dashboard port {dashboard.port}, so "
            "browsers on other machines will be refused; add e.g. "
            f"--allow-origin {scheme}://{(names or ['HOST'])[0]}:{dashboard.port}",
            file=sys.stderr,
            flush=True,
        )


def _start_dashboard(
    rooms: Rooms, endpoint: WebsocketEndpoint, options: ServeOptions, *, listener: socket.socket
) -> DashboardHandle:
    from dashboard.serve import start_dashboard  # bokeh is heavy: import only when serving

    return start_dashboard(
        rooms={name: endpoint.local_url(name) for name in rooms.names()},
        status=rooms.health,
        host=options.websocket.host,
        port=options.dashboard_port,
        token=options.websocket.token,
        allow_websocket_origins=options.websocket.allowed_origins,
        tls=options.tls,
        listener=listener,
    )

"""Wiring of one live (or replayed) session: service + websocket + dashboard.

Used by ``dyadsync run`` and ``dyadsync demo``; everything runs on one asyncio loop (the
Bokeh server shares it through tornado), so shutdown is a single ordered sequence.
"""

from __future__ import annotations

import asyncio
import signal
import webbrowser
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import pylsl

from dsp.exceptions import DyadsyncError, ServeError
from dsp.pipeline import SOURCE_OF, DyadPipeline, PipelineConfig
from server.hub import Hub
from server.protocol import MessageFactory
from server.service import FrameSource, RunSummary, SessionService
from server.ws import WebsocketConfig, WebsocketEndpoint
from streamer.session import SessionConfig, synchrony_config

if TYPE_CHECKING:
    from dashboard.serve import DashboardHandle


@dataclass(frozen=True, slots=True, kw_only=True)
class ServeOptions:
    """How to expose a session: websocket settings, dashboard port, run time, browser."""

    websocket: WebsocketConfig = field(default_factory=WebsocketConfig)
    dashboard_port: int = 5006
    duration_s: float | None = None
    open_browser: bool = False


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
    """The I/O-free core of a served session: the hub, its message factory and the service."""

    hub: Hub
    messages: MessageFactory
    service: SessionService

    def websocket(self, config: WebsocketConfig) -> WebsocketEndpoint:
        return WebsocketEndpoint(
            hub=self.hub, config=config, messages=self.messages, hello=self.service.hello
        )


def assemble_session(
    session: SessionConfig, *, sources: Sequence[FrameSource], mode: str = "live"
) -> SessionParts:
    """Build hub, pipeline and service for ``session`` fed by ``sources``."""
    hub = Hub()
    messages = MessageFactory(session=session.room, clock=pylsl.local_clock)
    rates = {(s.role, s.signal): s.rate_hz for s in sources}
    pipeline = DyadPipeline(stream_rates_hz=rates, config=pipeline_config(session))
    service = SessionService(
        sources=sources, pipeline=pipeline, hub=hub, messages=messages, mode=mode
    )
    return SessionParts(hub=hub, messages=messages, service=service)


async def serve_session(
    session: SessionConfig,
    *,
    sources: Sequence[FrameSource],
    options: ServeOptions,
    mode: str = "live",
) -> RunSummary:
    """Serve until the duration elapses or SIGINT/SIGTERM; returns the run summary."""
    parts = assemble_session(session, sources=sources, mode=mode)
    service = parts.service
    endpoint = parts.websocket(options.websocket)
    try:
        await endpoint.start()
        # start_dashboard adds the token to the feed's URL itself.
        dashboard = _start_dashboard(endpoint.url, options)
    except DyadsyncError:
        await endpoint.stop()
        for source in sources:
            source.close()
        raise
    print(f"Dashboard: {dashboard.url}", flush=True)
    print(f"Websocket: {endpoint.url}", flush=True)
    if options.open_browser:
        webbrowser.open(dashboard.url)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, service.request_stop)
    try:
        return await service.run(duration_s=options.duration_s)
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
        dashboard.stop()
        await endpoint.stop()


def _start_dashboard(ws_url: str, options: ServeOptions) -> DashboardHandle:
    from dashboard.serve import start_dashboard  # bokeh is heavy: import only when serving

    try:
        return start_dashboard(
            ws_url=ws_url,
            host=options.websocket.host,
            port=options.dashboard_port,
            token=options.websocket.token,
            allow_websocket_origins=list(options.websocket.allowed_origins) or None,
        )
    except OSError as exc:
        where = f"{options.websocket.host}:{options.dashboard_port}"
        raise ServeError(
            f"cannot serve the dashboard on {where}: {exc.strerror}; "
            "choose another --dashboard-port (0 picks a free one) or --host"
        ) from None

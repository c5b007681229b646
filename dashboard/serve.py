"""Run the dashboard: a Bokeh server on the caller's event loop.

:func:`start_dashboard` is the one entry point. The Bokeh server is attached to the
currently running asyncio loop (tornado's ``IOLoop.current()``) and never starts, stops or
owns that loop, so the dyadsync service and the dashboard share one loop. Every browser
session gets its own :class:`~dashboard.state.DashboardState`, its own websocket
connection to the server (:func:`~dashboard.feed.run_feed`) and a display tick that
applies what arrived (``ColumnDataSource.stream`` with a rollover, so memory is bounded).
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import socket
import time
from typing import Any
from urllib.parse import urlencode, urlsplit

from bokeh.application import Application
from bokeh.application.handlers.function import FunctionHandler
from bokeh.document import Document
from bokeh.models.widgets.markups import Div
from bokeh.server.callbacks import PeriodicCallback
from bokeh.server.contexts import BokehSessionContext
from bokeh.server.server import Server
from tornado.ioloop import IOLoop

from dsp.exceptions import ConfigError
from server.exposure import is_loopback, is_unspecified

from .app import DashboardView
from .feed import run_feed, with_token
from .state import DashboardState

log = logging.getLogger(__name__)

# Bokeh loggers that warn on every closed browser tab ("Failed sending message as
# connection was closed"): routine for a dashboard, so only shown when the application
# asked for INFO or more detail.
_TAB_CLOSE_LOGGERS = ("bokeh.server.views.ws", "bokeh.server.protocol_handler")

APP_PATH = "/dashboard"

# Display tick: 4 redraws per second feels live for signals on a 4 Hz grid without
# making the browser redraw more often than anything changes.
TICK_MS = 250


class _LiveSession:
    """One browser session's feed task and display tick, stoppable from the handle."""

    __slots__ = ("_doc", "_feed", "_tick")

    def __init__(self, doc: Document, feed: asyncio.Task[None], tick: PeriodicCallback) -> None:
        self._doc = doc
        self._feed = feed
        self._tick: PeriodicCallback | None = tick

    def stop(self) -> None:
        """Stop feeding and ticking. The page then stops receiving heartbeats, and its
        watchdog greys it out, rather than showing the last state as if it were live."""
        self._feed.cancel()
        if self._tick is not None:
            self._doc.remove_periodic_callback(self._tick)
            self._tick = None

    def forget_tick(self) -> None:
        """Bokeh destroyed the session (browser gone) and its callbacks with it."""
        self._tick = None


class DashboardHandle:
    """A running dashboard server; :attr:`url` opens it, :meth:`stop` shuts it down."""

    __slots__ = ("_server", "_sessions", "_stopped", "url")

    def __init__(self, server: Server, url: str, sessions: set[_LiveSession]) -> None:
        self._server = server
        self._sessions = sessions
        self._stopped = False
        self.url = url

    def stop(self) -> None:
        """Stop every session's websocket feed and display tick, stop listening.
        Idempotent. Must be called on the event loop the dashboard runs on."""
        for session in list(self._sessions):
            session.stop()
        self._sessions.clear()
        if not self._stopped:
            self._stopped = True
            self._server.stop()
            self._server.unlisten()


def _bokeh_origin(origin: str) -> str:
    """``http://host:port`` (a browser Origin) or ``host:port`` -> Bokeh's ``host:port``."""
    if "://" not in origin:
        return origin
    parts = urlsplit(origin)
    if parts.hostname is None:
        raise ConfigError(
            f"not an origin: {origin!r}; expected http://host:port", key="allow_websocket_origins"
        )
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return f"{parts.hostname}:{port}"


def _free_port(host: str) -> int:
    # Bokeh's Server binds its own sockets, so ask the OS for a free port first (the tiny
    # window before Bokeh binds it is acceptable for tests and ad-hoc runs).
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


def _token_ok(doc: Document, token: str | None) -> bool:
    if token is None:
        return True
    # Under the Bokeh server the context is a BokehSessionContext carrying the HTTP request.
    context = doc.session_context
    request = context.request if isinstance(context, BokehSessionContext) else None
    arguments: dict[str, Any] = request.arguments if request is not None else {}
    given = arguments.get("token") or [b""]
    return hmac.compare_digest(given[0], token.encode())


def _session_builder(ws_url: str, token: str | None, sessions: set[_LiveSession]) -> Any:
    """The FunctionHandler body: builds one browser session's document."""

    def build(doc: Document) -> None:
        doc.title = "dyadsync"
        if not _token_ok(doc, token):
            doc.add_root(Div(text="Access denied: open the dashboard URL including its token."))
            return
        state = DashboardState()
        view = DashboardView()
        view.attach(doc)
        view.render(state.take_updates(now_s=time.monotonic()))

        feed = asyncio.get_running_loop().create_task(run_feed(ws_url, state))
        feed.add_done_callback(_log_feed_end)

        def tick() -> None:
            view.render(state.take_updates(now_s=time.monotonic()))

        session = _LiveSession(doc, feed, doc.add_periodic_callback(tick, TICK_MS))
        sessions.add(session)

        def on_destroyed(_context: object) -> None:
            session.forget_tick()
            session.stop()
            sessions.discard(session)

        doc.on_session_destroyed(on_destroyed)

    return build


def _log_feed_end(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("dashboard websocket feed failed", exc_info=task.exception())


def _quiet_tab_close_warnings() -> None:
    if logging.getLogger().getEffectiveLevel() > logging.INFO:
        for name in _TAB_CLOSE_LOGGERS:
            logging.getLogger(name).setLevel(logging.ERROR)


def start_dashboard(
    *,
    ws_url: str,
    host: str = "127.0.0.1",
    port: int = 5006,
    token: str | None = None,
    allow_websocket_origins: list[str] | None = None,
) -> DashboardHandle:
    """Start the dashboard server on the running event loop and return its handle.

    ``ws_url`` is the dyadsync websocket endpoint (``ws://HOST:PORT/ws``); each browser
    session connects to it, adding ``token`` when given. Bound to anything but loopback
    the dashboard requires ``token`` (then the page URL carries ``?token=``, and
    :attr:`DashboardHandle.url` includes it). ``port=0`` picks a free port.
    ``allow_websocket_origins`` is the exact allow-list of browser origins
    (``http://host:port`` or ``host:port``) for the page's websocket; by default only the
    address served (required when ``host`` is ``0.0.0.0`` or ``::``).
    Must be called from a coroutine or callback running on the event loop.
    """
    if not is_loopback(host) and not token:
        raise ConfigError(
            f"the dashboard is bound to {host!r}, which is reachable from the network; "
            "pass a token (or bind to 127.0.0.1)",
            key="token",
        )
    ws_parts = urlsplit(ws_url)
    if ws_parts.scheme not in ("ws", "wss") or not ws_parts.hostname:
        raise ConfigError(
            f"ws_url must look like ws://HOST:PORT/ws (or wss://), got {ws_url!r}", key="ws_url"
        )
    if not 0 <= port <= 65535:
        raise ConfigError(f"port must be in 0..65535, got {port!r}", key="port")
    asyncio.get_running_loop()  # raises RuntimeError outside a running loop, as documented
    if port == 0:
        port = _free_port(host)
    if allow_websocket_origins:
        origins = [_bokeh_origin(origin) for origin in allow_websocket_origins]
    elif is_unspecified(host):
        raise ConfigError(
            f"bound to every interface ({host!r}), the dashboard cannot guess which address "
            "browsers will use; pass allow_websocket_origins (e.g. 'myhost:5006')",
            key="allow_websocket_origins",
        )
    else:
        # Bokeh's own default names only localhost; a browser opening the printed URL
        # sends the host it was given.
        origins = [f"{host}:{port}"] + ([f"localhost:{port}"] if is_loopback(host) else [])
    _quiet_tab_close_warnings()
    sessions: set[_LiveSession] = set()
    app = Application(FunctionHandler(_session_builder(with_token(ws_url, token), token, sessions)))
    server = Server(
        {APP_PATH: app},
        io_loop=IOLoop.current(),
        address=host,
        port=port,
        allow_websocket_origin=origins,
    )
    server.start()
    url = f"http://{host}:{port}{APP_PATH}"
    if token:
        url += "?" + urlencode({"token": token})
    return DashboardHandle(server, url, sessions)

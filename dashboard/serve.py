"""Run the dashboard: a Bokeh server on the caller's event loop.

:func:`start_dashboard` is the one entry point. The Bokeh server is attached to the
currently running asyncio loop (tornado's ``IOLoop.current()``) and never starts, stops or
owns that loop, so the dyadsync service and the dashboard share one loop. Every browser
session gets its own :class:`~dashboard.state.DashboardState`, its own websocket
connection to the server (:func:`~dashboard.feed.run_feed`) and a display tick that
applies what arrived (``ColumnDataSource.stream`` with a rollover, so memory is bounded).

With a token, a page request without it is answered ``403 Forbidden`` before Bokeh builds
a session; sessions opened over Bokeh's own websocket (``bokeh.client``) are checked again
when their document is built and get an "Access denied" page instead of the dashboard.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import socket
import time
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlencode, urlsplit

from bokeh.application import Application
from bokeh.application.handlers.function import FunctionHandler
from bokeh.document import Document
from bokeh.models.widgets.markups import Div
from bokeh.server.callbacks import PeriodicCallback
from bokeh.server.contexts import BokehSessionContext
from bokeh.server.server import BaseServer
from bokeh.server.tornado import BokehTornado
from bokeh.server.util import create_hosts_allowlist
from tornado.httpserver import HTTPServer
from tornado.httputil import HTTPMessageDelegate, HTTPServerRequest
from tornado.ioloop import IOLoop
from tornado.routing import Router
from tornado.web import RequestHandler

from dsp.exceptions import ConfigError
from server.exposure import is_loopback, is_unspecified
from server.ws import listen_tcp, parse_origin, require_origins, require_token, url_host

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

ACCESS_DENIED = "Access denied: open the dashboard URL including its token."
# The requests that create a Bokeh session (the page and its embeddable script); static
# files and Bokeh's websocket are harmless without a session.
_PAGE_PATHS = frozenset({APP_PATH, f"{APP_PATH}/", f"{APP_PATH}/autoload.js"})


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
    """A running dashboard server: :attr:`url` opens it from this machine,
    :meth:`url_for` through another name of it; :meth:`stop` shuts it down."""

    __slots__ = ("_server", "_sessions", "_stopped", "_token", "host", "port")

    def __init__(
        self,
        server: BaseServer,
        *,
        host: str,
        port: int,
        token: str | None,
        sessions: set[_LiveSession],
    ) -> None:
        self._server = server
        self._sessions = sessions
        self._stopped = False
        self._token = token
        self.host = host
        self.port = port

    @property
    def url(self) -> str:
        """The page at the bound host (loopback when bound to every interface)."""
        if is_unspecified(self.host):
            return self.url_for("::1" if ":" in self.host else "127.0.0.1")
        return self.url_for(self.host)

    def url_for(self, host: str, *, scheme: str = "http") -> str:
        """The page (with its token) through ``host``."""
        url = f"{scheme}://{url_host(host)}:{self.port}{APP_PATH}"
        if self._token:
            url += "?" + urlencode({"token": self._token})
        return url

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
    """A browser origin (``http://host:port``, see :func:`server.ws.parse_origin`) as
    Bokeh's allow-list wants it: ``host:port``."""
    parts = urlsplit(parse_origin(origin))
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return f"{parts.hostname}:{port}"


def _own_origins(host: str, port: int) -> list[str]:
    """Origins of the address served (which a browser opening the printed URL sends) and,
    on loopback or every-interface binds, this machine's loopback names."""
    own = [] if is_unspecified(host) else [f"{host}:{port}"]
    if is_loopback(host) or is_unspecified(host):
        own += [f"localhost:{port}", f"127.0.0.1:{port}"]
    return own


def _token_matches(given: Sequence[bytes] | None, token: str) -> bool:
    offered = given[0] if given else b""
    return hmac.compare_digest(offered, token.encode())


def _token_ok(doc: Document, token: str | None) -> bool:
    if token is None:
        return True
    # Under the Bokeh server the context is a BokehSessionContext carrying the HTTP request.
    context = doc.session_context
    request = context.request if isinstance(context, BokehSessionContext) else None
    arguments: dict[str, Any] = request.arguments if request is not None else {}
    return _token_matches(arguments.get("token"), token)


class _AccessDenied(RequestHandler):
    """403 for a page request without the right token (any method)."""

    def prepare(self) -> None:
        self.set_status(403)
        self.set_header("Content-Type", "text/plain; charset=utf-8")
        self.finish(ACCESS_DENIED + "\n")


class _PageTokenGate(Router):
    """Routes to Bokeh, except page requests without the token, which get a 403.

    Bokeh itself would build a session for any request and answer 200; refusing in front
    of it keeps a wrong URL from even creating a session.
    """

    def __init__(self, app: BokehTornado, token: str) -> None:
        self._app = app
        self._token = token

    def find_handler(self, request: HTTPServerRequest, **kwargs: Any) -> HTTPMessageDelegate:
        if urlsplit(request.uri or "").path in _PAGE_PATHS and not _token_matches(
            request.query_arguments.get("token"), self._token
        ):
            return self._app.get_handler_delegate(request, _AccessDenied)
        return self._app.find_handler(request, **kwargs)


def _session_builder(ws_url: str, token: str | None, sessions: set[_LiveSession]) -> Any:
    """The FunctionHandler body: builds one browser session's document."""

    def build(doc: Document) -> None:
        doc.title = "dyadsync"
        if not _token_ok(doc, token):
            doc.add_root(Div(text=ACCESS_DENIED))
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
    allow_websocket_origins: Sequence[str] = (),
    listener: socket.socket | None = None,
) -> DashboardHandle:
    """Start the dashboard server on the running event loop and return its handle.

    ``ws_url`` is the dyadsync websocket endpoint (``ws://HOST:PORT/ws``); each browser
    session connects to it, adding ``token`` when given. Bound to anything but loopback
    the dashboard requires ``token`` (then the page URL carries ``?token=``, and
    :attr:`DashboardHandle.url` includes it). ``port=0`` picks a free port.
    ``allow_websocket_origins`` are further exact browser origins (``http://host:port``)
    allowed besides the address served (see :func:`dashboard_origins`); bound to every
    interface (``0.0.0.0``, ``::``) at least one is required.
    ``listener`` is a socket already listening (from :func:`server.ws.listen_tcp`; the
    dashboard takes it over, and ``port`` is read from it), so a caller can bind before
    doing anything slow and report "port in use" at once.
    Must be called from a coroutine or callback running on the event loop.
    """
    require_token(host=host, token=token)
    require_origins(host=host, origins=allow_websocket_origins, port_hint=port)
    ws_parts = urlsplit(ws_url)
    if ws_parts.scheme not in ("ws", "wss") or not ws_parts.hostname:
        raise ConfigError(
            f"ws_url must look like ws://HOST:PORT/ws (or wss://), got {ws_url!r}", key="ws_url"
        )
    if not 0 <= port <= 65535:
        raise ConfigError(f"--dashboard-port {port!r} is not in 0..65535 (0 picks a free one)")
    listed = [_bokeh_origin(origin) for origin in allow_websocket_origins]
    asyncio.get_running_loop()  # raises RuntimeError outside a running loop, as documented
    if listener is None:
        listener = listen_tcp(host=host, port=port, what="the dashboard", flag="--dashboard-port")
    port = int(listener.getsockname()[1])
    origins = list(dict.fromkeys(listed + _own_origins(host, port)))
    _quiet_tab_close_warnings()
    sessions: set[_LiveSession] = set()
    app = Application(FunctionHandler(_session_builder(with_token(ws_url, token), token, sessions)))
    tornado_app = BokehTornado(
        {APP_PATH: app}, extra_websocket_origins=create_hosts_allowlist(origins, port)
    )
    http_server = HTTPServer(tornado_app if token is None else _PageTokenGate(tornado_app, token))
    http_server.add_sockets([listener])
    server = BaseServer(IOLoop.current(), tornado_app, http_server)
    server.start()
    return DashboardHandle(server, host=host, port=port, token=token, sessions=sessions)

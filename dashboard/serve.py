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
import html
import json
import logging
import socket
import ssl
import time
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlencode, urlsplit

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
from server.health import RoomHealth, health_document, metrics_text
from server.service import SERVER_VERSION
from server.ws import listen_tcp, parse_origin, require_origins, require_token, url_host

if TYPE_CHECKING:
    from server.tls import TlsConfig

from .app import DashboardView
from .feed import run_feed, with_token
from .state import DashboardState

log = logging.getLogger(__name__)

# Bokeh loggers that warn on every closed browser tab ("Failed sending message as
# connection was closed"): routine for a dashboard, so only shown when the application
# asked for INFO or more detail.
_TAB_CLOSE_LOGGERS = ("bokeh.server.views.ws", "bokeh.server.protocol_handler")

APP_PATH = "/dashboard"
LANDING_PATH = "/"
HEALTH_PATH = "/health"
METRICS_PATH = "/metrics"

# Display tick: 4 redraws per second feels live for signals on a 4 Hz grid without
# making the browser redraw more often than anything changes.
TICK_MS = 250

ACCESS_DENIED = "Access denied: open the dashboard URL including its token."


def room_path(room: str) -> str:
    """The dashboard page of one room of a service (a lone room is also at APP_PATH)."""
    return f"{APP_PATH}/{quote(room, safe='')}"


def _page_paths(app_paths: Sequence[str]) -> frozenset[str]:
    """The requests that create a Bokeh session (each page and its embeddable script)
    or show the rooms; static files and Bokeh's websocket are harmless without one."""
    pages = {LANDING_PATH}
    for path in app_paths:
        pages |= {path, f"{path}/", f"{path}/autoload.js"}
    return frozenset(pages)


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

    __slots__ = ("_scheme", "_server", "_sessions", "_stopped", "_token", "host", "port", "rooms")

    def __init__(
        self,
        server: BaseServer,
        *,
        host: str,
        port: int,
        token: str | None,
        rooms: Sequence[str],
        sessions: set[_LiveSession],
        scheme: str,
    ) -> None:
        self._server = server
        self._sessions = sessions
        self._stopped = False
        self._token = token
        self._scheme = scheme
        self.host = host
        self.port = port
        self.rooms = list(rooms)

    @property
    def url(self) -> str:
        """The page (see :meth:`url_for`) at the bound host (loopback when bound to every
        interface)."""
        if is_unspecified(self.host):
            return self.url_for("::1" if ":" in self.host else "127.0.0.1")
        return self.url_for(self.host)

    def url_for(self, host: str, *, scheme: str | None = None, room: str | None = None) -> str:
        """A page (with its token) through ``host``: ``room``'s page; without ``room``
        the lone room's page, or the landing page listing several rooms."""
        if room is not None:
            path = room_path(room)
        else:
            path = APP_PATH if len(self.rooms) == 1 else LANDING_PATH
        url = f"{scheme or self._scheme}://{url_host(host)}:{self.port}{path}"
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


def _request_token_ok(request: HTTPServerRequest, token: str) -> bool:
    """``?token=`` or ``Authorization: Bearer`` (what scrapers and probes send)."""
    scheme, _, bearer = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() == "bearer":
        return _token_matches([bearer.encode()], token)
    return _token_matches(request.query_arguments.get("token"), token)


class _PageTokenGate(Router):
    """Routes to Bokeh, except page and status requests without the token: 403.

    Bokeh itself would build a session for any request and answer 200; refusing in front
    of it keeps a wrong URL from even creating a session.
    """

    def __init__(self, app: BokehTornado, token: str, guarded: frozenset[str]) -> None:
        self._app = app
        self._token = token
        self._guarded = guarded

    def find_handler(self, request: HTTPServerRequest, **kwargs: Any) -> HTTPMessageDelegate:
        path = urlsplit(request.uri or "").path
        if path in self._guarded and not _request_token_ok(request, self._token):
            return self._app.get_handler_delegate(request, _AccessDenied)
        return self._app.find_handler(request, **kwargs)


class _StatusHandler(RequestHandler):
    """``/`` (rooms page), ``/health`` (JSON) and ``/metrics`` (Prometheus text)."""

    def initialize(
        self,
        *,
        status: Callable[[], Sequence[RoomHealth]],
        render: str,
        token: str | None,
        started_s: float,
    ) -> None:
        self._status = status
        self._render = render
        self._token = token
        self._started_s = started_s

    def get(self) -> None:
        rooms = self._status()
        if self._render == "health":
            uptime_s = time.monotonic() - self._started_s
            document = health_document(rooms=rooms, version=SERVER_VERSION, uptime_s=uptime_s)
            # 503 when degraded, so a plain HTTP probe notices without parsing JSON.
            self.set_status(200 if document["status"] == "ok" else 503)
            self.set_header("Content-Type", "application/json")
            self.finish(json.dumps(document))
        elif self._render == "metrics":
            self.set_header("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
            self.finish(metrics_text(rooms=rooms, version=SERVER_VERSION))
        else:
            self.set_header("Content-Type", "text/html; charset=utf-8")
            self.finish(_landing_html(rooms, token=self._token))


def _landing_html(rooms: Sequence[RoomHealth], *, token: str | None) -> str:
    """The rooms of the service, each with its state and a link to its dashboard."""
    query = "" if token is None else "?" + urlencode({"token": token})
    rows = "".join(
        f'<tr><td><a href="{html.escape(room_path(room.room) + query)}">'
        f"{html.escape(room.room)}</a></td><td>{html.escape(room.state)}</td>"
        f"<td>{html.escape(room.detail)}</td></tr>"
        for room in rooms
    )
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>dyadsync rooms</title>"
        "<meta http-equiv='refresh' content='5'>"
        "<style>body{font:18px sans-serif;margin:2em}td{padding:.3em 1em}</style></head>"
        "<body><h1>dyadsync rooms</h1><table><tr><th>room</th><th>state</th><th></th></tr>"
        f"{rows}</table></body></html>"
    )


def _session_builder(
    *,
    room: str,
    ws_url: str,
    token: str | None,
    ssl_context: ssl.SSLContext | None,
    sessions: set[_LiveSession],
) -> Any:
    """The FunctionHandler body: builds one browser session's document."""

    def build(doc: Document) -> None:
        doc.title = f"dyadsync · {room}"
        if not _token_ok(doc, token):
            doc.add_root(Div(text=ACCESS_DENIED))
            return
        state = DashboardState()
        view = DashboardView()
        view.attach(doc)
        view.render(state.take_updates(now_s=time.monotonic()))

        feed = asyncio.get_running_loop().create_task(
            run_feed(ws_url, state, ssl_context=ssl_context)
        )
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
    rooms: Mapping[str, str],
    status: Callable[[], Sequence[RoomHealth]] | None = None,
    host: str = "127.0.0.1",
    port: int = 5006,
    token: str | None = None,
    allow_websocket_origins: Sequence[str] = (),
    tls: TlsConfig | None = None,
    listener: socket.socket | None = None,
) -> DashboardHandle:
    """Start the dashboard server on the running event loop and return its handle.

    ``rooms`` maps each room to its dyadsync websocket endpoint (``ws://HOST:PORT/ws/ROOM``);
    each room's page is at ``/dashboard/ROOM`` (a lone room also at ``/dashboard``), and
    each browser session connects to its room's endpoint, adding ``token`` when given.
    ``status`` (the rooms' health) adds the rooms page at ``/``, ``/health`` and
    ``/metrics``. Bound to anything but loopback the dashboard requires ``token`` (then
    the page URL carries ``?token=``, and :attr:`DashboardHandle.url` includes it).
    ``port=0`` picks a free port. ``allow_websocket_origins`` are further exact browser
    origins (``http://host:port``) allowed besides the address served; bound to every
    interface (``0.0.0.0``, ``::``) at least one is required. ``tls`` serves https (and
    the feeds then connect with ``wss://``, trusting that certificate).
    ``listener`` is a socket already listening (from :func:`server.ws.listen_tcp`; the
    dashboard takes it over, and ``port`` is read from it), so a caller can bind before
    doing anything slow and report "port in use" at once.
    Must be called from a coroutine or callback running on the event loop.
    """
    require_token(host=host, token=token)
    require_origins(host=host, origins=allow_websocket_origins, port_hint=port)
    if not rooms:
        raise ConfigError("the dashboard needs at least one room", key="rooms")
    for ws_url in rooms.values():
        ws_parts = urlsplit(ws_url)
        if ws_parts.scheme not in ("ws", "wss") or not ws_parts.hostname:
            raise ConfigError(
                f"a room's websocket must look like ws://HOST:PORT/ws/ROOM (or wss://), "
                f"got {ws_url!r}",
                key="rooms",
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
    client_ssl = None if tls is None else tls.client_context()
    applications: dict[str, Application] = {}
    for room, ws_url in rooms.items():
        app = Application(
            FunctionHandler(
                _session_builder(
                    room=room,
                    ws_url=with_token(ws_url, token),
                    token=token,
                    ssl_context=client_ssl,
                    sessions=sessions,
                )
            )
        )
        applications[room_path(room)] = app
        if len(rooms) == 1:
            applications[APP_PATH] = app  # the page of a lone room, as before rooms existed
    extra: list[Any] = []
    if status is not None:
        for path, render in ((LANDING_PATH, "rooms"), (HEALTH_PATH, "health"),
                             (METRICS_PATH, "metrics")):  # fmt: skip
            settings = {"status": status, "render": render, "token": token,
                        "started_s": time.monotonic()}  # fmt: skip
            extra.append((path, _StatusHandler, settings))
    tornado_app = BokehTornado(
        applications,
        extra_patterns=extra,
        extra_websocket_origins=create_hosts_allowlist(origins, port),
    )
    guarded = _page_paths(list(applications)) | {HEALTH_PATH, METRICS_PATH}
    router = tornado_app if token is None else _PageTokenGate(tornado_app, token, guarded)
    http_server = HTTPServer(router, ssl_options=None if tls is None else tls.server_context())
    http_server.add_sockets([listener])
    server = BaseServer(IOLoop.current(), tornado_app, http_server)
    server.start()
    return DashboardHandle(
        server,
        host=host,
        port=port,
        token=token,
        rooms=list(rooms),
        sessions=sessions,
        scheme="http" if tls is None else "https",
    )

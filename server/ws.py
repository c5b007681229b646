"""Websocket endpoint: streams hub messages to clients (the dashboard and third parties).

Security defaults for clinical data: bound to 127.0.0.1; any other bind address requires
a token (``?token=`` or ``Authorization: Bearer``), compared in constant time; browsers
(which send an Origin header) are refused unless their origin is in the exact allow-list,
wherever the server is bound. Client messages are limited to 4 KiB (larger ones close the
connection with 1009 "message too big"); malformed ones get an ``error`` reply.

This module also holds the rules both servers (websocket and dashboard) share: what an
origin looks like (:func:`parse_origin`) and how a listening socket is bound
(:func:`listen_tcp`), so ``dyadsync run`` can bind both ports before stream discovery.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import hmac
import itertools
import logging
import socket
import ssl
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from http import HTTPStatus
from typing import Protocol
from urllib.parse import parse_qs, quote, unquote, urlsplit

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.frames import CloseCode
from websockets.http11 import Request, Response

from dsp.exceptions import ConfigError
from server.errors import ProtocolError, ServeError
from server.exposure import is_loopback, is_unspecified
from server.hub import ConsumerQueue, Hub
from server.protocol import (
    MAX_CLIENT_MESSAGE_BYTES,
    Message,
    MessageFactory,
    decode_client_message,
    encode,
)

log = logging.getLogger(__name__)

WS_PATH = "/ws"

ORIGIN_FORMAT = (
    "an exact browser origin: scheme://host:port with no path, "
    "e.g. --allow-origin http://192.168.1.20:5006"
)
_DEFAULT_PORTS = {"http": 80, "https": 443}
# Room for a burst of browsers connecting while the session is still being set up (the
# kernel completes their handshakes and holds them until the server accepts).
_LISTEN_BACKLOG = 128
# What a client of a room that is not serving yet is told to wait (it is usually waiting
# for its sensors); the dashboard's feed reconnects on its own schedule anyway.
_RETRY_AFTER_S = 5


def parse_origin(text: str) -> str:
    """``text`` as browsers send it in ``Origin``: ``http(s)://host[:port]``, lower case,
    without the scheme's default port, so an exact string comparison is right.

    Raises :class:`ConfigError` naming ``--allow-origin`` and the expected format when
    ``text`` has another scheme, no host, a path, a query, credentials, a bad port or an
    IPv6 literal host.
    """
    parts = urlsplit(text.strip())
    try:
        port = parts.port
    except ValueError:
        port = -1
    problem = None
    if parts.scheme not in _DEFAULT_PORTS:
        problem = "the scheme must be http or https"
    elif port == -1:
        problem = "the port must be a number in 0..65535"
    elif not parts.hostname or parts.username or parts.password:
        problem = "it needs a host and optionally a port, nothing else"
    elif parts.path not in ("", "/") or parts.query or parts.fragment:
        problem = "an origin has no path, query or fragment"
    elif ":" in (parts.hostname or ""):
        # The dashboard's allow-list (Bokeh's) splits on ':' and cannot hold one.
        problem = "IPv6 literals are not supported; use this machine's name or IPv4 address"
    if problem is not None:
        raise ConfigError(
            f"--allow-origin {text!r} is not an origin ({problem}); expected {ORIGIN_FORMAT}"
        )
    host = (parts.hostname or "").lower()
    if port is None or port == _DEFAULT_PORTS[parts.scheme]:
        return f"{parts.scheme}://{host}"
    return f"{parts.scheme}://{host}:{port}"


def default_port(scheme: str) -> int:
    """The port a URL of ``scheme`` (http/https/ws/wss) means when it names none."""
    return 443 if scheme in ("https", "wss") else 80


def url_host(host: str) -> str:
    """``host`` as written in a URL: IPv6 literals in brackets, names lower case."""
    return f"[{host}]" if ":" in host else host.lower()


def require_token(*, host: str, token: str | None) -> None:
    """Refuse to expose clinical data beyond this machine without a token."""
    if not is_loopback(host) and not token:
        raise ConfigError(
            f"--host {host!r} makes the websocket and dashboard reachable from the network; "
            "set a token (--token or DYADSYNC_TOKEN), or bind to 127.0.0.1"
        )


def require_origins(*, host: str, origins: Sequence[str], port_hint: int) -> None:
    """A dashboard bound to every interface (``0.0.0.0``, ``::``) must be told which
    origins browsers will use: it cannot know every name this machine is reached by.
    ``port_hint`` is the dashboard port, for the suggestion in the message."""
    if not is_unspecified(host) or origins:
        return
    port = port_hint or 5006
    examples = " ".join(f"--allow-origin http://{name}:{port}" for name in machine_names()[:3])
    raise ConfigError(
        f"--host {host!r} listens on every interface, so the dashboard cannot tell which "
        "address browsers will open; name each with --allow-origin (repeatable; "
        f"scheme://host:port, no path), e.g. {examples or f'--allow-origin http://HOST:{port}'}"
    )


def machine_names() -> list[str]:
    """This machine's host name and non-loopback IPv4 addresses: what other machines may
    reach it by. Best effort (for messages and printed URLs); never raises."""
    names = [socket.gethostname()]
    with contextlib.suppress(OSError):
        infos = socket.getaddrinfo(names[0], None, family=socket.AF_INET)
        names += [str(info[4][0]) for info in infos]
    # The source address of the default route: connecting a UDP socket sends nothing, and
    # 192.0.2.1 (TEST-NET-1, RFC 5737) is never a real peer.
    with contextlib.suppress(OSError), socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.connect(("192.0.2.1", 9))
        names.append(str(probe.getsockname()[0]))
    return [n for n in dict.fromkeys(names) if n and not is_loopback(n) and not is_unspecified(n)]


def listen_tcp(*, host: str, port: int, what: str, flag: str) -> socket.socket:
    """A non-blocking TCP socket listening on ``host``:``port`` (0 = a free port).

    Binding is how "port in use" is found out, so callers bind before anything slow
    starts. A host name binds its first address. Raises :class:`ServeError` saying what
    to change (``flag``, ``--host``); ``what`` names the server in the message.
    """
    where = f"{url_host(host)}:{port}"
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
    except socket.gaierror as exc:
        raise ServeError(
            f"cannot listen for {what} on {where}: --host {host!r} is not a known address "
            f"({exc.strerror}); use 127.0.0.1, 0.0.0.0 or an address of this machine"
        ) from None
    listener = socket.socket(family, kind, proto)
    try:
        # Lets a restarted session reuse its port at once (connections of the previous run
        # in TIME_WAIT); on Linux it does not let two servers listen on one port.
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            listener.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        listener.bind(address)
        listener.listen(_LISTEN_BACKLOG)
        listener.setblocking(False)
    except OSError as exc:
        listener.close()
        raise ServeError(
            f"cannot listen for {what} on {where}: {_bind_advice(exc, flag)}"
        ) from None
    return listener


def _bind_advice(exc: OSError, flag: str) -> str:
    if exc.errno == errno.EADDRINUSE:
        return f"the port is in use; choose another {flag} (0 picks a free one)"
    if exc.errno == errno.EADDRNOTAVAIL:
        return (
            "--host is not an address of this machine; "
            "use 127.0.0.1, 0.0.0.0 or one of its addresses"
        )
    if exc.errno == errno.EACCES:
        return f"ports below 1024 need privileges; choose another {flag} (0 picks a free one)"
    return f"{exc.strerror}; choose another {flag} (0 picks a free one) or --host"


def _token_offered(request: Request, query: str, token: str) -> bool:
    """Did the client send ``token`` (as ``?token=`` or ``Authorization: Bearer``)?"""
    scheme, _, bearer = request.headers.get("Authorization", "").partition(" ")
    offered = bearer if scheme.lower() == "bearer" else parse_qs(query).get("token", [""])[0]
    return hmac.compare_digest(offered.encode(), token.encode())


@dataclass(frozen=True, slots=True, kw_only=True)
class WebsocketConfig:
    """Where and how the websocket endpoint listens.

    ``token`` is required whenever ``host`` is not a loopback address; ``allowed_origins``
    is the exact list of browser origins accepted (non-browser clients send no Origin),
    each validated and normalised by :func:`parse_origin`. ``port=0`` picks a free port
    (see :attr:`WebsocketEndpoint.port`). Errors name the ``dyadsync`` options.
    """

    host: str = "127.0.0.1"
    port: int = 8765
    token: str | None = None
    allowed_origins: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        require_token(host=self.host, token=self.token)
        if not 0 <= self.port <= 65535:
            raise ConfigError(f"--ws-port {self.port} is not in 0..65535 (0 picks a free one)")
        # Frozen: normalise through object.__setattr__ so comparisons with the browser's
        # Origin header are exact.
        origins = tuple(parse_origin(origin) for origin in self.allowed_origins)
        object.__setattr__(self, "allowed_origins", origins)


@dataclass(frozen=True, slots=True, kw_only=True)
class RoomChannel:
    """What the endpoint needs of one running room: its hub, its message factory (for
    replies) and its ``hello``."""

    hub: Hub
    messages: MessageFactory
    hello: Callable[[], Message]


class RoomDirectory(Protocol):
    """The rooms a service runs, by name; :meth:`channel` is None while a room is not
    serving (waiting for its sensors, failed or stopped), :meth:`state` says why."""

    def names(self) -> Sequence[str]: ...

    def channel(self, name: str) -> RoomChannel | None: ...

    def state(self, name: str) -> str: ...


def room_ws_path(room: str) -> str:
    """The websocket path of one room of a service (``/ws`` also serves a lone room)."""
    return f"{WS_PATH}/{quote(room, safe='')}"


class WebsocketEndpoint:
    """Serves each room at ``/ws/<room>`` (and a service's only room also at ``/ws``): a
    ``hello`` on connect, then every message of that room's hub through a bounded queue."""

    def __init__(
        self,
        *,
        rooms: RoomDirectory,
        config: WebsocketConfig,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self._rooms = rooms
        self._config = config
        self._ssl = ssl_context
        self._server: Server | None = None
        self._ids = itertools.count(1)

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("websocket endpoint not started")
        return int(next(iter(self._server.sockets)).getsockname()[1])

    @property
    def url(self) -> str:
        """The endpoint at the configured host (``ws://0.0.0.0:...`` when bound to every
        interface; see :meth:`url_for`)."""
        return self.url_for(self._config.host)

    def local_url(self, room: str | None = None) -> str:
        """The endpoint (``room``'s path if given) as reached from this machine (loopback
        for every-interface binds), for clients in this process such as the dashboard's
        feeds."""
        host = self._config.host
        if is_unspecified(host):
            host = "::1" if ":" in host else "127.0.0.1"
        return self.url_for(host, room=room)

    def url_for(self, host: str, *, room: str | None = None) -> str:
        """The endpoint's URL through ``host`` (a name or address of this machine): the
        path of ``room``, else ``/ws``."""
        scheme = "ws" if self._ssl is None else "wss"
        path = WS_PATH if room is None else room_ws_path(room)
        return f"{scheme}://{url_host(host)}:{self.port}{path}"

    async def start(self, *, listener: socket.socket | None = None) -> None:
        """Start serving, on ``listener`` if given (a socket from :func:`listen_tcp`, whose
        ownership passes to the endpoint), else on a socket bound now."""
        if listener is None:
            listener = listen_tcp(
                host=self._config.host,
                port=self._config.port,
                what="websocket clients",
                flag="--ws-port",
            )
        # Browsers always send Origin; a web page the clinician happens to have open must
        # not read clinical data from a local port (cross-site websocket hijacking). Our own
        # dashboard connects server-side (no Origin); browser clients need --allow-origin.
        origins = [*self._config.allowed_origins, None]
        self._server = await serve(
            self._handle,
            sock=listener,
            process_request=self._check_request,
            origins=origins,  # type: ignore[arg-type]
            max_size=MAX_CLIENT_MESSAGE_BYTES,
            ssl=self._ssl,
            # permessage-deflate would compress every message once per client, undoing
            # the one shared encoding; the messages are small and the links local.
            compression=None,
        )

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    def _room_of(self, path: str) -> str | None:
        """The room a request path names (``/ws`` names a lone room), else None."""
        if path == WS_PATH:
            names = self._rooms.names()
            return names[0] if len(names) == 1 else None
        prefix = WS_PATH + "/"
        if path.startswith(prefix) and unquote(path[len(prefix) :]) in self._rooms.names():
            return unquote(path[len(prefix) :])
        return None

    def _check_request(self, connection: ServerConnection, request: Request) -> Response | None:
        parts = urlsplit(request.path)
        room = self._room_of(parts.path)
        if room is None:
            paths = ", ".join(room_ws_path(name) for name in self._rooms.names())
            return connection.respond(HTTPStatus.NOT_FOUND, f"unknown path; rooms: {paths}\n")
        token = self._config.token
        if token and not _token_offered(request, parts.query, token):
            log.warning("websocket client rejected: missing or wrong token")
            response = connection.respond(
                HTTPStatus.UNAUTHORIZED,
                "missing or wrong token: add ?token=... to the URL "
                "or send 'Authorization: Bearer ...'\n",
            )
            # A 401 must say how to authenticate (RFC 9110 15.5.2).
            response.headers["WWW-Authenticate"] = 'Bearer realm="dyadsync"'
            return response
        if self._rooms.channel(room) is None:
            response = connection.respond(
                HTTPStatus.SERVICE_UNAVAILABLE,
                f"room {room!r} is not serving ({self._rooms.state(room)}); try again later\n",
            )
            response.headers["Retry-After"] = str(_RETRY_AFTER_S)
            return response
        return None

    async def _handle(self, connection: ServerConnection) -> None:
        assert connection.request is not None  # set once the handshake has completed
        room = self._room_of(urlsplit(connection.request.path).path)
        channel = None if room is None else self._rooms.channel(room)
        if channel is None:  # the room stopped between handshake and handler
            await connection.close(CloseCode.TRY_AGAIN_LATER, "room not serving")
            return
        # Subscribe and take the backlog in one synchronous step, so every message is
        # either in the backlog or in the queue, never both or neither.
        queue = channel.hub.subscribe(f"ws-{next(self._ids)}")
        history = channel.hub.backlog()
        sender: asyncio.Task[None] | None = None
        try:
            await connection.send(encode(channel.hello()))
            for published in history:
                await connection.send(published.text)
            sender = asyncio.create_task(self._send_loop(connection, queue))
            async for raw in connection:
                await self._answer(connection, channel.messages, raw)
        except ConnectionClosed:
            pass  # the client left; unsubscribing below is all there is to do
        finally:
            channel.hub.unsubscribe(queue)
            if sender is not None:
                sender.cancel()

    @staticmethod
    async def _answer(
        connection: ServerConnection, messages: MessageFactory, raw: str | bytes
    ) -> None:
        try:
            message = decode_client_message(raw)
        except ProtocolError as exc:
            await connection.send(encode(messages.error("bad_message", str(exc))))
            return
        if message["type"] == "ping":
            await connection.send(encode(messages("pong")))
        else:
            detail = f"unknown message type {message['type']!r}; supported: ping"
            await connection.send(encode(messages.error("unknown_type", detail)))

    @staticmethod
    async def _send_loop(connection: ServerConnection, queue: ConsumerQueue) -> None:
        try:
            while True:
                await connection.send((await queue.get()).text)
        except ConnectionClosed:
            return
        except Exception:
            # Without this the client would stay connected and silently receive nothing.
            log.exception("websocket sender failed; closing the connection (1011)")
            await connection.close(CloseCode.INTERNAL_ERROR, "server error")

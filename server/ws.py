"""Websocket endpoint: streams hub messages to clients (the dashboard and third parties).

Security defaults for clinical data: bound to 127.0.0.1; any other bind address requires
a token (``?token=``), compared in constant time; browsers (which send an Origin header)
are refused unless their origin is in the exact allow-list, wherever the server is bound.
Client messages are limited to 4 KiB (larger ones close the connection with 1009 "message
too big"); malformed ones get an ``error`` reply.
"""

from __future__ import annotations

import asyncio
import hmac
import itertools
import logging
from collections.abc import Callable
from dataclasses import dataclass
from http import HTTPStatus
from urllib.parse import parse_qs, urlsplit

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from dsp.exceptions import ConfigError, ProtocolError, ServeError
from server.exposure import is_loopback
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


@dataclass(frozen=True, slots=True, kw_only=True)
class WebsocketConfig:
    """Where and how the websocket endpoint listens.

    ``token`` is required whenever ``host`` is not a loopback address; ``allowed_origins``
    is the exact list of browser origins accepted (non-browser clients send no Origin).
    ``port=0`` picks a free port (see :attr:`WebsocketEndpoint.port`).
    """

    host: str = "127.0.0.1"
    port: int = 8765
    token: str | None = None
    allowed_origins: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not is_loopback(self.host) and not self.token:
            raise ConfigError(
                f"binding the websocket to {self.host!r} exposes clinical data to the network; "
                "set a token (--token or DYADSYNC_TOKEN) or bind to 127.0.0.1",
                key="websocket.host",
            )
        if not 0 <= self.port <= 65535:
            raise ConfigError(f"port {self.port} not in 0..65535", key="websocket.port")


class WebsocketEndpoint:
    """Serves ``/ws``: a ``hello`` on connect, then every hub message through a bounded queue."""

    def __init__(
        self,
        *,
        hub: Hub,
        config: WebsocketConfig,
        messages: MessageFactory,
        hello: Callable[[], Message],
    ) -> None:
        self._hub = hub
        self._config = config
        self._messages = messages
        self._hello = hello
        self._server: Server | None = None
        self._ids = itertools.count(1)

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("websocket endpoint not started")
        return int(next(iter(self._server.sockets)).getsockname()[1])

    @property
    def url(self) -> str:
        return f"ws://{self._config.host}:{self.port}{WS_PATH}"

    async def start(self) -> None:
        # Browsers always send Origin; a web page the clinician happens to have open must
        # not read clinical data from a local port (cross-site websocket hijacking). Our own
        # dashboard connects server-side (no Origin); browser clients need --allow-origin.
        origins = [*self._config.allowed_origins, None]
        try:
            self._server = await serve(
                self._handle,
                self._config.host,
                self._config.port,
                process_request=self._check_request,
                origins=origins,  # type: ignore[arg-type]
                max_size=MAX_CLIENT_MESSAGE_BYTES,
            )
        except OSError as exc:
            where = f"{self._config.host}:{self._config.port}"
            raise ServeError(
                f"cannot listen for websocket clients on {where}: {exc.strerror}; "
                "choose another --ws-port (0 picks a free one) or --host"
            ) from None

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    def _check_request(self, connection: ServerConnection, request: Request) -> Response | None:
        parts = urlsplit(request.path)
        if parts.path != WS_PATH:
            return connection.respond(HTTPStatus.NOT_FOUND, f"unknown path; connect to {WS_PATH}\n")
        if self._config.token:
            offered = parse_qs(parts.query).get("token", [""])[0]
            if not hmac.compare_digest(offered.encode(), self._config.token.encode()):
                log.warning("websocket client rejected: missing or wrong token")
                return connection.respond(HTTPStatus.UNAUTHORIZED, "missing or wrong token\n")
        return None

    async def _handle(self, connection: ServerConnection) -> None:
        # Subscribe and take the backlog in one synchronous step, so every message is
        # either in the backlog or in the queue, never both or neither.
        queue = self._hub.subscribe(f"ws-{next(self._ids)}")
        history = self._hub.backlog()
        sender: asyncio.Task[None] | None = None
        try:
            await connection.send(encode(self._hello()))
            for message in history:
                await connection.send(encode(message))
            sender = asyncio.create_task(self._send_loop(connection, queue))
            async for raw in connection:
                await self._answer(connection, raw)
        except ConnectionClosed:
            pass  # the client left; unsubscribing below is all there is to do
        finally:
            self._hub.unsubscribe(queue)
            if sender is not None:
                sender.cancel()

    async def _answer(self, connection: ServerConnection, raw: str | bytes) -> None:
        try:
            message = decode_client_message(raw)
        except ProtocolError as exc:
            await connection.send(encode(self._messages.error("bad_message", str(exc))))
            return
        if message["type"] == "ping":
            await connection.send(encode(self._messages("pong")))
        else:
            detail = f"unknown message type {message['type']!r}; supported: ping"
            await connection.send(encode(self._messages.error("unknown_type", detail)))

    @staticmethod
    async def _send_loop(connection: ServerConnection, queue: ConsumerQueue) -> None:
        try:
            while True:
                await connection.send(encode(await queue.get()))
        except ConnectionClosed:
            return

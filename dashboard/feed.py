"""Websocket client that keeps one dashboard session fed from the dyadsync server.

One :func:`run_feed` task per browser session: it connects to the server's websocket,
hands every message to a :class:`FeedSink` (in practice
:class:`~dashboard.state.DashboardState`), and when the server goes away reports the
disconnection and reconnects with exponential backoff, forever, until cancelled. It runs
on the event loop the Bokeh server runs on and never touches Bokeh models: the display
tick applies what the sink accumulated.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from dataclasses import dataclass
from typing import Protocol
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus, WebSocketException

from dsp.exceptions import ConfigError

from .messages import MAX_MESSAGE_BYTES


class FeedSink(Protocol):
    """Receiver of everything the feed observes (called on the event loop thread)."""

    def on_connecting(self) -> None: ...

    def on_connected(self) -> None: ...

    def on_disconnected(self, *, reason: str, now_s: float, retry_in_s: float) -> None: ...

    def feed(self, raw: str | bytes, *, now_s: float) -> None: ...


@dataclass(frozen=True, slots=True, kw_only=True)
class Backoff:
    """Reconnect delays: ``initial_s`` doubling up to ``max_s``.

    Defaults: the first retry after 0.5 s recovers a quick server restart almost
    unnoticed; capping at 8 s keeps a long outage from leaving the page stale for long
    once the server is back, at one connection attempt per 8 s per open page.
    """

    initial_s: float = 0.5
    max_s: float = 8.0

    def __post_init__(self) -> None:
        if not 0 < self.initial_s <= self.max_s:
            raise ConfigError(
                f"backoff needs 0 < initial_s <= max_s, got initial_s={self.initial_s!r}, "
                f"max_s={self.max_s!r}",
                key="initial_s",
            )

    def delay_s(self, failures: int) -> float:
        """Delay before the retry that follows ``failures`` consecutive failures (>= 1)."""
        return min(self.max_s, self.initial_s * 2.0 ** max(0, failures - 1))


# Server unresponsive for this long while opening is treated as a failed attempt.
OPEN_TIMEOUT_S = 5.0


def with_token(ws_url: str, token: str | None) -> str:
    """``ws_url`` with ``token=...`` in its query string (protocol.md, websocket endpoint)."""
    if token is None:
        return ws_url
    parts = urlsplit(ws_url)
    query = [(k, v) for k, v in parse_qsl(parts.query) if k != "token"] + [("token", token)]
    return urlunsplit(parts._replace(query=urlencode(query)))


def describe_failure(exc: BaseException) -> str:
    """A short, user-facing reason for a lost or refused connection (no secrets)."""
    if isinstance(exc, InvalidStatus):
        return f"server refused the connection (HTTP {exc.response.status_code})"
    if isinstance(exc, ConnectionRefusedError):
        return "server not reachable"
    if isinstance(exc, TimeoutError):
        return "server did not answer"
    return "connection lost"


async def run_feed(
    ws_url: str,
    sink: FeedSink,
    *,
    backoff: Backoff | None = None,
    ssl_context: ssl.SSLContext | None = None,
) -> None:
    """Connect, deliver messages, reconnect on loss; returns only by cancellation.
    ``ssl_context`` is what a ``wss://`` URL is verified with."""
    backoff = backoff or Backoff()
    failures = 0
    while True:
        sink.on_connecting()
        try:
            async with connect(
                ws_url, max_size=MAX_MESSAGE_BYTES, open_timeout=OPEN_TIMEOUT_S, ssl=ssl_context
            ) as ws:
                sink.on_connected()
                failures = 0
                async for raw in ws:
                    sink.feed(raw, now_s=time.monotonic())
            reason = "server closed the connection"
        except (OSError, TimeoutError, WebSocketException) as exc:
            reason = describe_failure(exc)
        failures += 1
        delay_s = backoff.delay_s(failures)
        sink.on_disconnected(reason=reason, now_s=time.monotonic(), retry_in_s=delay_s)
        await asyncio.sleep(delay_s)

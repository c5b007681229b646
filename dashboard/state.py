"""What the dashboard knows, and the column updates it owes the browser (pure, no Bokeh).

:class:`DashboardState` absorbs decoded protocol messages and connection events as they
arrive and, on every display tick, hands back an :class:`Updates` value: new rows for
each plot (to ``ColumnDataSource.stream`` with a rollover) plus views of the tiles, badges
and header. Keeping this free of Bokeh and of the clock (the caller passes ``now_s``)
makes every display rule testable without a browser.

Display rules that keep the page from being wrong silently:

- an invalid or missing sample is NaN, which Bokeh draws as a gap; a hole in the grid
  (dropped batch, reconnect) also inserts a gap rather than a line bridging it;
- a synchrony tile shows a state only while estimates keep arriving from a connected
  server; otherwise it says "No estimate" and why;
- stream badges fall back to "unknown" while the server is unreachable.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from dsp.exceptions import ConfigError, ProtocolError

from .messages import (
    DERIVED_SIGNALS,
    ROLES,
    Episode,
    Health,
    Hello,
    Message,
    MessageIgnored,
    Other,
    Physio,
    Status,
    Sync,
    decode_message,
)

# Five minutes of history per plot: enough to see an episode come and go, small enough
# for the browser to redraw every 250 ms on modest hardware.
DEFAULT_HISTORY_S = 300.0

# Episodes kept for shading; at one per few seconds at worst this spans the history.
MAX_EPISODES = 64

# A grid step longer than this many nominal steps is a hole (dropped batch, reconnect),
# drawn as a gap. 1.5 tolerates float jitter on t_s while catching one missing sample.
GAP_STEPS = 1.5

# A tile falls back to "no estimate" when no synchrony arrived for this many steps (and
# at least MIN_STALE_S): the server normally sends one per step.
STALE_STEPS = 3.0
MIN_STALE_S = 5.0

# Derived signal -> raw streams it is computed from (for the expected stream badges).
SOURCE_SIGNAL = {"hr": "ecg", "scl": "eda", "phasic": "eda"}

ConnectionState = Literal["connecting", "connected", "disconnected"]
TileKind = Literal["coupled", "anti_phase", "decoupled", "none"]
BadgeLevel = Literal["ok", "warn", "bad", "unknown"]

_STATUS_LEVEL: dict[str, BadgeLevel] = {
    "connected": "ok",
    "recovered": "ok",
    "stalled": "warn",
    "bad_samples": "warn",
    "clock_break": "warn",
    "missing": "bad",
    "mismatch": "bad",
}
LAG_CONVENTION = "positive lag = client follows therapist"

# Stand-in until the server's hello arrives: protocol defaults, no signals.
_BEFORE_HELLO = Hello(
    session="",
    t=0.0,
    mode="live",
    signals=(),
    grid_hz=4.0,
    step_s=1.0,
    lag_convention=LAG_CONVENTION,
)

_STATE_HEADLINE = {"coupled": "Coupled", "anti_phase": "Anti-phase", "decoupled": "Decoupled"}


@dataclass(frozen=True, slots=True, kw_only=True)
class TileView:
    """The large synchrony state tile of one derived signal."""

    signal: str
    kind: TileKind
    headline: str
    detail: str
    figures: str


@dataclass(frozen=True, slots=True, kw_only=True)
class BadgeView:
    """Health of one raw sensor stream (``stream`` is e.g. ``"therapist-ecg"``)."""

    stream: str
    label: str
    level: BadgeLevel
    kind: str
    detail: str


@dataclass(frozen=True, slots=True, kw_only=True)
class HeaderView:
    session: str | None
    mode: str | None
    connection: ConnectionState
    connection_detail: str
    lag_convention: str
    ignored_messages: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Updates:
    """Everything the display must apply on one tick.

    ``reset`` means "clear every plot first" (a new session). ``physio`` is keyed by
    ``(signal, role)`` with columns ``x`` (elapsed ms) and ``y``; ``sync`` by signal with
    columns ``x``, ``z``, ``null_z``; ``episodes`` holds the full shading table of each
    signal whose episodes changed (columns ``left``, ``right``, ``state``).
    """

    reset: bool
    signals: tuple[str, ...]
    physio: dict[tuple[str, str], dict[str, list[float]]]
    sync: dict[str, dict[str, list[float]]]
    episodes: dict[str, dict[str, list[float] | list[str]]]
    physio_rollover: int
    sync_rollover: int
    tiles: dict[str, TileView]
    badges: tuple[BadgeView, ...]
    header: HeaderView


class _Series:
    """Rows waiting to be streamed to one plot, bounded to the plot's rollover."""

    __slots__ = ("_at_break", "_columns", "_last_t", "_last_x", "_max_step_s", "_rows")

    def __init__(self, columns: tuple[str, ...], *, capacity: int, max_step_s: float) -> None:
        self._columns = columns
        self._rows: deque[tuple[float, ...]] = deque(maxlen=capacity)
        self._max_step_s = max_step_s
        self._last_t: float | None = None
        self._last_x: float | None = None
        self._at_break = False

    def add(self, t_s: float, x: float, values: tuple[float, ...]) -> bool:
        """Queue one row; refuse (False) a time not after the previous one."""
        if self._last_t is not None:
            if t_s <= self._last_t:
                return False
            if t_s - self._last_t > self._max_step_s:
                self.add_break()
        self._rows.append((x, *values))
        self._last_t = t_s
        self._last_x = x
        self._at_break = False
        return True

    def add_break(self) -> None:
        """Queue a NaN row so the line does not bridge a hole in the data (once per hole,
        however many reconnect attempts fail meanwhile)."""
        if self._last_x is not None and not self._at_break:
            self._rows.append((self._last_x, *([math.nan] * (len(self._columns) - 1))))
            self._at_break = True

    @property
    def last_x(self) -> float | None:
        return self._last_x

    @property
    def capacity(self) -> int:
        return self._rows.maxlen or 0

    def take(self) -> dict[str, list[float]] | None:
        if not self._rows:
            return None
        columns = {name: [row[i] for row in self._rows] for i, name in enumerate(self._columns)}
        self._rows.clear()
        return columns


class _Episode:
    __slots__ = ("left_x", "right_x", "state")

    def __init__(self, state: str, left_x: float) -> None:
        self.state = state
        self.left_x = left_x
        self.right_x: float | None = None  # None while the episode is still open


class _Tile:
    __slots__ = ("received_at_s", "sync")

    def __init__(self) -> None:
        self.sync: Sync | None = None
        self.received_at_s = 0.0


class _Badge:
    __slots__ = ("detail", "kind", "lost", "received")

    def __init__(self) -> None:
        self.kind: str | None = None
        self.detail = ""
        self.received: int | None = None
        self.lost: int | None = None


class DashboardState:
    """The dashboard's model of one server connection (kept across reconnects).

    Call :meth:`feed` with every raw websocket message, the ``on_*`` methods on connection
    events, and :meth:`take_updates` on every display tick. ``now_s`` is a monotonic
    wall-clock reading supplied by the caller. Nothing here raises on bad input: ignored
    messages are counted in :attr:`ignored` by category.
    """

    __slots__ = (
        "_badges",
        "_connection",
        "_connection_detail",
        "_episodes",
        "_episodes_changed",
        "_hello",
        "_history_s",
        "_physio",
        "_reset",
        "_retry_at_s",
        "_session",
        "_sync",
        "_t0",
        "_tiles",
        "ignored",
    )

    def __init__(self, *, history_s: float = DEFAULT_HISTORY_S) -> None:
        if not history_s > 0:
            raise ConfigError(f"must be > 0 seconds, got {history_s!r}", key="history_s")
        self._history_s = history_s
        self._connection: ConnectionState = "connecting"
        self._connection_detail = ""
        self._retry_at_s: float | None = None
        self.ignored: dict[str, int] = {}
        self._session: str | None = None
        self._clear(_BEFORE_HELLO)
        self._hello: Hello | None = None
        self._reset = False

    # -- connection events ---------------------------------------------------------

    def on_connecting(self) -> None:
        self._connection = "connecting"
        self._connection_detail = ""
        self._retry_at_s = None

    def on_connected(self) -> None:
        self._connection = "connected"
        self._connection_detail = ""
        self._retry_at_s = None

    def on_disconnected(self, *, reason: str, now_s: float, retry_in_s: float) -> None:
        """The connection was lost (or refused); the feed retries after ``retry_in_s``."""
        self._connection = "disconnected"
        self._connection_detail = reason
        self._retry_at_s = now_s + retry_in_s
        # Whatever arrives after the reconnect is not continuous with what came before.
        for series in (*self._physio.values(), *self._sync.values()):
            series.add_break()

    # -- messages ------------------------------------------------------------------

    def feed(self, raw: str | bytes, *, now_s: float) -> None:
        """Apply one raw websocket message; malformed ones are counted, never raised."""
        try:
            message = decode_message(raw)
        except MessageIgnored as exc:
            self._count(exc.category)
            return
        except ProtocolError:
            self._count("malformed")
            return
        self.apply(message, now_s=now_s)

    def apply(self, message: Message, *, now_s: float) -> None:
        if isinstance(message, Hello):
            self._on_hello(message)
            return
        if self._hello is None or message.session != self._session:
            # Data before the hello, or from another session (a stale message racing a
            # session switch), has no frame of reference on this page.
            self._count("wrong_session")
            return
        if isinstance(message, Physio):
            self._on_physio(message)
        elif isinstance(message, Sync):
            self._on_sync(message, now_s=now_s)
        elif isinstance(message, Episode):
            self._on_episode(message)
        elif isinstance(message, Status):
            badge = self._badge(f"{message.role}-{message.signal}")
            badge.kind = message.kind
            badge.detail = message.detail
        elif isinstance(message, Health):
            self._on_health(message)
        elif isinstance(message, Other):
            pass  # error / pong: nothing to display

    def _count(self, category: str) -> None:
        self.ignored[category] = self.ignored.get(category, 0) + 1

    def _x(self, t_s: float) -> float:
        """Elapsed milliseconds since the session's first hello (a datetime axis unit)."""
        return (t_s - self._t0) * 1000.0

    def _on_hello(self, hello: Hello) -> None:
        if hello.session != self._session or self._hello is None:
            self._clear(hello)
            self._reset = True
        self._hello = hello

    def _clear(self, hello: Hello) -> None:
        self._session = hello.session or None
        self._t0 = hello.t
        margin = 1.1  # room for the NaN rows that mark gaps
        physio_rows = math.ceil(self._history_s * hello.grid_hz * margin)
        sync_rows = math.ceil(self._history_s / hello.step_s * margin)
        self._physio = {
            (signal, role): _Series(
                ("x", "y"), capacity=physio_rows, max_step_s=GAP_STEPS / hello.grid_hz
            )
            for signal in DERIVED_SIGNALS
            for role in ROLES
        }
        self._sync = {
            signal: _Series(
                ("x", "z", "null_z"), capacity=sync_rows, max_step_s=GAP_STEPS * hello.step_s
            )
            for signal in DERIVED_SIGNALS
        }
        self._tiles = {signal: _Tile() for signal in DERIVED_SIGNALS}
        self._episodes: dict[str, deque[_Episode]] = {
            signal: deque(maxlen=MAX_EPISODES) for signal in DERIVED_SIGNALS
        }
        self._episodes_changed: set[str] = set(DERIVED_SIGNALS)
        self._badges: dict[str, _Badge] = {}
        for signal in hello.signals:
            for role in ROLES:
                self._badge(f"{role}-{SOURCE_SIGNAL[signal]}")

    def _badge(self, stream: str) -> _Badge:
        return self._badges.setdefault(stream, _Badge())

    def _on_physio(self, message: Physio) -> None:
        series = self._physio[(message.signal, message.role)]
        for t_s, value in zip(message.t_s, message.values, strict=True):
            y = math.nan if value is None else value
            if not series.add(t_s, self._x(t_s), (y,)):
                self._count("out_of_order_samples")

    def _on_sync(self, message: Sync, *, now_s: float) -> None:
        z = math.nan if message.z is None else message.z
        null_z = math.nan if message.null_z is None else message.null_z
        if not self._sync[message.signal].add(message.t, self._x(message.t), (z, null_z)):
            self._count("out_of_order_samples")
            return
        tile = self._tiles[message.signal]
        tile.sync = message
        tile.received_at_s = now_s
        episodes = self._episodes[message.signal]
        if episodes and episodes[-1].right_x is None:
            self._episodes_changed.add(message.signal)  # the open episode grows

    def _on_episode(self, message: Episode) -> None:
        episodes = self._episodes[message.signal]
        x = self._x(message.t)
        if episodes and episodes[-1].right_x is None:
            # A start while another is open implicitly ends the open one.
            episodes[-1].right_x = max(x, episodes[-1].left_x)
        if message.event == "start":
            episodes.append(_Episode(message.state, x))
        self._episodes_changed.add(message.signal)

    def _on_health(self, message: Health) -> None:
        for stream, health in message.streams.items():
            role, _, signal = stream.partition("-")
            if role not in ROLES or signal not in SOURCE_SIGNAL.values():
                continue  # a stream this dashboard does not know how to label
            badge = self._badge(stream)
            if health.status is not None and health.status != badge.kind:
                badge.kind = health.status
                badge.detail = ""  # the detail belonged to the previous status
            badge.received = health.received
            badge.lost = health.lost

    # -- display tick --------------------------------------------------------------

    def take_updates(self, *, now_s: float) -> Updates:
        """Everything that changed since the previous call, plus current views."""
        hello = self._hello
        signals = hello.signals if hello is not None else ()
        step_s = hello.step_s if hello is not None else 1.0
        physio = {key: rows for key, s in self._physio.items() if (rows := s.take()) is not None}
        sync = {key: rows for key, s in self._sync.items() if (rows := s.take()) is not None}
        episodes = {signal: self._episode_table(signal) for signal in self._episodes_changed}
        self._episodes_changed = set()
        reset, self._reset = self._reset, False
        first_physio = next(iter(self._physio.values()))
        first_sync = next(iter(self._sync.values()))
        return Updates(
            reset=reset,
            signals=signals,
            physio=physio,
            sync=sync,
            episodes=episodes,
            physio_rollover=first_physio.capacity,
            sync_rollover=first_sync.capacity,
            tiles={s: self._tile_view(s, now_s=now_s, step_s=step_s) for s in DERIVED_SIGNALS},
            badges=tuple(self._badge_views()),
            header=self._header_view(now_s=now_s),
        )

    def _episode_table(self, signal: str) -> dict[str, list[float] | list[str]]:
        last_x = self._sync[signal].last_x
        states: list[str] = []
        lefts: list[float] = []
        rights: list[float] = []
        for episode in self._episodes[signal]:
            end = episode.right_x if episode.right_x is not None else last_x
            if end is None:
                continue  # opened before any synchrony step: nothing to shade yet
            states.append(episode.state)
            lefts.append(episode.left_x)
            rights.append(max(end, episode.left_x))
        return {"left": lefts, "right": rights, "state": states}

    def _tile_view(self, signal: str, *, now_s: float, step_s: float) -> TileView:
        tile = self._tiles[signal]
        sync = tile.sync
        if self._connection != "connected":
            return _no_estimate(signal, "Not connected to the server")
        if sync is None:
            return _no_estimate(signal, "Waiting for the first estimate")
        age_s = now_s - tile.received_at_s
        if age_s > max(MIN_STALE_S, STALE_STEPS * step_s):
            return _no_estimate(signal, f"No update for {age_s:.0f} s")
        if not sync.estimate:
            return _no_estimate(signal, _sentence(sync.reason or "no reason given"))
        if sync.state is None:
            # Numbers exist but the server has not classified them: no state is claimed.
            return TileView(
                signal=signal,
                kind="none",
                headline="No state yet",
                detail=_sentence(sync.reason or "not classified yet"),
                figures="",
            )
        kind: TileKind = (
            "coupled"
            if sync.state == "coupled"
            else "anti_phase"
            if sync.state == "anti_phase"
            else "decoupled"
        )
        return TileView(
            signal=signal,
            kind=kind,
            headline=_STATE_HEADLINE[sync.state],
            detail=_lead_text(sync.leader, sync.best_lag_s),
            figures=_figures_text(sync),
        )

    def _badge_views(self) -> Iterable[BadgeView]:
        for stream in sorted(self._badges, key=_stream_order):
            badge = self._badges[stream]
            role, _, signal = stream.partition("-")
            label = f"{role.capitalize()} {signal.upper()}"
            if self._connection != "connected":
                yield BadgeView(
                    stream=stream,
                    label=label,
                    level="unknown",
                    kind="unknown",
                    detail="no connection to the server",
                )
                continue
            if badge.kind is None:
                yield BadgeView(
                    stream=stream,
                    label=label,
                    level="unknown",
                    kind="waiting",
                    detail="no status received yet",
                )
                continue
            detail = badge.detail
            if badge.lost:
                detail = (
                    f"{detail}; {badge.lost} samples lost"
                    if detail
                    else (f"{badge.lost} samples lost")
                )
            yield BadgeView(
                stream=stream,
                label=label,
                level=_STATUS_LEVEL[badge.kind],
                kind=badge.kind.replace("_", " "),
                detail=detail,
            )

    def _header_view(self, *, now_s: float) -> HeaderView:
        detail = self._connection_detail
        if self._connection == "disconnected" and self._retry_at_s is not None:
            wait_s = max(0.0, self._retry_at_s - now_s)
            detail = (
                f"{detail}; retrying in {wait_s:.0f} s"
                if detail
                else (f"retrying in {wait_s:.0f} s")
            )
        hello = self._hello
        return HeaderView(
            session=self._session,
            mode=hello.mode if hello is not None else None,
            connection=self._connection,
            connection_detail=detail,
            lag_convention=hello.lag_convention if hello is not None else LAG_CONVENTION,
            ignored_messages=sum(self.ignored.values()),
        )


def _stream_order(stream: str) -> tuple[int, str]:
    role, _, signal = stream.partition("-")
    return (ROLES.index(role) if role in ROLES else len(ROLES), signal)


# Plain wording for the reasons protocol.md lists (and the server's null warm-up), for a
# clinician glancing at the tile; any other reason is shown as sent.
_REASON_TEXT = {
    "warming up": "Collecting enough data",
    "null warming up": "Estimating the chance level",
    "gap": "Gap in the data",
    "bad signal": "Signal quality too low",
    "clock break": "Clock jump in a sensor stream",
}


def _sentence(text: str) -> str:
    text = _REASON_TEXT.get(text, text)
    return text[:1].upper() + text[1:]


def _no_estimate(signal: str, reason: str) -> TileView:
    return TileView(signal=signal, kind="none", headline="No estimate", detail=reason, figures="")


def _lead_text(leader: str | None, best_lag_s: float | None) -> str:
    if leader is None or best_lag_s is None:
        return "No clear leader"
    # Positive lag = client follows therapist; a leader contradicting the sign of the
    # lag is shown as unclear instead of picking one of the two at random.
    if (leader == "therapist") != (best_lag_s > 0):
        return "Lead unclear"
    return f"{leader.capitalize()} leads by {abs(best_lag_s):.1f} s"


def _figures_text(sync: Sync) -> str:
    parts = []
    if sync.r is not None:
        parts.append(f"r {sync.r:+.2f}")
    if sync.null_z is not None:
        parts.append(f"z vs chance {sync.null_z:+.1f}")
    if sync.p is not None:
        parts.append(f"p {sync.p:.2f}" if sync.p >= 0.01 else "p < 0.01")
    return " · ".join(parts)

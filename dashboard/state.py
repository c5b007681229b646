"""What the dashboard knows, and the column updates it owes the browser (pure, no Bokeh).

:class:`DashboardState` absorbs decoded protocol messages and connection events as they
arrive and, on every display tick, hands back an :class:`Updates` value: new rows for
each plot (to ``ColumnDataSource.stream`` with a rollover) plus views of the tiles, badges
and header. Keeping this free of Bokeh and of the clock (the caller passes ``now_s``)
makes every display rule testable without a browser.

Display rules that keep the page from being wrong silently:

- time is session time: LSL seconds since the hello's ``started_t`` (the session start),
  so every page, however late it was opened, labels the same moment alike;
- an invalid or missing sample is NaN, which Bokeh draws as a gap; a hole in the grid
  (dropped batch, reconnect) also inserts a gap rather than a line bridging it;
- the backlog a server sends right after ``hello`` (recent messages, oldest first) fills
  the plots; what the page already holds (a reconnect) is skipped silently;
- a synchrony tile shows a state only while estimates keep arriving from a connected
  server; otherwise it says "No estimate" and why, in plain words, with a countdown while a
  window or the chance level is still filling (the synchrony plot repeats that text while
  it has nothing to draw, so an empty plot never looks broken);
- the connection pill and every stream badge fall back to grey/unknown while the server is
  unreachable or silent: a badge never stays green on old news;
- a recording problem the server reported stays shown until the session ends (a failed
  recording does not resume), while "recording" itself is only claimed on live contact;
- in a replay, losing the server is worded as what it most likely is: the replay ended.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from dsp.exceptions import ConfigError

from .messages import (
    DEFAULT_Z_ENTER,
    DERIVED_SIGNALS,
    LAG_CONVENTION,
    REPLAY_MODE,
    ROLES,
    Episode,
    Health,
    Hello,
    Message,
    MessageIgnored,
    Other,
    Physio,
    Recording,
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

# A connected server sends health every 2 s (protocol.md): three missed reports mean it is
# hung or cut off behind a half-open connection, and the badges must stop claiming health.
SILENT_S = 6.0

# Surrogate null history beyond window + 2 x lag before the server can test against chance:
# the server's defaults (dsp SurrogateConfig: min_shift_s 20 s, plus 99 surrogates' first
# half, 49 spacings of 0.5 s). The hello does not carry them, so the countdown built on this
# is shown as "about"; it only informs the wait, never a number on screen.
NULL_EXTRA_S = 20.0 + 49 * 0.5

# Derived signal -> raw streams it is computed from (for the expected stream badges).
SOURCE_SIGNAL = {"hr": "ecg", "scl": "eda", "phasic": "eda"}

ConnectionState = Literal["connecting", "connected", "disconnected"]
# What the header shows: the feed's state, or "silent" (connected, but nothing arrives).
HeaderConnection = Literal["connecting", "connected", "disconnected", "silent"]
TileKind = Literal["coupled", "anti_phase", "decoupled", "none"]
BadgeLevel = Literal["ok", "warn", "bad", "unknown"]
# "on": the hello names a file and the server is in contact; "unknown": it named one but
# contact is lost (the recording may have ended with the server); "failed" / "lagging":
# the server's ``recording`` message (messages.RECORDING_STATES).
RecordingKind = Literal["on", "unknown", "failed", "lagging"]

# What a lost server most likely means in a replay: it stops once it played everything.
REPLAY_GONE = "Replay ended or server stopped"
# Start of the replay source's ``connected`` status detail (streamer/player.py), which
# tells a replayed stream from a live sensor.
REPLAYING_DETAIL = "replaying"

_STATUS_LEVEL: dict[str, BadgeLevel] = {
    "connected": "ok",
    "recovered": "ok",
    "stalled": "warn",
    "bad_samples": "warn",
    "clock_break": "warn",
    "missing": "bad",
    "mismatch": "bad",
}

# Stand-in until the server's hello arrives: protocol defaults, no signals.
_BEFORE_HELLO = Hello(
    session="",
    t=0.0,
    started_t=None,
    mode="live",
    signals=(),
    grid_hz=4.0,
    step_s=1.0,
    z_enter=DEFAULT_Z_ENTER,
    lag_convention=LAG_CONVENTION,
)

# Synchrony state (messages.SYNC_STATES) -> tile kind and headline.
_STATE_TILE: dict[str, tuple[TileKind, str]] = {
    "coupled": ("coupled", "Coupled"),
    "anti_phase": ("anti_phase", "Anti-phase"),
    "decoupled": ("decoupled", "Decoupled"),
}


@dataclass(frozen=True, slots=True, kw_only=True)
class TileView:
    """The large synchrony state tile of one derived signal; ``note`` qualifies the
    headline (e.g. coupling emerging before the server classifies it), often empty."""

    signal: str
    kind: TileKind
    headline: str
    detail: str
    figures: str
    note: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class BadgeView:
    """Health of one raw sensor stream (``stream`` is e.g. ``"therapist-ecg"``)."""

    stream: str
    label: str
    level: BadgeLevel
    kind: str
    detail: str


@dataclass(frozen=True, slots=True, kw_only=True)
class RecordingView:
    """The recording chip next to the stream badges; ``file`` is the file name from the
    hello ("" when unknown), ``detail`` the server's words on a problem ("" otherwise)."""

    kind: RecordingKind
    file: str
    detail: str


@dataclass(frozen=True, slots=True, kw_only=True)
class HeaderView:
    session: str | None
    mode: str | None
    connection: HeaderConnection
    connection_detail: str
    lag_convention: str
    ignored_messages: int

    @property
    def is_replay(self) -> bool:
        return self.mode == REPLAY_MODE


@dataclass(frozen=True, slots=True, kw_only=True)
class Updates:
    """Everything the display must apply on one tick.

    ``reset`` means "clear every plot first" (a new session). ``physio`` is keyed by
    ``(signal, role)`` with columns ``x`` (session time, ms) and ``y``; ``sync`` by signal
    with columns ``x``, ``z``, ``null_z``; ``episodes`` holds the full shading table of each
    signal whose episodes changed (columns ``left``, ``right``, ``state``).
    ``coupling_threshold_z`` is the ``null_z`` above which the server enters an episode.
    ``sync_notes`` holds, per signal, the text the synchrony plot shows over its area while
    the tile shows no state (why the line is missing or ended), "" otherwise.
    ``recording`` is None when the server records nothing (or does not say).
    """

    reset: bool
    signals: tuple[str, ...]
    coupling_threshold_z: float
    physio: dict[tuple[str, str], dict[str, list[float]]]
    sync: dict[str, dict[str, list[float]]]
    episodes: dict[str, dict[str, list[float] | list[str]]]
    physio_rollover: int
    sync_rollover: int
    tiles: dict[str, TileView]
    sync_notes: dict[str, str]
    badges: tuple[BadgeView, ...]
    recording: RecordingView | None
    header: HeaderView


class _Series:
    """Rows waiting to be streamed to one plot, bounded to the plot's rollover."""

    __slots__ = ("_columns", "_last_t", "_last_x", "_max_step_s", "_rows")

    def __init__(self, columns: tuple[str, ...], *, capacity: int, max_step_s: float) -> None:
        self._columns = columns
        self._rows: deque[tuple[float, ...]] = deque(maxlen=capacity)
        self._max_step_s = max_step_s
        self._last_t: float | None = None
        self._last_x: float | None = None

    def add(self, t_s: float, x: float, values: tuple[float, ...]) -> bool:
        """Queue one row; refuse (False) a time not after the previous one. A hole in time
        (dropped batch, outage without backlog) queues a NaN row first, so the line does
        not bridge it; a reconnect whose backlog fills the outage leaves no gap."""
        if self._last_t is not None and self._last_x is not None:
            if t_s <= self._last_t:
                return False
            if t_s - self._last_t > self._max_step_s:
                self._rows.append((self._last_x, *([math.nan] * (len(self._columns) - 1))))
        self._rows.append((x, *values))
        self._last_t = t_s
        self._last_x = x
        return True

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


class _Episodes:
    """Episodes of one signal, and which events were already applied: a backlog after a
    reconnect repeats events, and applying an old "start" again would close the open
    episode. Events are applied in ``t`` order; at one ``t`` (an end and a start decided
    together) each distinct event once."""

    __slots__ = ("_last_keys", "_last_t", "items")

    def __init__(self) -> None:
        self.items: deque[_Episode] = deque(maxlen=MAX_EPISODES)
        self._last_t = -math.inf
        self._last_keys: set[tuple[str, str]] = set()

    def is_new(self, message: Episode) -> bool:
        key = (message.event, message.state)
        if message.t < self._last_t or (message.t == self._last_t and key in self._last_keys):
            return False
        if message.t > self._last_t:
            self._last_t = message.t
            self._last_keys = set()
        self._last_keys.add(key)
        return True

    @property
    def open(self) -> _Episode | None:
        return self.items[-1] if self.items and self.items[-1].right_x is None else None


class _Tile:
    __slots__ = ("received_at_s", "sync", "wait_origin_t")

    def __init__(self) -> None:
        self.sync: Sync | None = None
        self.received_at_s = 0.0
        # LSL time the current wait (window filling, then chance level) started counting
        # from; None when the latest update is not waiting for anything.
        self.wait_origin_t: float | None = None


class _Badge:
    __slots__ = ("detail", "kind", "lost", "received", "t")

    def __init__(self) -> None:
        self.kind: str | None = None
        self.detail = ""
        self.received: int | None = None
        self.lost: int | None = None
        # LSL time of the news the badge shows: a backlog status replayed after a
        # reconnect must not overwrite a newer health report.
        self.t = -math.inf


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
        "_last_message_s",
        "_physio",
        "_recording_problem",
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
        self._last_message_s: float | None = None
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
        self._last_message_s = None  # silence is measured from this connection's first

    def on_disconnected(self, *, reason: str, now_s: float, retry_in_s: float) -> None:
        """The connection was lost (or refused); the feed retries after ``retry_in_s``."""
        self._connection = "disconnected"
        self._connection_detail = reason
        self._retry_at_s = now_s + retry_in_s

    # -- messages ------------------------------------------------------------------

    def feed(self, raw: str | bytes, *, now_s: float) -> None:
        """Apply one raw websocket message; malformed ones are counted, never raised."""
        self._last_message_s = now_s  # even a malformed message shows the server is alive
        try:
            message = decode_message(raw)
        except MessageIgnored as exc:
            self._count(exc.category)
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
            if message.t >= badge.t:
                badge.kind = message.kind
                badge.detail = message.detail
                badge.t = message.t
        elif isinstance(message, Health):
            self._on_health(message)
        elif isinstance(message, Recording):
            self._on_recording(message)
        elif isinstance(message, Other):
            pass  # error / pong: nothing to display

    def _count(self, category: str) -> None:
        self.ignored[category] = self.ignored.get(category, 0) + 1

    def _count_stale(self, t_s: float) -> None:
        """Count data refused as not newer than what is held, unless it is backlog (older
        than the hello): a reconnect's backlog repeats what the page has, by design."""
        assert self._hello is not None
        if t_s > self._hello.t:
            self._count("out_of_order_samples")

    def _x(self, t_s: float) -> float:
        """Session time in milliseconds (the time axis unit): LSL seconds since the origin."""
        return (t_s - self._t0) * 1000.0

    def _on_hello(self, hello: Hello) -> None:
        previous = self._hello
        restarted = (
            previous is not None
            and previous.started_t is not None
            and hello.started_t is not None
            and previous.started_t != hello.started_t
        )  # same room name, new session start: a new session
        if previous is None or hello.session != self._session or restarted:
            self._clear(hello)
            self._reset = True
        self._hello = hello

    def _clear(self, hello: Hello) -> None:
        self._session = hello.session or None
        # Kept across reconnects to the same session, so the axis never jumps.
        self._t0 = hello.origin_t
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
        self._episodes = {signal: _Episodes() for signal in DERIVED_SIGNALS}
        self._episodes_changed: set[str] = set(DERIVED_SIGNALS)
        self._badges: dict[str, _Badge] = {}
        # Per session: a new session records to a new file, with a clean slate.
        self._recording_problem: Recording | None = None
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
                self._count_stale(t_s)

    def _on_sync(self, message: Sync, *, now_s: float) -> None:
        assert self._hello is not None
        z = math.nan if message.z is None else message.z
        null_z = math.nan if message.null_z is None else message.null_z
        if not self._sync[message.signal].add(message.t, self._x(message.t), (z, null_z)):
            self._count_stale(message.t)
            return
        tile = self._tiles[message.signal]
        tile.wait_origin_t = _wait_origin(tile, message, hello=self._hello)
        tile.sync = message
        # A backlog update was already this old when the hello was sent: an outage that
        # the backlog reveals (no recent update) must read as stale, not as current.
        tile.received_at_s = now_s - max(0.0, self._hello.t - message.t)
        if self._episodes[message.signal].open is not None:
            self._episodes_changed.add(message.signal)  # the open episode grows

    def _on_episode(self, message: Episode) -> None:
        episodes = self._episodes[message.signal]
        if not episodes.is_new(message):
            self._count_stale(message.t)
            return
        x = self._x(message.t)
        if (open_episode := episodes.open) is not None:
            # A start while another is open implicitly ends the open one.
            open_episode.right_x = max(x, open_episode.left_x)
        if message.event == "start":
            episodes.items.append(_Episode(message.state, x))
        self._episodes_changed.add(message.signal)

    def _on_health(self, message: Health) -> None:
        for stream, health in message.streams.items():
            role, _, signal = stream.partition("-")
            if role not in ROLES or signal not in SOURCE_SIGNAL.values():
                continue  # a stream this dashboard does not know how to label
            badge = self._badge(stream)
            if message.t < badge.t:
                continue
            badge.t = message.t
            if health.status is not None and health.status != badge.kind:
                badge.kind = health.status
                badge.detail = ""  # the detail belonged to the previous status
            badge.received = health.received
            badge.lost = health.lost

    def _on_recording(self, message: Recording) -> None:
        # "failed" is final (nothing more is recorded), so a later "lagging" report cannot
        # soften it; otherwise the newest report wins, so the backlog a reconnect repeats
        # leaves the badge as it was.
        current = self._recording_problem
        if current is None or _recording_rank(message) >= _recording_rank(current):
            self._recording_problem = message

    # -- display tick --------------------------------------------------------------

    def take_updates(self, *, now_s: float) -> Updates:
        """Everything that changed since the previous call, plus current views."""
        hello = self._hello
        signals = hello.signals if hello is not None else ()
        physio = {key: rows for key, s in self._physio.items() if (rows := s.take()) is not None}
        sync = {key: rows for key, s in self._sync.items() if (rows := s.take()) is not None}
        episodes = {signal: self._episode_table(signal) for signal in self._episodes_changed}
        self._episodes_changed = set()
        reset, self._reset = self._reset, False
        first_physio = next(iter(self._physio.values()))
        first_sync = next(iter(self._sync.values()))
        tiles = {s: self._tile_view(s, now_s=now_s) for s in DERIVED_SIGNALS}
        return Updates(
            reset=reset,
            signals=signals,
            coupling_threshold_z=hello.z_enter if hello is not None else DEFAULT_Z_ENTER,
            physio=physio,
            sync=sync,
            episodes=episodes,
            physio_rollover=first_physio.capacity,
            sync_rollover=first_sync.capacity,
            tiles=tiles,
            # The plot says what the tile says: one explanation, never a bare empty plot.
            sync_notes={s: tile.detail if tile.kind == "none" else "" for s, tile in tiles.items()},
            badges=tuple(self._badge_views(now_s=now_s)),
            recording=self._recording_view(now_s=now_s),
            header=self._header_view(now_s=now_s),
        )

    def _silent_s(self, *, now_s: float) -> float | None:
        """Seconds without any message on an open connection, once that is too long."""
        if self._connection != "connected" or self._last_message_s is None:
            return None
        silent_s = now_s - self._last_message_s
        return silent_s if silent_s > SILENT_S else None

    def _episode_table(self, signal: str) -> dict[str, list[float] | list[str]]:
        last_x = self._sync[signal].last_x
        states: list[str] = []
        lefts: list[float] = []
        rights: list[float] = []
        for episode in self._episodes[signal].items:
            end = episode.right_x if episode.right_x is not None else last_x
            if end is None:
                continue  # opened before any synchrony step: nothing to shade yet
            states.append(episode.state)
            lefts.append(episode.left_x)
            rights.append(max(end, episode.left_x))
        return {"left": lefts, "right": rights, "state": states}

    def _tile_view(self, signal: str, *, now_s: float) -> TileView:
        tile = self._tiles[signal]
        sync = tile.sync
        hello = self._hello
        if self._connection != "connected":
            replay = hello is not None and hello.is_replay
            return _no_estimate(signal, REPLAY_GONE if replay else "Not connected to the server")
        if sync is None or hello is None:
            return _no_estimate(signal, "Waiting for the first estimate")
        age_s = now_s - tile.received_at_s
        if age_s > max(MIN_STALE_S, STALE_STEPS * hello.step_s):
            return _no_estimate(signal, f"No update for {age_s:.0f} s")
        explanation = _explain(sync, wait_origin_t=tile.wait_origin_t, hello=hello)
        if not sync.estimate:
            return _no_estimate(signal, explanation or "The server gave no reason")
        if sync.state is None:
            # Numbers exist but the server has not classified them: no state is claimed.
            return TileView(
                signal=signal,
                kind="none",
                headline="No state yet",
                detail=explanation or "Not classified yet",
                figures="",
            )
        kind, headline = _STATE_TILE[sync.state]
        return TileView(
            signal=signal,
            kind=kind,
            headline=headline,
            note=_emerging_note(sync, z_enter=hello.z_enter),
            detail=_lead_text(sync.leader, sync.best_lag_s),
            figures=_figures_text(sync),
        )

    def _badge_views(self, *, now_s: float) -> Iterable[BadgeView]:
        silent_s = self._silent_s(now_s=now_s)
        for stream in sorted(self._badges, key=_stream_order):
            badge = self._badges[stream]
            role, _, signal = stream.partition("-")
            label = f"{role.capitalize()} {signal.upper()}"
            if self._connection != "connected" or silent_s is not None:
                yield BadgeView(
                    stream=stream,
                    label=label,
                    level="unknown",
                    kind="unknown",
                    detail=(
                        "no connection to the server"
                        if silent_s is None
                        else f"nothing from the server for {silent_s:.0f} s"
                    ),
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
                detail = _join(detail, f"{badge.lost} samples lost")
            kind = badge.kind.replace("_", " ")
            if badge.kind == "connected" and badge.detail.startswith(REPLAYING_DETAIL):
                kind = "replaying"  # a recorded stream, not a sensor in the room
            yield BadgeView(
                stream=stream,
                label=label,
                level=_STATUS_LEVEL[badge.kind],
                kind=kind,
                detail=detail,
            )

    def _recording_view(self, *, now_s: float) -> RecordingView | None:
        file = self._hello.recording_file if self._hello is not None else None
        problem = self._recording_problem
        if problem is not None:
            # Shown whatever the connection: the recording is incomplete either way.
            kind: RecordingKind = "failed" if problem.state == "failed" else "lagging"
            return RecordingView(kind=kind, file=file or "", detail=problem.detail)
        if file is None:
            return None
        in_contact = self._connection == "connected" and self._silent_s(now_s=now_s) is None
        return RecordingView(kind="on" if in_contact else "unknown", file=file, detail="")

    def _header_view(self, *, now_s: float) -> HeaderView:
        detail = self._connection_detail
        connection: HeaderConnection = self._connection
        if self._connection == "disconnected" and self._retry_at_s is not None:
            wait_s = max(0.0, self._retry_at_s - now_s)
            detail = _join(detail, f"retrying in {wait_s:.0f} s")
        hello = self._hello
        if self._connection == "disconnected" and hello is not None and hello.is_replay:
            detail = _join(REPLAY_GONE, detail)
        if (silent_s := self._silent_s(now_s=now_s)) is not None:
            connection = "silent"
            detail = f"nothing from the server for {silent_s:.0f} s"
        return HeaderView(
            session=self._session,
            mode=hello.mode if hello is not None else None,
            connection=connection,
            connection_detail=detail,
            lag_convention=hello.lag_convention if hello is not None else LAG_CONVENTION,
            ignored_messages=sum(self.ignored.values()),
        )


def _join(detail: str, more: str) -> str:
    """``more`` appended to a possibly empty ``detail``."""
    return f"{detail}; {more}" if detail else more


def _recording_rank(message: Recording) -> tuple[bool, float]:
    return (message.state == "failed", message.t)


def _stream_order(stream: str) -> tuple[int, str]:
    role, _, signal = stream.partition("-")
    return (ROLES.index(role) if role in ROLES else len(ROLES), signal)


@dataclass(frozen=True, slots=True)
class _Reason:
    """Plain wording of one ``sync.reason``; ``{window}`` becomes e.g. "30 s " (the hello's
    window) or nothing. ``wait`` names what the server is waiting for, which gives a
    countdown: a full synchrony ``"window"`` or enough history for the ``"null"``."""

    text: str
    wait: Literal["window", "null"] | None = None


# Every reason protocol.md and the synchrony engine (dsp/synchrony.py ``Reason``) can send,
# worded for a clinician glancing at the tile; "reconnected"/"settling" come with a sensor
# reconnect (a new segment: the window refills). A reason not listed here is shown as sent
# inside a generic sentence (see _explain), never dropped.
_REASONS: dict[str, _Reason] = {
    "warming up": _Reason("Collecting the first {window}window", wait="window"),
    "reconnected": _Reason("Sensor reconnected, collecting a fresh {window}window", wait="window"),
    "settling": _Reason("Sensor reconnected, collecting a fresh {window}window", wait="window"),
    "null warming up": _Reason("Building the chance level", wait="null"),
    "null unavailable": _Reason("Too many gaps to compare with chance"),
    "gap": _Reason("Gap in the data"),
    "bad signal": _Reason("Signal quality too low"),
    "flat signal": _Reason("A signal is flat (check the sensor)"),
    "clock break": _Reason("Clock jump in a sensor stream"),
}


def _span_s(hello: Hello) -> float | None:
    """Data one synchrony update needs: the window plus the maximum lag (rMEA convention:
    window w covers ``[w*inc, w*inc+win+lag)``)."""
    if hello.window_s is None or hello.lag_s is None:
        return None
    return hello.window_s + hello.lag_s


def _wait_origin(tile: _Tile, sync: Sync, *, hello: Hello) -> float | None:
    """LSL time the wait ``sync`` reports started counting from (see :func:`_explain`).

    A run of one window reason counts from its first update; the null's history counts from
    the same start as the window before it (the server's history starts with the data), or,
    when the page never saw that window fill, from when this update's window began.
    """
    reason = _REASONS.get(sync.reason or "")
    if reason is None or reason.wait is None:
        return None
    previous = tile.sync
    continuing = previous is not None and (reason.wait == "null" or previous.reason == sync.reason)
    if tile.wait_origin_t is not None and continuing:
        return tile.wait_origin_t
    if reason.wait == "window":
        return sync.t
    span_s = _span_s(hello)
    return sync.t if span_s is None else sync.t - span_s + hello.step_s


def _explain(sync: Sync, *, wait_origin_t: float | None, hello: Hello) -> str:
    """The tile's plain sentence for ``sync.reason`` ("" without a reason), with "about N s"
    while a window or the chance level fills, counted on the data's own clock."""
    if not sync.reason:
        return ""
    reason = _REASONS.get(sync.reason)
    if reason is None:
        return f"Not available (server says: {sync.reason})"
    window = f"{hello.window_s:g} s " if hello.window_s is not None else ""
    text = reason.text.format(window=window)
    span_s = _span_s(hello)
    if reason.wait is None or span_s is None or wait_origin_t is None or hello.lag_s is None:
        return text
    # The null needs the shifted windows on top of one window plus both lags (NULL_EXTRA_S).
    needed_s = span_s if reason.wait == "window" else span_s + hello.lag_s + NULL_EXTRA_S
    elapsed_s = sync.t - wait_origin_t + hello.step_s
    return f"{text} ({_about(needed_s - elapsed_s)})"


def _about(remaining_s: float) -> str:
    seconds = math.ceil(remaining_s)
    if seconds <= 0:
        return "any moment now"
    if seconds < 120:
        return f"about {seconds} s"
    return f"about {round(seconds / 60)} min"


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


def _emerging_note(sync: Sync, *, z_enter: float) -> str:
    """Why the figures may look stronger than the state: the server enters an episode only
    after the z against chance has stayed above threshold for a while (hysteresis)."""
    if sync.state != "decoupled":
        return ""
    if sync.null_z is not None and sync.null_z >= z_enter:
        return "Coupling emerging…"
    if sync.anti_null_z is not None and sync.anti_null_z >= z_enter:
        return "Anti-phase pattern emerging…"
    return ""


def _figures_text(sync: Sync) -> str:
    parts = []
    if sync.z is not None:
        # The correlation at the best lag (z is its Fisher z): the strength the lead
        # refers to, in the unit clinicians read.
        parts.append(f"peak r {math.tanh(sync.z):+.2f}")
    elif sync.r is not None:
        parts.append(f"r {sync.r:+.2f}")
    if sync.null_z is not None:
        parts.append(f"z vs chance {sync.null_z:+.1f}")
    if sync.p is not None:
        parts.append(f"p {sync.p:.2f}" if sync.p >= 0.01 else "p < 0.01")
    return " · ".join(parts)

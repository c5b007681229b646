"""Protocol-v1 messages as the server sends them, and a connected DashboardState fed with
them: shared by the dashboard tests (state, views, feed, serve)."""

from __future__ import annotations

import json
from html.parser import HTMLParser
from typing import Any

from dashboard.state import DashboardState

T0 = 1000.0


def hello(
    session: str = "room-1",
    *,
    t: float = T0,
    signals: tuple[str, ...] = ("hr", "scl"),
    grid_hz: float = 4.0,
    started_t: float | None = None,
    z_enter: float | None = None,
    synchrony: dict[str, float] | None = None,
    mode: str = "live",
    recording_file: str | None = None,
) -> str:
    """A hello; ``started_t``, ``thresholds`` and ``recording`` are only sent when given
    (as from a server that predates them); ``synchrony`` replaces the default 30 s window,
    5 s lag."""
    doc: dict[str, Any] = {
        "v": 1,
        "type": "hello",
        "session": session,
        "t": t,
        "mode": mode,
        "signals": list(signals),
        "grid_hz": grid_hz,
        "synchrony": (
            {"window_s": 30.0, "lag_s": 5.0, "step_s": 1.0} if synchrony is None else synchrony
        ),
        "lag_convention": "positive lag = client follows therapist",
    }
    if started_t is not None:
        doc["started_t"] = started_t
    if z_enter is not None:
        doc["thresholds"] = {"z_enter": z_enter, "z_exit": 1.5}
    if recording_file is not None:
        doc["recording"] = {"file": recording_file}
    return json.dumps(doc)


def recording(
    state: str = "failed",
    *,
    t: float = T0 + 10,
    detail: str = "recording stopped: room-1.xdf: cannot write the recording (No space left "
    "on device)",
) -> str:
    """A ``recording`` problem report, as the server sends it when the recorder fails."""
    return json.dumps(
        {
            "v": 1,
            "type": "recording",
            "session": "room-1",
            "t": t,
            "state": state,
            "detail": detail,
        }
    )


def physio(
    t_s: list[float],
    values: list[float | None],
    *,
    role: str = "therapist",
    signal: str = "hr",
    session: str = "room-1",
) -> str:
    return json.dumps(
        {
            "v": 1,
            "type": "physio",
            "session": session,
            "t": t_s[-1],
            "role": role,
            "signal": signal,
            "t_s": t_s,
            "values": values,
            "valid": [v is not None for v in values],
        }
    )


def sync(t: float, *, signal: str = "hr", **fields: Any) -> str:
    """A coupled estimate (therapist leads by 2 s, z 0.73 over a null of 3.1); ``fields``
    override any key."""
    doc = {
        "v": 1,
        "type": "sync",
        "session": "room-1",
        "t": t,
        "signal": signal,
        "estimate": True,
        "reason": None,
        "r": 0.62,
        "z": 0.73,
        "best_lag_s": 2.0,
        "leader": "therapist",
        "null_z": 3.1,
        "p": 0.01,
        "concordance": 1.2,
        "state": "coupled",
    }
    doc.update(fields)
    return json.dumps(doc)


def connected(*messages: str, now_s: float = 0.0) -> DashboardState:
    """A state whose websocket is up and that has been fed ``messages``."""
    state = DashboardState()
    state.on_connected()
    for raw in messages:
        state.feed(raw, now_s=now_s)
    return state


class _ShownText(HTMLParser):
    """Text of an HTML fragment as the page shows it with or without the ``lost`` class
    (views.py: ``live-only`` parts hide when lost, ``lost-only`` parts show only then)."""

    def __init__(self, *, lost: bool) -> None:
        super().__init__()
        self._hidden_class = "live-only" if lost else "lost-only"
        self._stack: list[bool] = []  # per open element: hidden (itself or an ancestor)
        self.parts: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        classes = (dict(attrs).get("class") or "").split()
        hidden = bool(self._stack and self._stack[-1]) or self._hidden_class in classes
        self._stack.append(hidden)

    def handle_endtag(self, tag: str) -> None:
        self._stack.pop()

    def handle_data(self, data: str) -> None:
        if not (self._stack and self._stack[-1]):
            self.parts.append(data)


def shown_text(html: str, *, lost: bool = False) -> str:
    parser = _ShownText(lost=lost)
    parser.feed(html)
    parser.close()
    return " ".join(" ".join(parser.parts).split())

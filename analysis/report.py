"""A self-contained HTML report of one analysed session (opens with no network).

The report is the dashboard itself, fed the whole recorded session: every protocol message
the replay published goes through :class:`dashboard.state.DashboardState` (with a history
as long as the session) into :class:`dashboard.app.DashboardView`, so the plots, palette,
tiles and wording are the clinician's, not a look-alike. Above them it adds what only an
offline view can show: the summary in words (:func:`analysis.summary.summary_lines`), the
whole-session overview per signal (synchrony state of every update, episodes with who
led each entry, markers and comments) and the annotation tables.

Bokeh's JavaScript is inlined (``bokeh.resources.INLINE``): the file references no
external script or style sheet, so it opens on a machine with no network.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from html import escape
from pathlib import Path
from typing import Any

from bokeh.embed import file_html
from bokeh.layouts import column
from bokeh.models import DataRange1d, InlineStyleSheet, LayoutDOM, Range1d
from bokeh.models.annotations import Span, Title
from bokeh.models.renderers import GlyphRenderer
from bokeh.models.widgets.markups import Div
from bokeh.resources import INLINE

from analysis.session import SessionAnalysis
from analysis.summary import summary_lines
from analysis.tables import Annotations
from dashboard.app import (
    EPISODE_LABELS,
    ROLE_COLORS,
    TIME_AXIS_LABEL,
    DashboardView,
    _legend,
    _styled_figure,
)
from dashboard.state import DashboardState
from dashboard.views import SIGNAL_TITLES, STATE_COLORS, THRESHOLD_COLOR
from dsp.pipeline import Derived
from server.protocol import Message, encode

__all__ = ["write_report"]

# The dashboard decodes messages of at most 1 MiB (dashboard.messages.MAX_MESSAGE_BYTES);
# a replay at full speed batches a person's whole series into a few physio messages, so
# they are fed in slices of this many samples, as a live server would have sent them.
PHYSIO_SLICE = 512

# Overview rows: the state of every update as a band; "no estimate" drawn light grey.
NO_STATE = "no_estimate"
OVERVIEW_COLORS = {**STATE_COLORS, NO_STATE: "#E6E6E6"}
OVERVIEW_LABELS = {**EPISODE_LABELS, "decoupled": "decoupled", NO_STATE: "no estimate / untested"}
OVERVIEW_HEIGHT_PX = 150
# Episode entries as triangles above the band, in the colour of who led (the dashboard's
# therapist/client colours).
NO_LEADER = "none"
ENTRY_COLORS = {**ROLE_COLORS, NO_LEADER: THRESHOLD_COLOR}
MARKER_COLOR = "#D55E00"  # Okabe-Ito vermillion, as the dashboard flags what needs a look
COMMENT_COLOR = "#56B4E9"  # Okabe-Ito sky blue

CSS = """
:host { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #222; }
h1 { font-size: 22px; font-weight: 600; } h2 { font-size: 17px; margin-top: 28px; }
.facts li { margin: 4px 0; max-width: 70em; }
.muted { color: #777; font-size: 13px; }
table { border-collapse: collapse; font-size: 13px; margin: 6px 0 12px 0; }
td, th { border-bottom: 1px solid #e4e4e4; padding: 3px 10px; text-align: left; }
"""


def write_report(
    analysis: SessionAnalysis,
    summary: dict[str, Any],
    path: Path,
    *,
    annotations: Annotations,
) -> Path:
    """Write the report of ``analysis`` (with its ``summary``) to ``path``."""
    started_t = analysis.started_t
    overview = [
        _overview(signal, analysis.sync(Derived(signal)), analysis.episodes(), annotations,
                  started_t=started_t)
        for signal in analysis.hello["signals"]
    ]  # fmt: skip
    dashboard = _dashboard(analysis.messages)
    parts: list[LayoutDOM] = [
        _div(_head_html(summary)),
        *overview,
        _div(_annotations_html(annotations, started_t=started_t)),
        _div(
            "<h2>The session on the dashboard</h2><p class='muted'>The clinician's view "
            "of the whole session; tiles show the state at the session's end.</p>"
        ),
        *(dashboard.sections[s].layout for s in analysis.hello["signals"]),
    ]
    title = f"dyadsync report: {summary['session']['room']}"
    page = column(parts, sizing_mode="stretch_width", styles={"padding": "8px 20px"})
    html = file_html(page, resources=INLINE, title=title)
    path.write_text(html, encoding="utf-8")
    return path


def _div(html: str) -> Div:
    return Div(text=html, sizing_mode="stretch_width", stylesheets=[InlineStyleSheet(css=CSS)])


def _dashboard(messages: Sequence[Message]) -> DashboardView:
    """The dashboard's view after receiving every message of the session at once."""
    stamps = [float(m["t"]) for m in messages]
    state = DashboardState(history_s=max(stamps) - min(stamps) + 60.0)
    state.on_connected()
    for message in messages:
        for piece in _slices(message):
            state.feed(encode(piece), now_s=float(piece["t"]))
    view = DashboardView()
    view.render(state.take_updates(now_s=max(stamps)))
    return view


def _slices(message: Message) -> Iterator[Message]:
    if message["type"] != "physio" or len(message["t_s"]) <= PHYSIO_SLICE:
        yield message
        return
    for start in range(0, len(message["t_s"]), PHYSIO_SLICE):
        stop = start + PHYSIO_SLICE
        t_s = message["t_s"][start:stop]
        yield {
            **message,
            "t": t_s[-1],
            "t_s": t_s,
            "values": message["values"][start:stop],
            "valid": message["valid"][start:stop],
        }


def _overview(
    signal: str,
    updates: Sequence[Message],
    episodes: Sequence[Message],
    annotations: Annotations,
    *,
    started_t: float,
) -> LayoutDOM:
    """One signal's whole session: a band per update coloured by state, episode entries
    coloured by who led, markers and comments as vertical lines."""

    def ms(t: float) -> float:
        return (t - started_t) * 1000.0  # the dashboard's axis unit

    fig = _styled_figure(
        name=f"{signal}_overview",
        height=OVERVIEW_HEIGHT_PX,
        x_range=DataRange1d(range_padding=0.02),
        y_label="",
    )
    fig.xaxis.axis_label = TIME_AXIS_LABEL
    fig.yaxis.visible = False
    fig.y_range = Range1d(start=0.0, end=1.6)  # the band, then room for the entries
    step_ms = _step_ms(updates)
    bands: list[tuple[str, GlyphRenderer]] = []
    for state, label in OVERVIEW_LABELS.items():
        rows = [m for m in updates if (m["state"] or NO_STATE) == state]
        band = fig.quad(
            left=_drawable([ms(m["t"]) - step_ms for m in rows]),
            right=_drawable([ms(m["t"]) for m in rows]),
            bottom=0.0,
            top=1.0,
            fill_color=OVERVIEW_COLORS[state],
            line_color=None,
        )
        bands.append((label, band))
    entries = [e for e in episodes if e["signal"] == signal and e["event"] == "start"]
    for leader, color in ENTRY_COLORS.items():
        led = [e for e in entries if (e["leader"] or NO_LEADER) == leader]
        triangles = fig.scatter(
            x=_drawable([ms(e["onset_s"] if e["onset_s"] is not None else e["t"]) for e in led]),
            y=1.15,
            marker="triangle",
            size=10,
            color=color,
        )
        bands.append((_led_by(leader), triangles))
    _legend(fig, bands)
    fig.add_layout(
        Title(text=f"{SIGNAL_TITLES.get(signal, signal)}: synchrony state over the session"),
        "above",
    )
    for marker in annotations.markers:
        if not marker.is_undone:
            fig.add_layout(_vertical(ms(marker.t_lsl_s), MARKER_COLOR))
    for comment in annotations.comments:
        fig.add_layout(_vertical(ms(comment.t_start_lsl_s), COMMENT_COLOR))
    return fig


def _drawable(values: list[float]) -> list[float]:
    """``values``, or one NaN (drawn nowhere): BokehJS draws no legend swatch for a glyph
    without any row, and a legend entry must show its colour even when it has no data."""
    return values or [math.nan]


def _vertical(x_ms: float, color: str) -> Span:
    return Span(location=x_ms, dimension="height", line_color=color, line_width=2)


def _step_ms(updates: Sequence[Message]) -> float:
    if len(updates) < 2:
        return 1000.0
    return (float(updates[1]["t"]) - float(updates[0]["t"])) * 1000.0


def _led_by(leader: str) -> str:
    return "entry, no clear leader" if leader == NO_LEADER else f"entry led by {leader}"


def _head_html(summary: dict[str, Any]) -> str:
    session = summary["session"]
    facts = "".join(f"<li>{escape(line)}</li>" for line in summary_lines(summary))
    return (
        f"<h1>dyadsync session report: {escape(session['room'])}</h1>"
        f"<p class='muted'>File {escape(session['file'])} (SHA-256 "
        f"{escape(session['file_sha256'])}), analysed by {escape(str(session['dyadsync']))}. "
        "Times are session time (mm:ss since the session start). Positive lag: the client "
        "follows the therapist.</p>"
        f"<h2>Summary</h2><ul class='facts'>{facts}</ul>"
        "<h2>Whole-session overview</h2><p class='muted'>Each band is one synchrony update, "
        "coloured by its state; triangles mark episode entries, coloured by who led; "
        f"<span style='color:{MARKER_COLOR}'>markers</span> and "
        f"<span style='color:{COMMENT_COLOR}'>comments</span> are vertical lines.</p>"
    )


def _annotations_html(annotations: Annotations, *, started_t: float) -> str:
    def clock(t: float | None) -> str:
        if t is None:
            return ""
        seconds = t - started_t
        sign = "-" if seconds < 0 else ""
        whole = int(abs(seconds))
        return f"{sign}{whole // 60:02d}:{whole % 60:02d}"

    if annotations.session_id is None:
        return (
            "<h2>Markers and comments</h2><p class='muted'>This recording is not in the "
            "session store: no markers, ratings or comments.</p>"
        )
    markers = _table(
        ("time", "kind", "note"),
        [
            (clock(m.t_lsl_s), m.kind + (" (undone)" if m.is_undone else ""), m.note)
            for m in annotations.markers
        ],
    )
    comments = _table(
        ("from", "to", "author", "comment"),
        [
            (clock(c.t_start_lsl_s), clock(c.t_end_lsl_s), c.author_code or "", c.text)
            for c in annotations.comments
        ],
    )
    ratings = _table(
        ("client", "instrument", "total"),
        [(r.client_code, r.instrument, f"{r.total:g}") for r in annotations.ratings],
    )
    return (
        f"<h2>Markers</h2>{markers}<h2>Supervisor comments</h2>{comments}<h2>Ratings</h2>{ratings}"
    )


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    if not rows:
        return "<p class='muted'>None.</p>"
    head = "".join(f"<th>{escape(h)}</th>" for h in header)
    body = "".join(
        "<tr>" + "".join(f"<td>{escape(str(cell))}</td>" for cell in row) + "</tr>" for row in rows
    )
    return f"<table><tr>{head}</tr>{body}</table>"

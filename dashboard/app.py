"""The Bokeh document of one dashboard session: models, layout, and applying updates.

:class:`DashboardView` owns every Bokeh model and knows nothing about websockets;
:meth:`DashboardView.render` applies one :class:`~dashboard.state.Updates`. Models that
tests and tools look up have stable names:

- ``header``, ``stream_badges``, ``waiting`` (Divs);
- per derived signal ``S`` in ``hr``, ``scl``, ``phasic``: ``state_S`` (state tile Div),
  ``S_physio`` (plot of both people), ``S_physio_therapist`` / ``S_physio_client`` (line
  renderers, columns ``x``, ``y``), ``S_sync`` (plot), ``S_sync_z`` (line renderer of
  ``null_z``, the coupling strength against chance; its source also has the best-lag
  Fisher ``z``, which is not drawn), ``S_threshold`` (the coupling threshold line),
  ``S_episodes`` (shading renderer), ``S_sync_note`` (the Label that says, over the plot
  area, why there is no line yet: the tile's explanation), ``section_S``.

Time runs along a shared x axis in session time (milliseconds since the server's session
start, ticks placed like a datetime axis and labelled mm:ss).
"""

from __future__ import annotations

import math
from typing import Any

from bokeh.document import Document
from bokeh.events import ConnectionLost, DocumentReady
from bokeh.layouts import column, row
from bokeh.model import Model
from bokeh.models import (
    ColumnDataSource,
    CustomJS,
    CustomJSTickFormatter,
    DataRange1d,
    DatetimeTicker,
    InlineStyleSheet,
    LayoutDOM,
    Node,
)
from bokeh.models.annotations import Label, Legend, Span
from bokeh.models.renderers import GlyphRenderer
from bokeh.models.widgets.markups import Div
from bokeh.plotting import figure
from bokeh.transform import factor_cmap

from .messages import DEFAULT_Z_ENTER, DERIVED_SIGNALS, ROLES
from .state import Updates
from .views import (
    CLIENT_COLOR,
    CONTACT_LOST_HTML,
    CSS,
    SESSION_TIME_JS,
    SIGNAL_TITLES,
    SIGNAL_UNITS,
    STATE_COLORS,
    STRENGTH_COLOR,
    THERAPIST_COLOR,
    THRESHOLD_COLOR,
    WAITING_HTML,
    render_badges,
    render_contact_lost,
    render_header,
    render_tile,
)

# The synchrony axis always spans at least [SYNC_FLOOR_Z, threshold + SYNC_HEADROOM_Z], so
# the threshold stays in view and small wiggles of z are not blown up by autoscaling.
SYNC_FLOOR_Z = -1.0
SYNC_HEADROOM_Z = 1.0  # room for the threshold's label above its line

TIME_AXIS_LABEL = "session time (mm:ss)"
# Shading legend labels, in the words of the state tiles.
EPISODE_LABELS = {"coupled": "coupled", "anti_phase": "anti-phase"}
EPISODE_ALPHA = 0.14

ROLE_COLORS = {"therapist": THERAPIST_COLOR, "client": CLIENT_COLOR}
TILE_WIDTH_PX = 290
PHYSIO_HEIGHT_PX = 190
SYNC_HEIGHT_PX = 170

PHYSIO_COLUMNS = ("x", "y")
SYNC_COLUMNS = ("x", "z", "null_z", "floor", "ceiling")
EPISODE_COLUMNS = ("left", "right", "state")


def _empty(columns: tuple[str, ...]) -> dict[str, list[Any]]:
    # Fresh lists every time: Bokeh's stream() extends column lists in place, so two
    # sources must never share one.
    return {name: [] for name in columns}


def _styled_figure(*, name: str, height: int, x_range: DataRange1d, y_label: str) -> figure:
    fig = figure(
        name=name,
        height=height,
        sizing_mode="stretch_width",
        x_range=x_range,
        tools="",
        toolbar_location=None,
        background_fill_color="#ffffff",
        border_fill_color="#ffffff",
        outline_line_color=None,
        min_border_left=60,
    )
    # Ticks at round seconds/minutes (a datetime ticker works on any millisecond count),
    # labelled as session time; a datetime formatter would wrap negative times to 59:59.
    fig.xaxis.ticker = DatetimeTicker(desired_num_ticks=8)
    fig.xaxis.formatter = CustomJSTickFormatter(code=SESSION_TIME_JS)
    fig.yaxis.axis_label = y_label
    for axis in (*fig.xaxis, *fig.yaxis):
        axis.axis_line_color = "#bbbbbb"
        axis.major_tick_line_color = "#bbbbbb"
        axis.minor_tick_line_color = None
        axis.major_label_text_color = "#555555"
        axis.axis_label_text_color = "#555555"
        axis.axis_label_text_font_style = "normal"
        axis.axis_label_text_font_size = "12px"
    fig.xgrid.grid_line_color = None
    fig.ygrid.grid_line_color = "#eeeeee"
    return fig


def _episode_swatches(fig: figure) -> list[tuple[str, GlyphRenderer]]:
    """Legend entries for the shading colours: quads that draw nothing in the plot (one
    NaN row: BokehJS draws no legend swatch for a glyph without any row)."""
    nowhere = {"left": [math.nan], "right": [math.nan], "bottom": [math.nan], "top": [math.nan]}
    return [
        (
            f"{label} episode",
            fig.quad(
                source=ColumnDataSource(data=dict(nowhere)),
                left="left",
                right="right",
                bottom="bottom",
                top="top",
                fill_color=STATE_COLORS[state],
                fill_alpha=EPISODE_ALPHA * 2,  # a lone swatch needs more colour to read
                line_color=None,
            ),
        )
        for state, label in EPISODE_LABELS.items()
    ]


def _legend(fig: figure, items: list[tuple[str, GlyphRenderer]]) -> None:
    legend = Legend(
        items=[(label, [renderer]) for label, renderer in items],
        orientation="horizontal",
        location="top_left",
        label_text_font_size="12px",
        label_text_color="#444444",
        background_fill_alpha=0.7,
        border_line_color=None,
        spacing=14,
        margin=4,
    )
    fig.add_layout(legend, "above")


def _text_div(
    *, name: str, stylesheet: InlineStyleSheet, text: str = "", width: int | None = None
) -> Div:
    """A Div of views.py HTML that the browser can switch to its lost-contact words
    (TEXT_CLASS); full width unless ``width`` (px) is given."""
    if width is None:
        return Div(
            name=name,
            text=text,
            sizing_mode="stretch_width",
            stylesheets=[stylesheet],
            css_classes=[TEXT_CLASS],
        )
    return Div(
        name=name, text=text, width=width, stylesheets=[stylesheet], css_classes=[TEXT_CLASS]
    )


class _SignalSection:
    """Tile, physio plot and synchrony plot of one derived signal."""

    __slots__ = (
        "episodes",
        "layout",
        "note",
        "physio",
        "sync",
        "threshold",
        "threshold_label",
        "tile",
    )

    def __init__(self, signal: str, *, x_range: DataRange1d, stylesheet: InlineStyleSheet):
        self.tile = _text_div(name=f"state_{signal}", stylesheet=stylesheet, width=TILE_WIDTH_PX)
        self.physio = {role: ColumnDataSource(data=_empty(PHYSIO_COLUMNS)) for role in ROLES}
        self.sync = ColumnDataSource(data=_empty(SYNC_COLUMNS))
        self.episodes = ColumnDataSource(data=_empty(EPISODE_COLUMNS))

        title = SIGNAL_TITLES[signal]
        physio_fig = _styled_figure(
            name=f"{signal}_physio",
            height=PHYSIO_HEIGHT_PX,
            x_range=x_range,
            y_label=f"{title} ({SIGNAL_UNITS[signal]})",
        )
        sync_fig = _styled_figure(
            name=f"{signal}_sync",
            height=SYNC_HEIGHT_PX,
            x_range=x_range,
            y_label="vs chance (z)",
        )
        sync_fig.xaxis.axis_label = TIME_AXIS_LABEL
        for fig in (physio_fig, sync_fig):
            fig.quad(
                name=f"{signal}_episodes" if fig is sync_fig else None,
                source=self.episodes,
                left="left",
                right="right",
                bottom=-1e6,
                top=1e6,
                fill_alpha=EPISODE_ALPHA,
                line_color=None,
                fill_color=factor_cmap(
                    "state", palette=list(STATE_COLORS.values()), factors=list(STATE_COLORS)
                ),
            )
        physio_lines = [
            physio_fig.line(
                "x",
                "y",
                source=self.physio[role],
                name=f"{signal}_physio_{role}",
                line_color=ROLE_COLORS[role],
                line_width=2,
            )
            for role in ROLES
        ]
        # Autoscale on the data only: the shading spans the whole height by construction.
        physio_fig.y_range = DataRange1d(renderers=list[Model](physio_lines), range_padding=0.15)
        _legend(
            physio_fig,
            [(r.capitalize(), line) for r, line in zip(ROLES, physio_lines, strict=True)],
        )

        # One line only: the coupling strength against chance, the quantity the server's
        # coupling threshold applies to (the raw Fisher z would need its own scale).
        strength = sync_fig.line(
            "x",
            "null_z",
            source=self.sync,
            name=f"{signal}_sync_z",
            line_color=STRENGTH_COLOR,
            line_width=2,
        )
        sync_fig.add_layout(
            Span(location=0.0, dimension="width", line_color="#cccccc", line_width=1)
        )
        self.threshold = Span(
            name=f"{signal}_threshold",
            location=DEFAULT_Z_ENTER,
            dimension="width",
            line_color=THRESHOLD_COLOR,
            line_dash="dashed",
            line_width=1,
        )
        self.threshold_label = Label(
            x=6,
            x_units="screen",
            y=DEFAULT_Z_ENTER,
            y_offset=3,
            text="coupling threshold",
            text_font_size="11px",
            text_color=THRESHOLD_COLOR,
            background_fill_color="#ffffff",
            background_fill_alpha=0.8,
        )
        sync_fig.add_layout(self.threshold)
        sync_fig.add_layout(self.threshold_label)
        # Centred on the plot frame (not on data coordinates), so it shows even before the
        # first row gives the axes a range: a plot with nothing to draw says why.
        frame_center = Node(target="frame", symbol="center")
        self.note = Label(
            name=f"{signal}_sync_note",
            x=frame_center,
            y=frame_center,
            text="",
            visible=False,
            text_align="center",
            text_baseline="middle",
            text_font_size="14px",
            text_font_style="italic",
            text_color="#666666",
            background_fill_color="#ffffff",
            background_fill_alpha=0.85,
        )
        sync_fig.add_layout(self.note)
        # Invisible band that only pins the autoscaled range (see SYNC_FLOOR_Z).
        pin = sync_fig.varea(x="x", y1="floor", y2="ceiling", source=self.sync, fill_alpha=0.0)
        sync_fig.y_range = DataRange1d(renderers=list[Model]([strength, pin]), range_padding=0.1)
        _legend(
            sync_fig,
            [("coupling strength vs chance", strength), *_episode_swatches(sync_fig)],
        )

        self.layout = row(
            self.tile,
            column(physio_fig, sync_fig, sizing_mode="stretch_width"),
            name=f"section_{signal}",
            sizing_mode="stretch_width",
            visible=False,
        )

    def set_note(self, text: str) -> None:
        if self.note.text != text:
            self.note.text = text
            self.note.visible = bool(text)

    def set_threshold(self, z: float) -> None:
        if self.threshold.location != z:
            self.threshold.location = z
            self.threshold_label.y = z

    def clear(self) -> None:
        for source in self.physio.values():
            source.data = _empty(PHYSIO_COLUMNS)
        self.sync.data = _empty(SYNC_COLUMNS)
        self.episodes.data = _empty(EPISODE_COLUMNS)


# The browser declares contact with the dashboard server lost after this long without a
# heartbeat (ticks are every 250 ms, so 3 s is a dozen missed ticks, not jitter).
CONTACT_LOST_MS = 3000

# The "lost" class on every text Div switches it to the words it carries for this case
# (views.py ``lost-only``): the banner, grey pill "No contact", grey "unknown" badges, "No
# estimate" tiles. Set from the browser on the DOM elements themselves (found by
# TEXT_CLASS through Bokeh's shadow roots), not on models: a model change is sent to the
# server, and Bokeh throws when that happens while its reconnect socket is still opening.
TEXT_CLASS = "dyadsync-text"
_GREY_JS = """
const watch = (window.__dyadsync_watchdog ??= {last: Date.now()});
watch.grey ??= (lost) => {
  watch.lost = lost;
  const visit = (root) => {
    for (const el of root.querySelectorAll("*")) {
      if (el.classList.contains(text_class)) el.classList.toggle("lost", lost);
      if (el.shadowRoot !== null) visit(el.shadowRoot);
    }
  };
  visit(document);
};
"""

# Runs in the browser once the document is ready. Two ways to learn the server is gone:
# Bokeh's connection_lost event (the websocket closed: server died, network dropped) greys
# at once; the heartbeat watchdog also catches a server that stops pushing without closing
# (hung process, half-open connection). Beats resuming (Bokeh reconnected) un-grey it.
_WATCHDOG_JS = (
    _GREY_JS
    + """
if (watch.timer === undefined) {
  watch.timer = setInterval(() => {
    const lost = Date.now() - watch.last > lost_ms;
    if (lost !== Boolean(watch.lost)) watch.grey(lost);
  }, 500);
}
"""
)
_CONNECTION_LOST_JS = _GREY_JS + "if (!watch.lost) watch.grey(true);"
_BEAT_JS = "(window.__dyadsync_watchdog ??= {}).last = Date.now();"


class DashboardView:
    """All Bokeh models of one dashboard session; :meth:`attach` puts them in a document."""

    __slots__ = ("badges", "banner", "beats", "header", "heartbeat", "root", "sections", "waiting")

    def __init__(self) -> None:
        stylesheet = InlineStyleSheet(css=CSS)
        self.header = _text_div(name="header", stylesheet=stylesheet)
        # Always a visible model: its text only shows under the browser's "lost" class.
        self.banner = _text_div(name="contact_lost", stylesheet=stylesheet, text=CONTACT_LOST_HTML)
        self.heartbeat = Div(name="heartbeat", text="0", visible=False)
        self.beats = 0
        self.badges = _text_div(name="stream_badges", stylesheet=stylesheet)
        self.waiting = Div(name="waiting", text=WAITING_HTML, stylesheets=[stylesheet])
        x_range = DataRange1d(range_padding=0.02)
        self.sections = {
            signal: _SignalSection(signal, x_range=x_range, stylesheet=stylesheet)
            for signal in DERIVED_SIGNALS
        }
        children: list[LayoutDOM] = [
            self.header,
            self.banner,
            self.badges,
            self.waiting,
            self.heartbeat,
        ]
        children.extend(section.layout for section in self.sections.values())
        self.root = column(children, sizing_mode="stretch_width", name="dashboard")

    def attach(self, doc: Document) -> None:
        """Add the layout to ``doc`` with the browser-side contact watchdog."""
        doc.add_root(self.root)
        self.heartbeat.js_on_change("text", CustomJS(code=_BEAT_JS))
        # Bokeh's own reconnect toast is fixed over the top of the page, where it hid the
        # lag convention; the in-flow banner above the badges says the same instead.
        doc.config.notify_connection_status = False
        args = {"text_class": TEXT_CLASS}
        doc.js_on_event(
            DocumentReady,
            CustomJS(args={**args, "lost_ms": CONTACT_LOST_MS}, code=_WATCHDOG_JS),
        )
        doc.js_on_event(ConnectionLost, CustomJS(args=args, code=_CONNECTION_LOST_JS))

    def render(self, updates: Updates) -> None:
        """Apply one tick's updates; text models are only touched when they changed."""
        self.beats += 1
        self.heartbeat.text = str(self.beats)
        if updates.reset:
            for section in self.sections.values():
                section.clear()
        self.waiting.visible = not updates.signals
        replay = updates.header.is_replay
        # The lost-contact words travel ahead of the loss: once it happens the browser can
        # no longer ask for them.
        _set_text(self.banner, render_contact_lost(replay=replay))
        ceiling_z = max(updates.coupling_threshold_z + SYNC_HEADROOM_Z, SYNC_FLOOR_Z + 1.0)
        for signal, section in self.sections.items():
            section.layout.visible = signal in updates.signals
            section.set_threshold(updates.coupling_threshold_z)
            section.set_note(updates.sync_notes[signal])
            _set_text(section.tile, render_tile(updates.tiles[signal], replay=replay))
        for (signal, role), rows in updates.physio.items():
            self.sections[signal].physio[role].stream(dict(rows), rollover=updates.physio_rollover)
        for signal, rows in updates.sync.items():
            n_rows = len(rows["x"])
            columns: dict[str, Any] = {
                **rows,
                "floor": [SYNC_FLOOR_Z] * n_rows,
                "ceiling": [ceiling_z] * n_rows,
            }
            self.sections[signal].sync.stream(columns, rollover=updates.sync_rollover)
        for signal, table in updates.episodes.items():
            self.sections[signal].episodes.data = table
        _set_text(self.header, render_header(updates.header))
        _set_text(self.badges, render_badges(updates.badges, recording=updates.recording))


def _set_text(div: Div, html: str) -> None:
    # Avoid a websocket patch per tick for text that did not change.
    if div.text != html:
        div.text = html

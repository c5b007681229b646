"""dashboard.views and dashboard.app: HTML wording/escaping and Bokeh models fed by updates
(no browser)."""

from __future__ import annotations

import json
import math
import shutil
import subprocess

import pytest
from bokeh.document import Document
from bokeh.models import ColumnDataSource, CustomJS, Node
from bokeh.models.annotations import Label, Legend, Span
from bokeh.models.glyphs import Line
from bokeh.models.renderers import GlyphRenderer
from bokeh.models.widgets.markups import Div
from bokeh.plotting import figure

from dashboard.app import DashboardView
from dashboard.state import (
    BadgeView,
    DashboardState,
    HeaderView,
    RecordingKind,
    RecordingView,
    TileView,
)
from dashboard.views import (
    CSS,
    SESSION_TIME_JS,
    render_badges,
    render_contact_lost,
    render_header,
    render_tile,
)
from tests.unit.dashboard_helpers import connected, hello, physio, recording, shown_text, sync


def test_server_text_is_escaped() -> None:
    html = render_tile(
        TileView(
            signal="hr",
            kind="none",
            headline="No estimate",
            detail="<script>alert(1)</script>",
            figures="",
        )
    )
    assert "<script>" not in html and "&lt;script&gt;" in html
    assert 'class="tile tile-none live-only"' in html
    badges = render_badges(
        (
            BadgeView(
                stream="client-eda",
                label="Client EDA",
                level="warn",
                kind="stalled",
                detail='"><b>x</b>',
            ),
        )
    )
    assert "<b>x</b>" not in badges
    header = render_header(
        HeaderView(
            session="<i>room</i>",
            mode="live",
            connection="connected",
            connection_detail="",
            lag_convention="positive lag",
            ignored_messages=0,
        )
    )
    assert "<i>room</i>" not in header


def test_header_says_connection_state_and_lag_convention() -> None:
    header = render_header(
        HeaderView(
            session="room-1",
            mode="replay",
            connection="disconnected",
            connection_detail="server not reachable; retrying in 3 s",
            lag_convention="positive lag = client follows therapist",
            ignored_messages=2,
        )
    )
    for text in (
        "room-1",
        "replay",
        "Disconnected",
        "retrying in 3 s",
        "positive lag = client follows therapist",
        "2 messages ignored",
    ):
        assert text in header
    before_hello = render_header(
        HeaderView(
            session=None,
            mode=None,
            connection="connecting",
            connection_detail="",
            lag_convention="x",
            ignored_messages=0,
        )
    )
    assert "No session yet" in before_hello and "Connecting" in before_hello
    assert "ignored" not in before_hello


def test_badge_shows_problem_detail_inline_only_when_not_ok() -> None:
    ok = BadgeView(
        stream="therapist-ecg", label="Therapist ECG", level="ok", kind="connected", detail="fine"
    )
    bad = BadgeView(
        stream="client-eda", label="Client EDA", level="bad", kind="missing", detail="not found"
    )
    html = render_badges((ok, bad))
    assert shown_text(html) == "Therapist ECG: connected Client EDA: missing — not found"


def test_every_text_part_carries_its_lost_contact_words() -> None:
    # Once the browser loses its server the watchdog adds the "lost" class: the pill,
    # every badge and every tile must then read grey/unknown, whatever they said live.
    header = render_header(
        HeaderView(
            session="room-1",
            mode="live",
            connection="connected",
            connection_detail="",
            lag_convention="positive lag = client follows therapist",
            ignored_messages=0,
        )
    )
    assert "Connected" in shown_text(header)
    lost_header = shown_text(header, lost=True)
    assert "No contact" in lost_header and "Connected" not in lost_header
    assert "positive lag" in lost_header  # the convention stays legible
    assert 'class="pill conn-lost lost-only"' in header
    ok = BadgeView(stream="client-ecg", label="Client ECG", level="ok", kind="connected", detail="")
    badges = render_badges((ok, ok))
    assert shown_text(badges, lost=True) == "Client ECG: unknown Client ECG: unknown"
    tile = render_tile(
        TileView(signal="hr", kind="coupled", headline="Coupled", detail="x", figures="r 0.5")
    )
    assert shown_text(tile) == "Heart rate synchrony Coupled x r 0.5"
    assert shown_text(tile, lost=True) == (
        "Heart rate synchrony No estimate Lost contact with the dashboard server"
    )


@pytest.mark.parametrize("connection", ["connecting", "disconnected", "silent"])
def test_pill_is_grey_whenever_not_connected(connection: str) -> None:
    header = render_header(
        HeaderView(
            session="room-1",
            mode="live",
            connection=connection,  # type: ignore[arg-type]
            connection_detail="",
            lag_convention="x",
            ignored_messages=0,
        )
    )
    assert f"pill conn-{connection} live-only" in header
    grey = next(rule for rule in CSS.split("}") if f".conn-{connection}" in rule)
    assert "color: #666" in grey and "#009E73" not in grey


HELLO = hello(signals=("hr",))


def _view_after(*messages: str) -> tuple[DashboardView, Document]:
    view = DashboardView()
    doc = Document()
    view.attach(doc)
    view.render(connected(*messages).take_updates(now_s=0.0))
    return view, doc


def _source(doc: Document, name: str) -> ColumnDataSource:
    renderer = doc.get_model_by_name(name)
    assert renderer is not None, name
    source = renderer.data_source  # type: ignore[attr-defined]
    assert isinstance(source, ColumnDataSource)
    return source


def test_named_models_exist_and_receive_rows() -> None:
    view, doc = _view_after(
        HELLO,
        physio([1000.25, 1000.5], [70.0, None]),
        physio([1000.25], [80.0], role="client"),
        sync(1001.0, best_lag_s=-1.0, leader="client", null_z=2.5),
    )
    for name in (
        "header",
        "stream_badges",
        "state_hr",
        "hr_physio",
        "hr_sync",
        "hr_episodes",
        "section_hr",
        "state_scl",
        "hr_threshold",
    ):
        assert doc.get_model_by_name(name) is not None, name
    therapist = _source(doc, "hr_physio_therapist").data
    assert list(therapist["x"]) == [250.0, 500.0]
    assert therapist["y"][0] == 70.0 and math.isnan(therapist["y"][1])
    assert list(_source(doc, "hr_physio_client").data["y"]) == [80.0]
    sync_columns = _source(doc, "hr_sync_z").data
    assert list(sync_columns["null_z"]) == [2.5]
    assert list(sync_columns["floor"]) == [-1.0]  # pins the axis around the threshold
    tile = doc.get_model_by_name("state_hr")
    assert isinstance(tile, Div)
    assert "Client leads by 1.0 s" in tile.text
    assert view.sections["hr"].layout.visible
    assert not view.sections["scl"].layout.visible
    assert not view.waiting.visible


def test_sources_are_independent_and_reset_clears_them() -> None:
    # Bokeh's stream() extends column lists in place: sources must not share lists.
    view, doc = _view_after(HELLO, physio([1000.25], [70.0]))
    assert list(_source(doc, "hr_physio_client").data["y"]) == []
    assert list(_source(doc, "scl_physio_therapist").data["y"]) == []
    view.render(connected(hello("room-2", signals=("hr",))).take_updates(now_s=0.0))
    assert list(_source(doc, "hr_physio_therapist").data["y"]) == []


def test_page_waits_for_hello() -> None:
    view, _ = _view_after()
    assert view.waiting.visible
    assert not any(section.layout.visible for section in view.sections.values())


def test_every_tick_beats_the_browser_watchdog() -> None:
    view, doc = _view_after(HELLO)
    state = DashboardState()
    beats = [view.heartbeat.text]
    for _ in range(2):
        view.render(state.take_updates(now_s=0.0))
        beats.append(view.heartbeat.text)
    assert len(set(beats)) == 3  # a change per tick, even when nothing else changed
    # Only the browser shows the banner (the "lost" class), when the beats stop: the server
    # never sends anything that could show it.
    assert shown_text(view.banner.text) == ""
    assert "Lost contact" in shown_text(view.banner.text, lost=True)
    assert "dyadsync-text" in view.banner.css_classes
    assert len(doc.callbacks.js_event_callbacks["document_ready"]) == 1


def _figure(doc: Document, name: str) -> figure:
    fig = doc.get_model_by_name(name)
    assert isinstance(fig, figure), name
    return fig


def test_synchrony_plot_shows_one_line_against_the_servers_threshold() -> None:
    view, doc = _view_after(hello(signals=("hr",), z_enter=2.5), sync(1001.0, null_z=2.6))
    fig = _figure(doc, "hr_sync")
    lines = [r for r in fig.renderers if isinstance(r, GlyphRenderer) and isinstance(r.glyph, Line)]
    assert [r.name for r in lines] == ["hr_sync_z"]
    assert isinstance(lines[0].glyph, Line) and lines[0].glyph.y == "null_z"
    threshold = doc.get_model_by_name("hr_threshold")
    assert isinstance(threshold, Span) and threshold.location == 2.5
    labels = [a for a in fig.center if isinstance(a, Label) and a.name != "hr_sync_note"]
    assert [(a.text, a.y) for a in labels] == [("coupling threshold", 2.5)]
    assert list(_source(doc, "hr_sync_z").data["ceiling"]) == [3.5]  # threshold stays in view
    legend = next(a for a in fig.above if isinstance(a, Legend))
    assert [item.label.value for item in legend.items] == [  # type: ignore[union-attr]
        "coupling strength vs chance",
        "coupled episode",
        "anti-phase episode",
    ]
    assert fig.xaxis[0].axis_label == "session time (mm:ss)"
    # A server without thresholds: the engine's default.
    view.render(connected(hello("room-2", signals=("hr",))).take_updates(now_s=0.0))
    assert threshold.location == 3.0


def test_tile_note_is_shown_under_the_headline() -> None:
    html = render_tile(
        TileView(
            signal="hr",
            kind="decoupled",
            headline="Decoupled",
            note="Coupling emerging…",
            detail="No clear leader",
            figures="",
        )
    )
    assert html.index("Decoupled") < html.index("Coupling emerging…") < html.index("No clear")
    assert "tile-note" not in render_tile(
        TileView(signal="hr", kind="none", headline="No estimate", detail="Gap", figures="")
    )


@pytest.mark.skipif(shutil.which("node") is None, reason="needs node to run the JS formatter")
def test_time_axis_labels_are_session_time_with_a_sign() -> None:
    ticks = [0, 1000, 59000, 80000, 600000, 3600000, 3725000, -1000, -80000, 500, -30, 1500]
    script = (
        f"const f = (tick) => {{ {SESSION_TIME_JS} }};"
        f"console.log(JSON.stringify({json.dumps(ticks)}.map(f)));"
    )
    out = subprocess.run(["node", "-e", script], check=True, capture_output=True, text=True)
    assert json.loads(out.stdout) == [
        "00:00",
        "00:01",
        "00:59",
        "01:20",
        "10:00",
        "1:00:00",
        "1:02:05",
        "-00:01",
        "-01:20",
        "00:00.5",
        "00:00",
        "00:01.5",
    ]


def test_synchrony_plot_says_why_it_has_no_line() -> None:
    waiting = sync(1001.0, estimate=False, reason="warming up", state=None)
    view, doc = _view_after(HELLO, waiting)
    note = doc.get_model_by_name("hr_sync_note")
    assert isinstance(note, Label)
    assert (note.visible, note.text) == (True, "Collecting the first 30 s window (about 34 s)")
    # Placed on the frame's centre, not in data units: shown even before the axes have a range.
    assert isinstance(note.x, Node) and note.x.target == "frame"
    state = connected(HELLO, waiting, sync(1002.0))
    state.take_updates(now_s=0.0)
    view.render(state.take_updates(now_s=0.0))
    assert (note.visible, note.text) == (False, "")


def test_browser_greys_on_connection_lost_without_bokehs_toast() -> None:
    _, doc = _view_after(HELLO)
    # Bokeh's fixed toast covered the header's lag convention; the in-flow banner replaces it.
    assert doc.config.notify_connection_status is False
    callbacks = doc.callbacks.js_event_callbacks
    (on_lost,) = callbacks["connection_lost"]
    assert isinstance(on_lost, CustomJS) and "watch.grey(true)" in on_lost.code
    # Every text part can be switched by the browser: header, badges, each tile.
    for name in ("header", "stream_badges", "state_hr", "state_scl", "state_phasic"):
        div = doc.get_model_by_name(name)
        assert isinstance(div, Div) and "dyadsync-text" in div.css_classes, name


def _header(*, mode: str | None) -> str:
    return render_header(
        HeaderView(
            session="room-1",
            mode=mode,
            connection="connected",
            connection_detail="",
            lag_convention="x",
            ignored_messages=0,
        )
    )


def test_a_replay_is_unmistakable_in_the_header() -> None:
    replay = _header(mode="replay")
    assert "Session room-1 · Replay of a recorded session" in shown_text(replay)
    assert 'class="mode-replay"' in replay
    # Still stated once the browser lost its server: the frozen page is of a replay.
    assert "Replay of a recorded session" in shown_text(replay, lost=True)
    live = _header(mode="live")
    assert "Session room-1 · live" in shown_text(live)
    assert "Replay" not in live and "mode-replay" not in live
    # A mode this dashboard does not know is shown as sent, escaped.
    assert "Session room-1 · <b>x</b>" in shown_text(_header(mode="<b>x</b>"))


def test_replay_lost_contact_words_say_the_replay_ended() -> None:
    tile = TileView(signal="hr", kind="coupled", headline="Coupled", detail="x", figures="")
    assert shown_text(render_tile(tile, replay=True), lost=True) == (
        "Heart rate synchrony No estimate Replay ended or server stopped"
    )
    assert shown_text(render_tile(tile, replay=True)) == shown_text(render_tile(tile))
    banner = shown_text(render_contact_lost(replay=True), lost=True)
    assert banner.startswith("Replay ended or server stopped:"), banner
    assert "Lost contact" not in banner
    assert shown_text(render_contact_lost(replay=False), lost=True).startswith("Lost contact")
    assert shown_text(render_contact_lost(replay=True)) == ""  # only once the server is gone


def _recording_chip(kind: RecordingKind, detail: str = "") -> str:
    ok = BadgeView(
        stream="therapist-ecg", label="Therapist ECG", level="ok", kind="connected", detail=""
    )
    return render_badges(
        (ok,), recording=RecordingView(kind=kind, file="room-1_x.xdf", detail=detail)
    )


def test_recording_chip_is_neutral_and_not_claimed_once_contact_is_lost() -> None:
    html = _recording_chip("on")
    assert shown_text(html) == "Therapist ECG: connected ● Recording"
    assert shown_text(html, lost=True) == "Therapist ECG: unknown Recording: unknown"
    assert 'title="Recording to room-1_x.xdf"' in html
    assert "level-" not in html.split("Therapist ECG")[1]  # not a status colour
    assert shown_text(_recording_chip("unknown")) == "Therapist ECG: connected Recording: unknown"
    assert "Recording" not in render_badges(())  # nothing recorded: no chip
    waiting = render_badges((), recording=RecordingView(kind="on", file="f.xdf", detail=""))
    assert shown_text(waiting) == "Sensor streams: waiting ● Recording"


@pytest.mark.parametrize(
    ("kind", "words"),
    [
        ("failed", "Recording stopped — disk full or failing"),
        ("lagging", "Recording incomplete — the disk cannot keep up, some data is not saved"),
    ],
)
def test_recording_problem_badge_in_the_warning_colour(kind: RecordingKind, words: str) -> None:
    html = _recording_chip(kind, detail="cannot write <room-1.xdf> (No space left on device)")
    expected = f"{words} (cannot write <room-1.xdf> (No space left on device))"
    assert shown_text(html) == f"Therapist ECG: connected {expected}"
    # Still true when the server is gone: the file is incomplete either way.
    assert shown_text(html, lost=True) == f"Therapist ECG: unknown {expected}"
    assert "<room-1.xdf>" not in html  # the server's words are escaped
    assert 'class="rec level-warn"' in html
    warn = next(rule for rule in CSS.split("}") if rule.strip().startswith(".level-warn {"))
    assert "#E69F00" in warn  # the Okabe-Ito orange of the other warnings
    bare = shown_text(_recording_chip(kind))
    assert bare == f"Therapist ECG: connected {words}"  # no empty "()"


def test_page_shows_recording_and_replay_end_to_end() -> None:
    view, _ = _view_after(
        hello(signals=("hr",), mode="replay", recording_file="room-1_x.xdf"),
        recording("failed", detail="disk full"),
    )
    assert shown_text(view.badges.text).endswith(
        "Recording stopped — disk full or failing (disk full)"
    )
    assert "Replay of a recorded session" in shown_text(view.header.text)
    assert shown_text(view.banner.text, lost=True).startswith("Replay ended or server stopped")
    tile = view.sections["hr"].tile.text
    assert "Replay ended or server stopped" in shown_text(tile, lost=True)
    live, _ = _view_after(hello(signals=("hr",), recording_file="room-1_x.xdf"))
    assert shown_text(live.badges.text).endswith("● Recording")
    assert shown_text(live.banner.text, lost=True).startswith("Lost contact")

"""dashboard.views and dashboard.app: HTML wording/escaping and Bokeh models fed by updates
(no browser)."""

from __future__ import annotations

import math

from bokeh.document import Document
from bokeh.models import ColumnDataSource
from bokeh.models.widgets.markups import Div

from dashboard.app import DashboardView
from dashboard.state import BadgeView, DashboardState, HeaderView, TileView
from dashboard.views import render_badges, render_header, render_tile
from tests.unit.dashboard_helpers import connected, hello, physio, sync


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
    assert 'class="tile tile-none"' in html
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
    assert "Therapist ECG: connected</span>" in html
    assert "Client EDA: missing — not found" in html


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
        "hr_sync_strength",
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
    assert not view.banner.visible  # only the browser shows it, when the beats stop
    assert len(doc.callbacks.js_event_callbacks["document_ready"]) == 1

"""dashboard.state: messages become bounded column updates and honest tile/badge views."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dashboard.state import DashboardState, Updates
from dsp.exceptions import ConfigError
from tests.unit.dashboard_helpers import T0, connected, hello, physio, recording, sync


def no_estimate(t: float, reason: str = "warming up") -> str:
    return sync(
        t,
        estimate=False,
        reason=reason,
        r=None,
        z=None,
        best_lag_s=None,
        leader=None,
        null_z=None,
        p=None,
        concordance=None,
        state=None,
    )


def episode(t: float, event: str, state: str = "coupled") -> str:
    return json.dumps(
        {
            "v": 1,
            "type": "episode",
            "session": "room-1",
            "t": t,
            "signal": "hr",
            "event": event,
            "state": state,
            "leader": "therapist",
        }
    )


def status(
    kind: str, *, role: str = "client", signal: str = "eda", detail: str = "", t: float = T0
) -> str:
    return json.dumps(
        {
            "v": 1,
            "type": "status",
            "session": "room-1",
            "t": t,
            "role": role,
            "signal": signal,
            "kind": kind,
            "detail": detail,
        }
    )


def same(a: list[float], b: list[float]) -> bool:
    return len(a) == len(b) and all(
        (math.isnan(x) and math.isnan(y)) or x == y for x, y in zip(a, b, strict=True)
    )


def test_physio_rows_are_elapsed_ms_and_invalid_samples_are_nan() -> None:
    state = connected(hello(), physio([1000.25, 1000.5, 1000.75], [70.0, None, 72.0]))
    updates = state.take_updates(now_s=0.0)
    rows = updates.physio[("hr", "therapist")]
    assert rows["x"] == [250.0, 500.0, 750.0]
    assert same(rows["y"], [70.0, math.nan, 72.0])
    assert ("hr", "client") not in updates.physio
    # Taken rows are not sent twice.
    assert state.take_updates(now_s=0.0).physio == {}


def test_hole_in_the_grid_and_outage_insert_gaps() -> None:
    state = connected(
        hello(), physio([1000.25, 1000.5], [70.0, 71.0]), physio([1001.5, 1001.75], [72.0, 73.0])
    )  # 1000.75..1001.25 missing
    rows = state.take_updates(now_s=0.0).physio[("hr", "therapist")]
    assert same(rows["y"], [70.0, 71.0, math.nan, 72.0, 73.0])
    for attempt in range(3):  # one gap however many reconnect attempts fail
        state.on_disconnected(reason="connection lost", now_s=1.0 + attempt, retry_in_s=0.5)
    state.on_connected()
    state.feed(hello(t=1010.0), now_s=4.0)  # an older server: no backlog of the outage
    state.feed(physio([1010.0], [74.0]), now_s=4.0)
    updates = state.take_updates(now_s=4.0)
    assert not updates.reset  # same session: history kept
    assert same(updates.physio[("hr", "therapist")]["y"], [math.nan, 74.0])
    assert updates.physio[("hr", "therapist")]["x"] == [1750.0, 10000.0]


def test_repeated_or_backward_samples_are_dropped_and_counted() -> None:
    state = connected(
        hello(), physio([1000.25, 1000.5], [70.0, 71.0]), physio([1000.5, 1000.75], [99.0, 72.0])
    )
    rows = state.take_updates(now_s=0.0).physio[("hr", "therapist")]
    assert rows["y"] == [70.0, 71.0, 72.0]
    assert state.ignored == {"out_of_order_samples": 1}


def test_pending_rows_are_bounded_by_the_history() -> None:
    state = DashboardState(history_s=10.0)
    state.on_connected()
    state.feed(hello(), now_s=0.0)
    for k in range(1, 401):  # 100 s at 4 Hz, never taken
        state.feed(physio([T0 + k / 4], [60.0 + k]), now_s=0.0)
    updates = state.take_updates(now_s=0.0)
    rows = updates.physio[("hr", "therapist")]
    assert len(rows["y"]) == updates.physio_rollover == 44  # 10 s * 4 Hz * 1.1 margin
    assert rows["y"][-1] == 460.0
    assert updates.sync_rollover == 11


def test_malformed_and_foreign_messages_are_counted_not_applied() -> None:
    state = connected(
        physio([1000.25], [70.0]),  # before any hello: no frame of reference
        hello(),
        "garbage",
        json.dumps({"v": 9, "type": "physio"}),
        json.dumps({"v": 1, "type": "gossip", "session": "room-1", "t": 1.0}),
        physio([1000.25], [70.0], session="room-2"),
        sync(1001.0, state="ecstatic"),
    )
    updates = state.take_updates(now_s=0.0)
    assert updates.physio == {} and updates.sync == {}
    assert state.ignored == {
        "wrong_session": 2,
        "not_json": 1,
        "unknown_version": 1,
        "unknown_type": 1,
        "malformed": 1,
    }
    assert updates.header.ignored_messages == 6


def test_new_session_resets_everything() -> None:
    state = connected(hello(), physio([1000.25], [70.0]), sync(1001.0), status("stalled"))
    first = state.take_updates(now_s=0.0)
    assert first.reset  # first hello clears whatever the page showed before
    state.feed(hello("room-2", t=5000.0, signals=("scl",)), now_s=1.0)
    state.feed(physio([5000.25], [4.2], signal="scl", session="room-2"), now_s=1.0)
    updates = state.take_updates(now_s=1.0)
    assert updates.reset
    assert updates.signals == ("scl",)
    assert updates.physio == {("scl", "therapist"): {"x": [250.0], "y": [4.2]}}
    assert updates.tiles["hr"].headline == "No estimate"
    assert updates.header.session == "room-2"
    assert [b.stream for b in updates.badges] == ["therapist-eda", "client-eda"]
    assert all(b.kind == "waiting" for b in updates.badges)


def test_tile_shows_state_leader_and_figures() -> None:
    tile = connected(hello(), sync(1001.0, z=1.0)).take_updates(now_s=0.0).tiles["hr"]
    assert (tile.kind, tile.headline, tile.note) == ("coupled", "Coupled", "")
    assert tile.detail == "Therapist leads by 2.0 s"
    # The correlation at the best lag, tanh(1.0) = 0.7616, not the raw Fisher z.
    assert tile.figures == "peak r +0.76 · z vs chance +3.1 · p 0.01"


@pytest.mark.parametrize(
    ("fields", "kind", "headline", "detail"),
    [
        (
            {"state": "anti_phase", "leader": "client", "best_lag_s": -1.5},
            "anti_phase",
            "Anti-phase",
            "Client leads by 1.5 s",
        ),
        (
            {"state": "decoupled", "leader": None, "best_lag_s": 0.0},
            "decoupled",
            "Decoupled",
            "No clear leader",
        ),
        ({"leader": "client", "best_lag_s": 2.0}, "coupled", "Coupled", "Lead unclear"),
        ({"best_lag_s": None}, "coupled", "Coupled", "No clear leader"),
    ],
)
def test_tile_states_and_lead(
    fields: dict[str, Any], kind: str, headline: str, detail: str
) -> None:
    tile = connected(hello(), sync(1001.0, **fields)).take_updates(now_s=0.0).tiles["hr"]
    assert (tile.kind, tile.headline, tile.detail) == (kind, headline, detail)


def test_no_estimate_is_greyed_with_the_reason() -> None:
    state = connected(hello(), no_estimate(1001.0, "bad signal"))
    updates = state.take_updates(now_s=0.0)
    tile = updates.tiles["hr"]
    assert (tile.kind, tile.headline, tile.detail, tile.figures) == (
        "none",
        "No estimate",
        "Signal quality too low",
        "",
    )
    state.feed(no_estimate(1002.0, "electrode off"), now_s=0.0)  # not a documented reason
    unknown = state.take_updates(now_s=0.0).tiles["hr"]
    assert (unknown.headline, unknown.detail) == (
        "No estimate",
        "Not available (server says: electrode off)",
    )
    assert same(updates.sync["hr"]["z"], [math.nan])
    assert updates.tiles["scl"].detail == "Waiting for the first estimate"


def test_estimate_without_state_is_plotted_but_claims_no_state() -> None:
    state = connected(hello(), sync(1001.0, state=None, reason="null warming up", null_z=None))
    updates = state.take_updates(now_s=0.0)
    tile = updates.tiles["hr"]
    assert (tile.kind, tile.headline, tile.detail, tile.figures) == (
        "none",
        "No state yet",
        "Building the chance level (about 50 s)",
        "",
    )
    assert updates.sync["hr"]["z"] == [0.73]
    assert same(updates.sync["hr"]["null_z"], [math.nan])


def test_tile_goes_stale_and_disconnection_greys_everything() -> None:
    state = connected(hello(), sync(1001.0), status("connected"), now_s=100.0)
    assert state.take_updates(now_s=104.0).tiles["hr"].kind == "coupled"
    stale = state.take_updates(now_s=106.0).tiles["hr"]
    assert (stale.kind, stale.detail) == ("none", "No update for 6 s")
    state.feed(sync(1002.0), now_s=106.0)
    assert state.take_updates(now_s=106.0).tiles["hr"].kind == "coupled"
    state.on_disconnected(reason="server not reachable", now_s=107.0, retry_in_s=4.0)
    updates = state.take_updates(now_s=108.0)
    assert updates.tiles["hr"].detail == "Not connected to the server"
    assert {b.level for b in updates.badges} == {"unknown"}
    assert updates.header.connection == "disconnected"
    assert updates.header.connection_detail == "server not reachable; retrying in 3 s"


def test_badges_follow_status_and_health() -> None:
    health = json.dumps(
        {
            "v": 1,
            "type": "health",
            "session": "room-1",
            "t": T0,
            "streams": {
                "therapist-ecg": {"received": 10, "lost": 3, "status": "connected"},
                "alien-xyz": {"status": "connected"},
            },
            "dropped_messages": 0,
        }
    )
    state = connected(
        hello(),
        status("stalled", detail="no samples for 2.0 s"),
        health,
        status("mismatch", role="therapist", signal="eda"),
    )
    badges = {b.stream: b for b in state.take_updates(now_s=0.0).badges}
    assert list(badges) == ["therapist-ecg", "therapist-eda", "client-ecg", "client-eda"]
    assert (badges["client-eda"].level, badges["client-eda"].kind, badges["client-eda"].detail) == (
        "warn",
        "stalled",
        "no samples for 2.0 s",
    )
    assert (badges["therapist-ecg"].level, badges["therapist-ecg"].detail) == (
        "ok",
        "3 samples lost",
    )
    assert badges["therapist-eda"].level == "bad"
    assert badges["client-ecg"].kind == "waiting"
    recovered = json.dumps(
        {
            "v": 1,
            "type": "health",
            "session": "room-1",
            "t": T0 + 2,
            "streams": {"client-eda": {"status": "connected"}},
        }
    )
    state.feed(recovered, now_s=0.0)
    badges = {b.stream: b for b in state.take_updates(now_s=0.0).badges}
    assert (badges["client-eda"].level, badges["client-eda"].detail) == ("ok", "")


def test_episodes_shade_from_start_to_end_and_open_ones_grow() -> None:
    state = connected(hello(), sync(1001.0), episode(1001.0, "start"), sync(1002.0))
    assert state.take_updates(now_s=0.0).episodes["hr"] == {
        "left": [1000.0],
        "right": [2000.0],
        "state": ["coupled"],
    }
    state.feed(sync(1003.0), now_s=0.0)
    assert state.take_updates(now_s=0.0).episodes["hr"]["right"] == [3000.0]
    # A new start closes the open episode; an end closes the last one.
    for raw in (
        episode(1004.0, "start", "anti_phase"),
        sync(1005.0),
        episode(1006.0, "end", "anti_phase"),
    ):
        state.feed(raw, now_s=0.0)
    assert state.take_updates(now_s=0.0).episodes["hr"] == {
        "left": [1000.0, 4000.0],
        "right": [4000.0, 6000.0],
        "state": ["coupled", "anti_phase"],
    }
    state.feed(sync(1007.0), now_s=0.0)
    assert "hr" not in state.take_updates(now_s=0.0).episodes  # nothing open: unchanged


def _drain(state: DashboardState, chunks: list[list[str]]) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {"x": [], "y": []}
    for chunk in chunks:
        for raw in chunk:
            state.feed(raw, now_s=0.0)
        updates: Updates = state.take_updates(now_s=0.0)
        for name, values in updates.physio.get(("hr", "client"), {}).items():
            out[name].extend(values)
    return out


@settings(max_examples=50, deadline=None)
@given(
    st.lists(st.one_of(st.none(), st.floats(40, 180)), min_size=1, max_size=60),
    st.lists(st.integers(1, 8), min_size=1, max_size=30),
)
def test_columns_do_not_depend_on_batching_or_tick_timing(
    values: list[float | None], cuts: list[int]
) -> None:
    t_s = [T0 + (k + 1) / 4 for k in range(len(values))]
    one_batch = [[physio(t_s, values, role="client")]]
    batches: list[list[str]] = []
    i = 0
    for size in cuts * len(values):
        if i >= len(values):
            break
        batches.append([physio(t_s[i : i + size], values[i : i + size], role="client")])
        i += size
    expected = _drain(connected(hello()), one_batch)
    got = _drain(connected(hello()), batches)
    assert got["x"] == expected["x"] == [(t - T0) * 1000 for t in t_s]
    assert same(got["y"], expected["y"])
    assert same(expected["y"], [math.nan if v is None else v for v in values])


def test_history_must_be_positive() -> None:
    with pytest.raises(ConfigError, match="history_s"):
        DashboardState(history_s=0.0)


def test_pure_parts_do_not_import_bokeh() -> None:
    # The message and state logic must stay importable (and testable) without Bokeh.
    code = (
        "import sys, dashboard.messages, dashboard.state, dashboard.views; "
        "assert 'bokeh' not in sys.modules and 'tornado' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


# -- session time, backlog, threshold, wording ----------------------------------------


def test_time_axis_counts_from_the_session_start_not_the_page_open() -> None:
    # The page opens 80 s into a session that started at LSL time 920.
    state = connected(
        hello(t=T0, started_t=920.0), physio([919.75, 999.75, 1000.0], [70.0, 71.0, 72.0])
    )
    rows = state.take_updates(now_s=0.0).physio[("hr", "therapist")]
    # A sample from before the start is a negative time, never wrapped round (the second
    # row is the gap marker of the 80 s hole).
    assert rows["x"] == [-250.0, -250.0, 79750.0, 80000.0]


def test_session_time_falls_back_to_the_hello_without_started_t() -> None:
    state = connected(hello(t=T0), physio([1000.5], [70.0]))
    assert state.take_updates(now_s=0.0).physio[("hr", "therapist")]["x"] == [500.0]
    # A reconnect keeps the first origin: the axis does not jump.
    state.feed(hello(t=1001.0), now_s=1.0)
    state.feed(physio([1000.75], [71.0]), now_s=1.0)
    assert state.take_updates(now_s=1.0).physio[("hr", "therapist")]["x"] == [750.0]


def _backlog(start_t: float, end_t: float) -> list[str]:
    """What a server sends after the hello: physio, sync, episode and status of the last
    minutes, oldest first."""
    messages = [status("connected", t=start_t)]
    t = start_t
    while t < end_t:
        t += 1.0
        messages.append(physio([t - 0.75, t - 0.5, t - 0.25, t], [70.0, 71.0, 72.0, 73.0]))
        messages.append(sync(t))
        if t == start_t + 5.0:
            messages.append(episode(t, "start"))
    return messages


def test_backlog_after_hello_fills_the_plots_of_a_late_page() -> None:
    state = connected(hello(t=1300.0, started_t=1000.0), *_backlog(1200.0, 1299.0))
    state.feed(physio([1299.25], [74.0]), now_s=0.0)  # live again
    state.feed(sync(1300.0), now_s=0.0)
    updates = state.take_updates(now_s=0.0)
    rows = updates.physio[("hr", "therapist")]
    assert len(rows["x"]) == 99 * 4 + 1 and rows["x"][0] == 200250.0
    assert rows["x"] == sorted(rows["x"]) and not any(math.isnan(y) for y in rows["y"])
    assert updates.sync["hr"]["x"] == [1000.0 * k for k in range(201, 301)]
    assert updates.episodes["hr"] == {"left": [205000.0], "right": [300000.0], "state": ["coupled"]}
    assert {b.stream: b.kind for b in updates.badges}["client-eda"] == "connected"
    assert updates.tiles["hr"].headline == "Coupled"
    assert state.ignored == {}


def test_reconnect_backlog_repeats_nothing_and_fills_the_outage() -> None:
    hello_1 = hello(t=1100.0, started_t=1000.0)
    state = connected(hello_1, *_backlog(1050.0, 1099.0))
    state.take_updates(now_s=0.0)
    state.on_disconnected(reason="connection lost", now_s=1.0, retry_in_s=0.5)
    state.on_connected()
    # Back 20 s later: the backlog overlaps what the page holds and covers the outage.
    for raw in (hello(t=1120.0, started_t=1000.0), *_backlog(1050.0, 1119.0)):
        state.feed(raw, now_s=2.0)
    updates = state.take_updates(now_s=2.0)
    assert not updates.reset
    rows = updates.physio[("hr", "therapist")]
    assert rows["x"] == [1000.0 * t for t in np_range(1099.25, 1119.0, 0.25)]  # no gap
    assert updates.sync["hr"]["x"] == [1000.0 * k for k in range(100, 120)]
    # The episode still open since 1055 s was not closed by its own replayed start.
    assert updates.episodes["hr"] == {"left": [55000.0], "right": [119000.0], "state": ["coupled"]}
    assert state.ignored == {}


def np_range(start: float, stop: float, step: float) -> list[float]:
    """Session times start..stop inclusive, offset by the session start (1000 s)."""
    n = round((stop - start) / step)
    return [start - 1000.0 + k * step for k in range(n + 1)]


def test_replayed_status_does_not_override_newer_health() -> None:
    health = json.dumps(
        {
            "v": 1,
            "type": "health",
            "session": "room-1",
            "t": 1010.0,
            "streams": {"client-eda": {"status": "connected"}},
        }
    )
    state = connected(hello(), status("stalled", t=1005.0), health)
    state.feed(hello(t=1011.0), now_s=1.0)  # reconnect: the backlog replays the stall
    state.feed(status("stalled", t=1005.0), now_s=1.0)
    badges = {b.stream: b.kind for b in state.take_updates(now_s=1.0).badges}
    assert badges["client-eda"] == "connected"


def test_same_room_with_a_new_session_start_is_a_new_session() -> None:
    state = connected(hello(started_t=900.0), physio([1000.25], [70.0]))
    state.take_updates(now_s=0.0)
    state.feed(hello(t=2000.0, started_t=1990.0), now_s=1.0)  # the server was restarted
    state.feed(physio([1999.0], [71.0]), now_s=1.0)
    updates = state.take_updates(now_s=1.0)
    assert updates.reset
    assert updates.physio[("hr", "therapist")]["x"] == [9000.0]


def test_an_old_backlog_estimate_reads_as_stale() -> None:
    # The newest estimate in the backlog is 30 s older than the hello: nothing current.
    state = connected(hello(t=1100.0), sync(1070.0), now_s=50.0)
    tile = state.take_updates(now_s=50.0).tiles["hr"]
    assert (tile.kind, tile.detail) == ("none", "No update for 30 s")


@pytest.mark.parametrize(
    ("z_enter", "fields", "note"),
    [
        (None, {"null_z": 5.1}, "Coupling emerging…"),
        (None, {"null_z": 3.0}, "Coupling emerging…"),
        (None, {"null_z": 2.9}, ""),
        (2.5, {"null_z": 2.6}, "Coupling emerging…"),
        (None, {"null_z": 0.4, "anti_null_z": 3.4}, "Anti-phase pattern emerging…"),
        (None, {"null_z": None}, ""),
    ],
)
def test_decoupled_tile_says_when_coupling_is_emerging(
    z_enter: float | None, fields: dict[str, Any], note: str
) -> None:
    state = connected(hello(z_enter=z_enter), sync(1001.0, state="decoupled", **fields))
    tile = state.take_updates(now_s=0.0).tiles["hr"]
    assert (tile.kind, tile.headline, tile.note) == ("decoupled", "Decoupled", note)


def test_coupling_threshold_comes_from_the_hello() -> None:
    assert connected(hello(z_enter=2.5)).take_updates(now_s=0.0).coupling_threshold_z == 2.5
    assert connected(hello()).take_updates(now_s=0.0).coupling_threshold_z == 3.0
    assert DashboardState().take_updates(now_s=0.0).coupling_threshold_z == 3.0


@pytest.mark.parametrize(
    ("reason", "headline", "detail"),
    [
        ("warming up", "No estimate", "Collecting the first 30 s window (about 34 s)"),
        (
            "reconnected",
            "No estimate",
            "Sensor reconnected, collecting a fresh 30 s window (about 34 s)",
        ),
        (
            "settling",
            "No estimate",
            "Sensor reconnected, collecting a fresh 30 s window (about 34 s)",
        ),
        ("gap", "No estimate", "Gap in the data"),
        ("bad signal", "No estimate", "Signal quality too low"),
        ("flat signal", "No estimate", "A signal is flat (check the sensor)"),
        ("clock break", "No estimate", "Clock jump in a sensor stream"),
        ("null warming up", "No state yet", "Building the chance level (about 50 s)"),
        ("null unavailable", "No state yet", "Too many gaps to compare with chance"),
    ],
)
def test_every_documented_reason_reads_plainly(reason: str, headline: str, detail: str) -> None:
    if reason.startswith("null"):  # an estimate whose significance is not known yet
        raw = sync(1001.0, reason=reason, state=None, null_z=None, p=None)
    else:
        raw = no_estimate(1001.0, reason)
    tile = connected(hello(), raw).take_updates(now_s=0.0).tiles["hr"]
    assert (tile.kind, tile.headline, tile.detail, tile.figures) == ("none", headline, detail, "")


def waiting(t: float, reason: str) -> str:
    """An update that waits: no estimate at all, or an estimate without significance."""
    if reason.startswith("null"):
        return sync(t, reason=reason, state=None, null_z=None, p=None)
    return no_estimate(t, reason)


def test_first_minutes_count_down_the_window_then_the_chance_level() -> None:
    # Defaults in the hello: 30 s window + 5 s lag = 35 s of data per estimate; the null
    # needs window + 2 x lag + NULL_EXTRA_S = 84.5 s of data, counted from the same start.
    state = connected(hello())
    details = []
    for t in (1001.0, 1011.0, 1034.0, 1035.0):
        state.feed(waiting(t, "warming up"), now_s=0.0)
        details.append(state.take_updates(now_s=0.0).tiles["hr"].detail)
    assert details == [
        "Collecting the first 30 s window (about 34 s)",
        "Collecting the first 30 s window (about 24 s)",
        "Collecting the first 30 s window (about 1 s)",
        "Collecting the first 30 s window (any moment now)",
    ]
    state.feed(waiting(1036.0, "null warming up"), now_s=0.0)
    updates = state.take_updates(now_s=0.0)
    tile = updates.tiles["hr"]
    assert (tile.headline, tile.detail) == (
        "No state yet",
        "Building the chance level (about 49 s)",
    )
    # The plot, which has no line to draw yet, says the same instead of looking empty.
    assert updates.sync_notes["hr"] == "Building the chance level (about 49 s)"
    state.feed(waiting(1066.0, "null warming up"), now_s=0.0)
    assert state.take_updates(now_s=0.0).tiles["hr"].detail.endswith("(about 19 s)")
    state.feed(sync(1085.0), now_s=0.0)
    coupled = state.take_updates(now_s=0.0)
    assert coupled.tiles["hr"].headline == "Coupled"
    assert coupled.sync_notes["hr"] == ""


def test_reconnect_counts_a_fresh_window_from_its_first_update() -> None:
    state = connected(hello(), sync(1100.0), no_estimate(1101.0, "gap"))
    assert state.take_updates(now_s=0.0).tiles["hr"].detail == "Gap in the data"
    state.feed(no_estimate(1120.0, "reconnected"), now_s=0.0)
    first = state.take_updates(now_s=0.0).tiles["hr"].detail
    state.feed(no_estimate(1130.0, "reconnected"), now_s=0.0)
    later = state.take_updates(now_s=0.0).tiles["hr"]
    assert first == "Sensor reconnected, collecting a fresh 30 s window (about 34 s)"
    assert (later.headline, later.detail) == (
        "No estimate",
        "Sensor reconnected, collecting a fresh 30 s window (about 24 s)",
    )
    # Never the electrodes: a reconnect is not a signal-quality problem.
    assert "quality" not in later.detail


def test_page_opened_mid_wait_estimates_the_rest_of_the_null() -> None:
    # No earlier update seen (joined after the backlog's start): the window just filled.
    tile = connected(hello(), waiting(1200.0, "null warming up")).take_updates(now_s=0.0)
    assert tile.tiles["hr"].detail == "Building the chance level (about 50 s)"


def test_no_countdown_without_the_window_in_the_hello() -> None:
    state = connected(hello(synchrony={"step_s": 1.0}), no_estimate(1001.0, "warming up"))
    assert state.take_updates(now_s=0.0).tiles["hr"].detail == "Collecting the first window"


@pytest.mark.parametrize("reason", ["sensor asleep", "", None])
def test_unknown_or_missing_reason_still_reads_sanely(reason: str | None) -> None:
    tile = (
        connected(hello(), sync(1001.0, estimate=False, reason=reason, state=None))
        .take_updates(now_s=0.0)
        .tiles["hr"]
    )
    assert tile.headline == "No estimate"
    assert tile.detail == (
        f"Not available (server says: {reason})" if reason else "The server gave no reason"
    )


def test_plot_note_repeats_the_tile_whenever_it_claims_no_state() -> None:
    state = connected(hello())
    assert state.take_updates(now_s=0.0).sync_notes["hr"] == "Waiting for the first estimate"
    state.feed(sync(1001.0), now_s=0.0)
    assert state.take_updates(now_s=0.0).sync_notes["hr"] == ""
    state.on_disconnected(reason="server not reachable", now_s=1.0, retry_in_s=1.0)
    assert state.take_updates(now_s=1.0).sync_notes["hr"] == "Not connected to the server"


ALL_CONNECTED = tuple(
    status("connected", role=role, signal=signal)
    for role in ("therapist", "client")
    for signal in ("ecg", "eda")
)


def test_a_silent_server_greys_the_pill_and_every_badge() -> None:
    state = connected(hello(), *ALL_CONNECTED)
    state.feed(sync(1001.0), now_s=100.0)
    live = state.take_updates(now_s=106.0)
    assert live.header.connection == "connected"
    assert {b.level for b in live.badges} == {"ok"}
    silent = state.take_updates(now_s=107.0)
    assert (silent.header.connection, silent.header.connection_detail) == (
        "silent",
        "nothing from the server for 7 s",
    )
    assert {(b.level, b.kind) for b in silent.badges} == {("unknown", "unknown")}
    assert silent.badges[0].detail == "nothing from the server for 7 s"
    state.feed(sync(1002.0), now_s=107.5)  # any message proves it alive again
    assert {b.level for b in state.take_updates(now_s=107.5).badges} == {"ok"}


def test_feed_side_loss_greys_the_pill_and_every_badge() -> None:
    state = connected(hello(), *ALL_CONNECTED)
    assert {b.level for b in state.take_updates(now_s=5.0).badges} == {"ok"}
    state.on_disconnected(reason="connection lost", now_s=5.0, retry_in_s=0.5)
    updates = state.take_updates(now_s=5.0)
    assert updates.header.connection == "disconnected"
    assert len(updates.badges) == 4  # both chairs' ECG and EDA, none left green
    assert {(b.level, b.detail) for b in updates.badges} == {
        ("unknown", "no connection to the server")
    }


FILE = "room-1_20261202T100000Z.xdf"


def test_no_recording_chip_unless_the_hello_names_a_file() -> None:
    # An older server (no field) and a server that records nothing look alike: no claim.
    assert connected(hello()).take_updates(now_s=0.0).recording is None
    view = connected(hello(recording_file=FILE)).take_updates(now_s=0.0).recording
    assert view is not None and (view.kind, view.file, view.detail) == ("on", FILE, "")


def test_recording_is_only_claimed_while_in_contact() -> None:
    state = connected(hello(recording_file=FILE), now_s=0.0)
    silent = state.take_updates(now_s=7.0).recording  # past SILENT_S without a message
    assert silent is not None and silent.kind == "unknown"
    state.on_disconnected(reason="connection lost", now_s=8.0, retry_in_s=1.0)
    lost = state.take_updates(now_s=8.0).recording
    assert lost is not None and lost.kind == "unknown"


@pytest.mark.parametrize("problem", ["failed", "lagging"])
def test_recording_problem_replaces_the_chip_and_outlives_the_connection(problem: str) -> None:
    state = connected(hello(recording_file=FILE), recording(problem, detail="disk gone"))
    view = state.take_updates(now_s=0.0).recording
    assert view is not None and (view.kind, view.file, view.detail) == (problem, FILE, "disk gone")
    # The file is incomplete whatever happens to the connection later.
    state.on_disconnected(reason="connection lost", now_s=1.0, retry_in_s=1.0)
    after = state.take_updates(now_s=1.0).recording
    assert after is not None and after.kind == problem
    state.on_connected()
    state.feed(hello(recording_file=FILE), now_s=2.0)  # a reconnect to the same session
    again = state.take_updates(now_s=2.0).recording
    assert again is not None and again.kind == problem


def test_recording_problem_is_shown_even_without_the_hello_field() -> None:
    # A server that does not announce its recording can still report it failing.
    view = connected(hello(), recording("failed")).take_updates(now_s=0.0).recording
    assert view is not None and (view.kind, view.file) == ("failed", "")


def test_a_failed_recording_is_never_softened_to_lagging() -> None:
    state = connected(
        hello(recording_file=FILE),
        recording("lagging", t=T0 + 1, detail="losing items"),
        recording("failed", t=T0 + 2, detail="disk full"),
        recording("lagging", t=T0 + 3, detail="still losing"),
        # The backlog of a reconnect repeats the older reports.
        recording("lagging", t=T0 + 1, detail="losing items"),
    )
    view = state.take_updates(now_s=0.0).recording
    assert view is not None and (view.kind, view.detail) == ("failed", "disk full")


def test_recording_problem_ends_with_the_session() -> None:
    state = connected(hello(recording_file=FILE), recording("failed"))
    state.feed(hello("room-2", recording_file="room-2.xdf"), now_s=0.0)
    view = state.take_updates(now_s=0.0).recording
    assert view is not None and (view.kind, view.file) == ("on", "room-2.xdf")
    # A recording report of another session is not this page's news.
    state.feed(recording("failed"), now_s=0.0)
    view = state.take_updates(now_s=0.0).recording
    assert view is not None and view.kind == "on"
    assert state.ignored.get("wrong_session") == 1


REPLAY_DETAIL = "replaying a generic-ecg stream, 2 ch, 256 Hz"


def test_replayed_streams_say_replaying_not_connected() -> None:
    state = connected(
        hello(mode="replay"),
        status("connected", role="therapist", signal="ecg", detail=REPLAY_DETAIL),
        status("connected", role="client", signal="ecg", detail="LSL stream found"),
        status("stalled", role="client", signal="eda", detail="replaying paused"),
    )
    badges = {b.stream: b for b in state.take_updates(now_s=0.0).badges}
    assert (badges["therapist-ecg"].level, badges["therapist-ecg"].kind) == ("ok", "replaying")
    assert badges["therapist-ecg"].detail == REPLAY_DETAIL
    assert badges["client-ecg"].kind == "connected"  # a live source's detail
    assert badges["client-eda"].kind == "stalled"  # a problem is never worded away


def test_replay_ending_is_worded_as_such() -> None:
    state = connected(hello(mode="replay"), sync(1001.0), now_s=0.0)
    assert state.take_updates(now_s=0.0).header.is_replay
    state.on_disconnected(reason="connection lost", now_s=1.0, retry_in_s=2.0)
    updates = state.take_updates(now_s=1.0)
    assert updates.tiles["hr"].detail == "Replay ended or server stopped"
    assert updates.header.connection_detail == (
        "Replay ended or server stopped; connection lost; retrying in 2 s"
    )
    live = connected(hello(), sync(1001.0), now_s=0.0)
    live.on_disconnected(reason="connection lost", now_s=1.0, retry_in_s=2.0)
    live_updates = live.take_updates(now_s=1.0)
    assert not live_updates.header.is_replay
    assert live_updates.tiles["hr"].detail == "Not connected to the server"
    assert "Replay" not in live_updates.header.connection_detail

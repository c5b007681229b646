"""Acceptance: the real `dyadsync demo` chain shown in headless Chromium.

Runs the real command (simulator -> LSL -> pipeline -> websocket server -> Bokeh
dashboard) as a subprocess, loads the URL it prints, and checks that the page renders the
plots, that the Bokeh document carries the named models, that their data change over
time, that early pages explain their empty synchrony plots, and that both connection
losses grey the page: the demo's own page loses its Bokeh server (browser side) while a
second dashboard, in its own process, loses the dyadsync websocket (server side). The
demo records (to a temporary folder and session store), so the page shows the recording
chip. Saves ``artifacts/dashboard.png`` (plus ``dashboard-early.png``,
``dashboard-lost-browser.png``, ``dashboard-lost-feed.png``); with
``DYADSYNC_UPDATE_SCREENSHOT=1`` also ``docs/dashboard.png`` (the README screenshot).

A disk failing mid-session cannot be provoked cheaply in the real chain, so a second test
drives the dashboard from a scripted protocol-v1 server playing a replay whose recording
failed: the badge and the replay wording as the browser draws them
(``artifacts/dashboard-recording-failed.png``, ``dashboard-replay-ended.png``).
"""

from __future__ import annotations

import math
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Page, sync_playwright

from tests.e2e.browser import (
    CHROMIUM,
    CHROMIUM_ARGS,
    REPO,
    UPDATE_SCREENSHOT,
    DemoProcess,
    free_port,
    open_dashboard,
)

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(360 if UPDATE_SCREENSHOT else 240)]

# Long enough for the whole test: the test stops the demo itself to check the greying.
STATE_FOR_SCREENSHOT_TIMEOUT_S = 150.0
# The synchrony window (30 s by default, plus the maximum lag) must fill before the first
# estimate, and the heart rate needs a few beats first; the test ends the demo itself.
FIRST_ESTIMATE_TIMEOUT_S = 50.0


# A dashboard alone, fed by another process's websocket: stopping that process cuts only
# the dashboard server <-> dyadsync link, while the browser keeps its Bokeh server.
_STANDALONE_DASHBOARD = """
import asyncio, sys
from dashboard.serve import start_dashboard

async def main() -> None:
    handle = start_dashboard(rooms={"room-1": sys.argv[1]}, port=int(sys.argv[2]))
    print("Dashboard: " + handle.url, flush=True)
    await asyncio.Event().wait()

asyncio.run(main())
"""


# A protocol-v1 server scripted as a replay whose recording failed, plus a dashboard on it,
# in one process: stopping it ends the "replay" the way `dyadsync replay` does.
_SCRIPTED_REPLAY = """
import asyncio, json, sys, time
from websockets.asyncio.server import serve
from dashboard.serve import start_dashboard

def message(message_type, **fields):  # not "kind": a status message has a kind field
    return json.dumps(
        {"v": 1, "type": message_type, "session": "room-1", "t": time.time(), **fields})

async def handler(ws):
    await ws.send(message(
        "hello", mode="replay", started_t=time.time() - 60, signals=["hr", "scl"],
        grid_hz=4.0, synchrony={"window_s": 30.0, "lag_s": 5.0, "step_s": 1.0},
        lag_convention="positive lag = client follows therapist",
        recording={"file": "room-1_20261202T100000Z.xdf"}))
    for stream in ("therapist-ecg", "therapist-eda", "client-ecg", "client-eda"):
        role, signal = stream.split("-")
        await ws.send(message("status", role=role, signal=signal, kind="connected",
                              detail=f"replaying a generic-{signal} stream, 2 ch, 256 Hz"))
    await ws.send(message("recording", state="failed", detail=(
        "recording stopped: room-1_20261202T100000Z.xdf: cannot write the recording "
        "(No space left on device)")))
    while True:  # health keeps the page from reading the server as silent
        await asyncio.sleep(1.0)
        await ws.send(message("health", streams={}))

async def main():
    async with serve(handler, "127.0.0.1", 0) as server:
        port = server.sockets[0].getsockname()[1]
        rooms = {"room-1": f"ws://127.0.0.1:{port}/ws"}
        handle = start_dashboard(rooms=rooms, port=int(sys.argv[1]))
        print("Dashboard: " + handle.url, flush=True)
        await asyncio.Event().wait()

asyncio.run(main())
"""


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DemoProcess]:
    folder = tmp_path_factory.mktemp("demo")
    recordings = folder / "recordings"
    recordings.mkdir()
    # The recording's catalogue row goes to a store of its own, never the user's.
    process = DemoProcess(
        folder / "demo-stderr.log",
        env={"DYADSYNC_STORE": str(folder / "store.sqlite3")},
        record=recordings,
    )
    try:
        yield process
    finally:
        process.stop()


@pytest.fixture(scope="module")
def standalone(
    demo: DemoProcess, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[DemoProcess]:
    """A second dashboard process on the demo's websocket."""
    ws_url = f"ws://127.0.0.1:{demo.ws_port}/ws"
    command = [sys.executable, "-c", _STANDALONE_DASHBOARD, ws_url, str(free_port())]
    process = DemoProcess(tmp_path_factory.mktemp("standalone") / "stderr.log", command)
    try:
        yield process
    finally:
        process.stop()


def _model_data(page: Page, name: str) -> dict[str, Any]:
    """Columns of the named renderer's data source in the browser's Bokeh document."""
    data: dict[str, Any] = page.evaluate(
        """(name) => {
            const doc = Bokeh.documents[0];
            const model = doc.get_model_by_name(name);
            if (model === null) return null;
            const out = {};
            for (const [key, column] of Object.entries(model.data_source.data)) {
                out[key] = Array.from(column);
            }
            return out;
        }""",
        name,
    )
    assert data is not None, f"model {name!r} not in the Bokeh document"
    return data


# The element really drawn at a point, through Bokeh's nested shadow roots.
_DEEPEST_AT = """([x, y]) => {
    let el = document.elementFromPoint(x, y);
    while (el !== null && el.shadowRoot !== null) {
        const inner = el.shadowRoot.elementFromPoint(x, y);
        if (inner === null || inner === el) break;
        el = inner;
    }
    return el === null ? null : el.className;
}"""


def _greyed(page: Page) -> dict[str, Any]:
    """What the page's connection pill and stream badges show, and in which colours."""
    pill = page.locator(".pill:visible")
    badges = page.locator(".badge")
    return {
        "pills": pill.all_inner_texts(),
        "pill_border": pill.first.evaluate("(e) => getComputedStyle(e).borderColor"),
        "badges": badges.all_inner_texts(),
        "dots": [
            dot.evaluate("(e) => getComputedStyle(e).backgroundColor")
            for dot in page.locator(".badge .dot").all()
        ],
    }


GREEN = "rgb(0, 158, 115)"  # Okabe-Ito bluish green: ok dot and connected pill border
GREY_DOT = "rgb(200, 200, 200)"


def _assert_grey(page: Page, *, pill: str) -> None:
    seen = _greyed(page)
    assert seen["pills"] == [pill], seen
    assert seen["pill_border"] != GREEN, seen
    assert len(seen["badges"]) == 4 and all(b.endswith(": unknown") for b in seen["badges"]), seen
    assert seen["dots"] == [GREY_DOT] * 4, seen


# Per shown signal: finite points on the synchrony line, and the plot's note.
_SYNC_PLOTS = """() => ['hr', 'scl', 'phasic']
    .filter((s) => Bokeh.documents[0].get_model_by_name('section_' + s).visible)
    .map((s) => {
        const doc = Bokeh.documents[0];
        const line = doc.get_model_by_name(s + '_sync_z').data_source.data.null_z;
        const note = doc.get_model_by_name(s + '_sync_note');
        return {signal: s, points: Array.from(line).filter(Number.isFinite).length,
                note: note.visible ? note.text : ''};
    })"""


def _finite(values: list[Any]) -> list[float]:
    # Gaps (invalid samples) are NaN in the browser: they are not values.
    return [v for v in values if isinstance(v, int | float) and math.isfinite(v)]


def test_dashboard_renders_and_updates_live(demo: DemoProcess, standalone: DemoProcess) -> None:
    url = demo.dashboard_url()
    page_errors: list[str] = []
    artifacts = REPO / "artifacts"
    artifacts.mkdir(exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            # Pages opened in the first seconds (the issue: a synchrony plot with only its
            # legend): every synchrony plot has points or says why not, in words.
            for attempt in range(5):
                early = open_dashboard(browser, url, page_errors)
                early.wait_for_timeout(800)  # a few display ticks
                for plot in early.evaluate(_SYNC_PLOTS):
                    assert plot["points"] > 0 or plot["note"].startswith(
                        ("Collecting the first", "Waiting for the first", "Building the chance")
                    ), (attempt, plot)
                if attempt == 4:
                    early.screenshot(path=str(artifacts / "dashboard-early.png"), full_page=True)
                early.close()

            page = open_dashboard(browser, url, page_errors)
            signals: list[str] = page.evaluate(
                """() => ['hr', 'scl', 'phasic'].filter((s) =>
                    Bokeh.documents[0].get_model_by_name('section_' + s).visible)"""
            )
            # The demo has ECG and EDA on both chairs: heart rate plus one EDA signal.
            assert "hr" in signals and len(signals) >= 2, signals
            wanted = (
                ["header", "stream_badges", "contact_lost"]
                + [
                    f"{s}_{suffix}"
                    for s in signals
                    for suffix in (
                        "physio",
                        "sync",
                        "physio_therapist",
                        "physio_client",
                        "sync_z",
                        "episodes",
                    )
                ]
                + [f"state_{s}" for s in signals]
            )
            missing = page.evaluate(
                """(names) => names.filter(
                    (n) => Bokeh.documents[0].get_model_by_name(n) === null)""",
                wanted,
            )
            assert missing == [], f"named models missing from the document: {missing}"

            # Data arrive from the real chain for both people and every signal shown.
            physio = [f"{s}_physio_{role}" for s in signals for role in ("therapist", "client")]
            page.wait_for_function(
                """(names) => names.every((n) =>
                    Bokeh.documents[0].get_model_by_name(n).data_source.data.x.length > 0)""",
                arg=physio,
                timeout=40_000,
            )
            assert page.locator("canvas").count() >= 2 * len(signals)  # the plots were drawn
            header = page.locator(".header").inner_text()
            assert "Connected" in header, header
            # The demo records: a neutral chip says so, naming the file in its tooltip.
            chip = page.locator(".rec:visible")
            assert chip.all_inner_texts() == ["● Recording"]
            title = chip.first.get_attribute("title") or ""
            assert title.startswith("Recording to ") and title.endswith(".xdf"), title
            assert "/" not in title  # the file name only, never the folder
            assert "positive lag" in header.lower()  # the lag convention is stated

            before = {name: _model_data(page, name) for name in physio}
            page.wait_for_timeout(3000)
            after = {name: _model_data(page, name) for name in physio}
            for name in physio:
                assert max(after[name]["x"]) > max(before[name]["x"]), f"{name} did not advance"
                assert _finite(after[name]["y"]), f"{name} has no valid sample"
            hr = _finite(after["hr_physio_client"]["y"] + after["hr_physio_therapist"]["y"])
            assert min(hr) > 40 and max(hr) < 180, "implausible heart rate on the page"
            axis_labels = page.evaluate(
                """(signals) => signals.map((s) =>
                    Bokeh.documents[0].get_model_by_name(s + '_sync').below[0].axis_label)""",
                signals,
            )
            assert axis_labels == ["session time (mm:ss)"] * len(signals)

            # A page opened later (or reloaded) shows the recent history at once, on the
            # same session clock: the same sample sits at the same time on both pages.
            late = browser.new_page(viewport={"width": 1400, "height": 860})
            late.on("pageerror", lambda error: page_errors.append(str(error)))
            late.goto(url)
            late.wait_for_function(
                """() => window.Bokeh && Bokeh.documents.length > 0
                    && Bokeh.documents[0].get_model_by_name('hr_physio_client') !== null
                    && Bokeh.documents[0].get_model_by_name('hr_physio_client')
                        .data_source.data.x.length > 0""",
                timeout=30_000,
            )
            late_x = _model_data(late, "hr_physio_client")["x"]
            early_x = after["hr_physio_client"]["x"]
            assert min(late_x) <= min(early_x) + 1000.0, "the late page has no backlog"
            assert set(early_x) & set(late_x), "the pages disagree on session time"
            late.close()

            # The synchrony plots fill in once the window is full (best-lag Fisher z).
            page.wait_for_function(
                """(signals) => signals.every((s) =>
                    Bokeh.documents[0].get_model_by_name(s + '_sync_z').data_source.data
                        .z.some((v) => Number.isFinite(v)))""",
                arg=signals,
                timeout=FIRST_ESTIMATE_TIMEOUT_S * 1000,
            )
            page.wait_for_timeout(1500)  # a couple of display ticks for the tiles
            headlines = ("Coupled", "Anti-phase", "Decoupled", "No estimate", "No state yet")
            tiles = page.locator(".tile:visible").all_inner_texts()
            assert len(tiles) == len(signals), tiles  # the lost-contact variants stay hidden
            for tile in tiles:
                assert any(h in tile for h in headlines), tile
                assert "quality" not in tile, tile  # nothing is wrong with the electrodes
            for plot in page.evaluate(_SYNC_PLOTS):  # before the null: the countdown
                assert plot["points"] > 0 or "chance level" in plot["note"], plot

            if UPDATE_SCREENSHOT:
                # The demo scenario's first episode (therapist leads) is the picture we want.
                page.wait_for_selector(
                    ".tile-coupled", timeout=STATE_FOR_SCREENSHOT_TIMEOUT_S * 1000
                )
                page.wait_for_timeout(20_000)  # some synchrony history next to the state
            screenshot = artifacts / "dashboard.png"
            page.screenshot(path=str(screenshot), full_page=True)
            assert screenshot.stat().st_size > 10_000
            if UPDATE_SCREENSHOT:
                shutil.copyfile(screenshot, REPO / "docs" / "dashboard.png")

            # A second dashboard on the same websocket, to lose only that link below.
            feed_page = open_dashboard(browser, standalone.dashboard_url(), page_errors)
            page.wait_for_timeout(500)
            assert _greyed(feed_page)["pills"] == ["Connected"]
            before_loss = _greyed(page)
            assert before_loss["dots"] == [GREEN] * 4, before_loss  # all fine before the loss

            # The service goes away: the demo's page loses its Bokeh server (browser side),
            # the second page loses the dyadsync websocket (server side). Both must grey
            # the pill and every badge instead of freezing on green.
            demo.stop()
            page.locator(".contact-lost").wait_for(state="visible", timeout=15_000)
            _assert_grey(page, pill="No contact")
            # Nobody can say the recording goes on once the server is gone (the chip is
            # redrawn by the same watchdog, possibly a frame later on a busy machine).
            page.locator(".rec:visible", has_text="Recording: unknown").wait_for(timeout=5_000)
            assert page.locator(".rec:visible").all_inner_texts() == ["Recording: unknown"]
            assert "Lost contact" in page.locator(".tile:visible").first.inner_text()
            # Bokeh's reconnect toast no longer lies over the lag convention.
            box = page.locator(".convention").bounding_box()
            assert box is not None
            centre = [box["x"] + box["width"] / 2, box["y"] + box["height"] / 2]
            assert page.evaluate(_DEEPEST_AT, centre) == "convention"
            page.screenshot(path=str(artifacts / "dashboard-lost-browser.png"), full_page=True)

            feed_page.wait_for_function(
                "() => !Bokeh.documents[0].get_model_by_name('header').text"
                ".includes('>Connected<')",
                timeout=15_000,
            )
            feed_page.wait_for_timeout(600)  # a display tick for badges and tiles
            _assert_grey(feed_page, pill="Disconnected")
            assert feed_page.locator(".rec:visible").all_inner_texts() == ["Recording: unknown"]
            # Its own server is fine: only the data link is gone, which the pill says.
            assert not feed_page.locator(".contact-lost").is_visible()
            for tile in feed_page.locator(".tile:visible").all_inner_texts():
                assert "Not connected to the server" in tile, tile
            feed_page.screenshot(path=str(artifacts / "dashboard-lost-feed.png"), full_page=True)
        finally:
            browser.close()
    assert page_errors == [], f"JavaScript errors on the page: {page_errors}"


WARNING_ORANGE = "rgb(230, 159, 0)"  # Okabe-Ito orange, the warning level's border


def test_recording_failure_badge_and_replay_end(tmp_path: Path) -> None:
    scripted = DemoProcess(
        tmp_path / "scripted-stderr.log",
        [sys.executable, "-c", _SCRIPTED_REPLAY, str(free_port())],
    )
    page_errors: list[str] = []
    artifacts = REPO / "artifacts"
    artifacts.mkdir(exist_ok=True)
    try:
        url = scripted.dashboard_url()
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            try:
                page = open_dashboard(browser, url, page_errors)
                badge = page.locator(".rec.level-warn")
                badge.wait_for(state="visible", timeout=10_000)
                assert badge.inner_text() == (
                    "Recording stopped — disk full or failing (recording stopped: "
                    "room-1_20261202T100000Z.xdf: cannot write the recording (No space left "
                    "on device))"
                )
                assert badge.evaluate("(e) => getComputedStyle(e).borderColor") == WARNING_ORANGE
                # The failure replaced the "Recording" chip: one recording item only.
                assert page.locator(".rec:visible").count() == 1
                page.wait_for_timeout(600)  # a display tick after the statuses
                assert page.locator(".badge").all_inner_texts() == [
                    f"{who} {signal}: replaying"
                    for who in ("Therapist", "Client")
                    for signal in ("ECG", "EDA")
                ]
                header = page.locator(".header").inner_text()
                assert "Replay of a recorded session" in header, header
                page.screenshot(
                    path=str(artifacts / "dashboard-recording-failed.png"), full_page=True
                )

                scripted.stop()  # the replay's end: its server stops
                banner = page.locator(".contact-lost")
                banner.wait_for(state="visible", timeout=15_000)
                assert banner.inner_text().startswith("Replay ended or server stopped:")
                for tile in page.locator(".tile:visible").all_inner_texts():
                    assert "Replay ended or server stopped" in tile, tile
                # The recording is still known to be incomplete after the end.
                assert page.locator(".rec.level-warn").is_visible()
                page.screenshot(path=str(artifacts / "dashboard-replay-ended.png"), full_page=True)
            finally:
                browser.close()
    finally:
        scripted.stop()
    assert page_errors == [], f"JavaScript errors on the page: {page_errors}"

"""`dyadsync analyze` end to end: a live demo's recording analysed offline gives the sync
values the live session published; NeuroKit2 and real-people dyads give every table, a
summary whose numbers are the tables' and a report that needs no network; re-analysis
settings change the outputs; bad input is one clear line and exit status 1 or 2; the
progress bar only draws on a terminal."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import re
import sys
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import pyxdf

from analysis.tables import (
    COMMENT_COLUMNS,
    EPISODE_COLUMNS,
    MARKER_COLUMNS,
    PHYSIO_COLUMNS,
    RATING_COLUMNS,
    STATUS_COLUMNS,
    SYNC_COLUMNS,
)
from dsp.types import Role
from dyadsync import cli
from server.recorder import LEADER_CODES, STATE_CODES, SYNC_CHANNELS
from server.store import SessionStore
from streamer.xdf_writer import XdfWriter
from tests.integration.conftest import DemoRecording
from tests.paths import testdata
from tests.recordings import neurokit_person, real_person, write_dyad_recording

pytestmark = [pytest.mark.integration, pytest.mark.timeout(400)]

DURATION_S = 150.0  # estimates after 35 s, the surrogate null after about 85 s
SYNC_SIGNALS = ("hr", "phasic")
PHYSIO_SIGNALS = ("hr", "scl", "phasic")
ANNOTATION_COLUMNS = {
    "markers.csv": MARKER_COLUMNS,
    "ratings.csv": RATING_COLUMNS,
    "comments.csv": COMMENT_COLUMNS,
}


def analyze(*argv: str | Path) -> int:
    """``dyadsync analyze ARGV`` in this process, through the real command line."""
    return cli.main(["analyze", *map(str, argv)])


def rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as file:
        return list(csv.DictReader(file))


def header(path: Path) -> tuple[str, ...]:
    with path.open(newline="", encoding="utf-8") as file:
        return tuple(next(csv.reader(file)))


def number(cell: str) -> float:
    return math.nan if cell == "" else float(cell)


@pytest.fixture(scope="module")
def neurokit_recording(tmp_path_factory: pytest.TempPathFactory) -> Path:
    people = {
        Role.THERAPIST: neurokit_person(duration_s=DURATION_S, seed=11),
        Role.CLIENT: neurokit_person(duration_s=DURATION_S, seed=12, heart_rate_bpm=78.0),
    }
    return write_dyad_recording(tmp_path_factory.mktemp("nk") / "nk-dyad.xdf", people)


@pytest.fixture(scope="module")
def neurokit_out(neurokit_recording: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("nk-out") / "analysis"
    assert analyze(neurokit_recording, "--out", out, "--quiet") == 0
    return out


# -- live == offline ------------------------------------------------------------------


def test_analysing_a_live_recording_gives_the_sync_values_published_live(
    demo_recording: DemoRecording, tmp_path: Path
) -> None:
    # The recording is long enough for the surrogate null, so p and state are compared too.
    recording = demo_recording.path
    out = tmp_path / "out"
    assert analyze(recording, "--out", out, "--store", demo_recording.store) == 0

    streams, _ = pyxdf.load_xdf(str(recording), synchronize_clocks=False,
                                dejitter_timestamps=False)  # fmt: skip
    recorded = {s["info"]["name"][0]: s for s in streams}
    numeric = [c for c in SYNC_CHANNELS if c not in ("state", "leader")]
    significant = 0
    for signal in SYNC_SIGNALS:
        live = recorded[f"dyadsync-sync-{signal}"]
        live_rows = np.asarray(live["time_series"], dtype=float)
        offline = rows(out / f"sync_{signal}.csv")
        assert len(offline) == live_rows.shape[0] > 60
        np.testing.assert_array_equal([float(r["t_s"]) for r in offline], live["time_stamps"])
        mine = np.array([[number(r[c]) for c in numeric] for r in offline])
        theirs = live_rows[:, [SYNC_CHANNELS.index(c) for c in numeric]]
        np.testing.assert_allclose(mine, theirs, rtol=0, atol=1e-9, equal_nan=True)
        codes = [(STATE_CODES[r["state"] or None], LEADER_CODES[r["leader"] or None])
                 for r in offline]  # fmt: skip
        np.testing.assert_array_equal(
            codes, live_rows[:, [SYNC_CHANNELS.index("state"), SYNC_CHANNELS.index("leader")]]
        )
        significant += sum(r["p"] != "" for r in offline)
    assert significant > 20  # the comparison covered the surrogate test, not only warm-up
    summary = json.loads((out / "summary.json").read_text())
    assert summary["session"]["room"] == "demo"
    # The demo session is catalogued in the store: its (empty) annotations were looked up.
    assert header(out / "markers.csv") == MARKER_COLUMNS


# -- a NeuroKit2 dyad ---------------------------------------------------------------------


def test_every_table_the_summary_and_the_report_are_written(neurokit_out: Path) -> None:
    expected = {
        *(f"physio_{role.value}_{s}.csv" for role in Role for s in PHYSIO_SIGNALS),
        *(f"sync_{s}.csv" for s in SYNC_SIGNALS),
        "episodes.csv", "status.csv", *ANNOTATION_COLUMNS, "summary.json", "report.html",
    }  # fmt: skip
    assert {p.name for p in neurokit_out.iterdir()} == expected
    for role in Role:
        for signal in PHYSIO_SIGNALS:
            path = neurokit_out / f"physio_{role.value}_{signal}.csv"
            assert header(path) == PHYSIO_COLUMNS
            series = rows(path)
            assert len(series) > (DURATION_S - 10) * 4  # the whole session on the 4 Hz grid
            valid = [r for r in series if r["valid"] == "1"]
            assert len(valid) > len(series) / 2
            assert all(r["value"] == "" for r in series if r["valid"] == "0")
            assert all(math.isfinite(float(r["value"])) for r in valid)
    for signal in SYNC_SIGNALS:
        assert header(neurokit_out / f"sync_{signal}.csv") == SYNC_COLUMNS
    assert header(neurokit_out / "episodes.csv") == EPISODE_COLUMNS
    assert header(neurokit_out / "status.csv") == STATUS_COLUMNS
    # Not in any session store: the annotation tables are headers only.
    for name, columns in ANNOTATION_COLUMNS.items():
        assert header(neurokit_out / name) == columns and rows(neurokit_out / name) == []


def test_the_summary_numbers_are_the_tables_numbers(
    neurokit_out: Path, neurokit_recording: Path
) -> None:
    summary = json.loads((neurokit_out / "summary.json").read_text())
    session = summary["session"]
    assert session["file"] == "nk-dyad.xdf" and session["room"] == "nk-dyad"
    assert session["duration_s"] == pytest.approx(DURATION_S, abs=2.0)
    assert session["file_sha256"] == hashlib.sha256(neurokit_recording.read_bytes()).hexdigest()
    assert str(neurokit_recording.parent) not in json.dumps(summary)  # a name, not a folder
    episodes = rows(neurokit_out / "episodes.csv")
    estimates = 0
    for signal in SYNC_SIGNALS:
        figures = summary["signals"][signal]
        table = rows(neurokit_out / f"sync_{signal}.csv")
        n = len(table)
        assert figures["updates"] == n
        states = Counter(r["state"] for r in table)
        for state in ("coupled", "anti_phase", "decoupled"):
            shares = figures["time_in_state"][state]
            assert shares["seconds"] == states[state] * 1.0
            assert shares["percent_of_session"] == pytest.approx(100 * states[state] / n)
        with_estimate = [r for r in table if r["estimate"] == "1"]
        estimates += len(with_estimate)
        quality = figures["data_quality"]
        assert quality["percent_with_estimate"] == pytest.approx(100 * len(with_estimate) / n)
        no_estimate = Counter(r["reason"] for r in table if r["estimate"] == "0")
        assert quality["no_estimate_s"] == {k: float(v) for k, v in no_estimate.items()}
        assert figures["synchrony"]["mean_r"] == pytest.approx(
            np.mean([float(r["r"]) for r in with_estimate])
        )
        starts = [e for e in episodes if e["signal"] == signal and e["event"] == "start"]
        assert figures["coregulation"]["entries"] == len(starts)
        assert figures["effect_size"]["susy"] is not None
        assert figures["concordance"]["chance_level"] == 0.0
    assert estimates > 100


def test_the_report_is_self_contained_and_says_the_summary_in_words(neurokit_out: Path) -> None:
    html = (neurokit_out / "report.html").read_text(encoding="utf-8")
    external = re.findall(
        r"<(?:script|link|img)\b[^>]*\b(?:src|href)\s*=\s*[\"']?(?:https?:)?//", html, re.I
    )
    assert external == []
    assert re.search(r"@import\s+url\(\s*[\"']?(?:https?:)?//", html) is None
    assert "Bokeh" in html and len(html) > 500_000  # BokehJS itself is inline
    for name in ("hr_overview", "phasic_overview", "hr_physio", "phasic_sync"):
        assert f'"name":"{name}"' in html.replace(" ", "")
    assert "Coupled above chance" in html and "SUSY effect size" in html


def test_reanalysis_with_another_window_changes_summary_and_outputs(
    neurokit_recording: Path, neurokit_out: Path, tmp_path: Path
) -> None:
    out = tmp_path / "w20"
    assert analyze(neurokit_recording, "--out", out, "--window-s", "20", "--surrogates",
                   "49", "--quiet") == 0  # fmt: skip
    settings = json.loads((out / "summary.json").read_text())["session"]["settings"]
    assert settings["window_s"] == 20.0 and settings["surrogates"]["n_surrogates"] == 49
    before = json.loads((neurokit_out / "summary.json").read_text())
    assert before["session"]["settings"]["window_s"] == 30.0
    for signal in SYNC_SIGNALS:
        # A 20 s window (plus the 5 s lag) fills 10 s sooner than the recorded 30 s one.
        warm_before = before["signals"][signal]["data_quality"]["no_estimate_s"]["warming up"]
        table = rows(out / f"sync_{signal}.csv")
        warm_after = sum(r["reason"] == "warming up" for r in table)
        assert warm_after == pytest.approx(warm_before - 10, abs=1)
    assert "window 20 s" in (out / "report.html").read_text(encoding="utf-8")


def test_progress_draws_only_on_a_terminal(
    neurokit_recording: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    assert analyze(neurokit_recording, "--out", tmp_path / "a") == 0
    captured = capsys.readouterr()
    assert captured.err == ""  # stderr is not a terminal under pytest: no bar
    assert "Heart rate: estimate" in captured.out and "Wrote 15 files" in captured.out

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    terminal = Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    assert analyze(neurokit_recording, "--out", tmp_path / "b") == 0
    assert "analysing" in terminal.getvalue() and "100%" in terminal.getvalue()
    terminal.truncate(0)
    capsys.readouterr()
    assert analyze(neurokit_recording, "--out", tmp_path / "c", "--quiet") == 0
    assert terminal.getvalue() == "" and capsys.readouterr().out == ""


# -- a real-people dyad, catalogued in a session store ----------------------------------


def test_a_real_people_dyad_with_its_store_annotations(tmp_path: Path) -> None:
    people = {
        Role.THERAPIST: real_person("bio_resting_8min_100hz", duration_s=DURATION_S),
        Role.CLIENT: real_person("bio_eventrelated_100hz", duration_s=DURATION_S),
    }
    recording = write_dyad_recording(tmp_path / "real-dyad.xdf", people, t0_s=5000.0)
    store_path = tmp_path / "store.sqlite3"
    with SessionStore(store_path) as store:
        store.begin_session(
            session_id="s1", room="room-1", started_utc=datetime(2026, 1, 5, 10, tzinfo=UTC),
            started_lsl_s=5000.0, file_path=recording, settings={}, streams=[],
        )  # fmt: skip
        store.add_marker(session_id="s1", kind="rupture", t_lsl_s=5060.0, note="withdrawal")
        undone = store.add_marker(session_id="s1", kind="note", t_lsl_s=5070.0)
        store.undo_marker(session_id="s1", marker_id=undone.marker_id)
        store.add_comment(session_id="s1", t_start_lsl_s=5080.0, t_end_lsl_s=5100.0,
                          text="repair attempt", author_code="SUP1")  # fmt: skip
        store.add_rating(session_id="s1", client_code="C07", instrument="SRS",
                         items=[8.0, 7.5, 9.0, 8.5])  # fmt: skip
    out = tmp_path / "out"
    assert analyze(recording, "--out", out, "--store", store_path, "--quiet") == 0

    markers = rows(out / "markers.csv")
    assert [(m["kind"], float(m["session_s"]), m["undone"]) for m in markers] == [
        ("rupture", 60.0, "0"), ("note", 70.0, "1"),
    ]  # fmt: skip
    (comment,) = rows(out / "comments.csv")
    assert (comment["session_start_s"], comment["session_end_s"]) == ("80.0", "100.0")
    assert comment["text"] == "repair attempt" and comment["author_code"] == "SUP1"
    (rating,) = rows(out / "ratings.csv")
    assert (rating["instrument"], float(rating["total"]), rating["items"]) == (
        "SRS", 33.0, "8.0 7.5 9.0 8.5",
    )  # fmt: skip
    assert "2026" not in (out / "markers.csv").read_text() + (out / "ratings.csv").read_text()
    html = (out / "report.html").read_text(encoding="utf-8")
    assert "repair attempt" in html and "withdrawal" in html
    summary = json.loads((out / "summary.json").read_text())
    for signal in SYNC_SIGNALS:
        quality = summary["signals"][signal]["data_quality"]
        assert quality["percent_with_estimate"] > 50, (signal, quality)


def test_an_e4_pair_is_analysed_from_a_recording_kept_in_the_output(tmp_path: Path) -> None:
    export = testdata("empatica_e4")
    out = tmp_path / "e4"
    assert analyze("--e4", export, export, "--out", out, "--quiet") == 0
    assert (out / "e4_dyad.xdf").is_file()
    summary = json.loads((out / "summary.json").read_text())
    assert summary["session"]["file"] == "e4_dyad.xdf"
    assert list(summary["signals"]) == ["phasic"] and (out / "sync_phasic.csv").is_file()
    assert not (out / "sync_hr.csv").exists()
    # The kept recording reproduces the analysis.
    assert analyze(out / "e4_dyad.xdf", "--out", tmp_path / "again", "--quiet") == 0
    again = json.loads((tmp_path / "again" / "summary.json").read_text())
    assert again["signals"] == summary["signals"]


def test_another_tools_xdf_is_analysed_with_a_session_mapping_its_streams(
    tmp_path: Path,
) -> None:
    """A LabRecorder-style file (plain one-channel streams, no dyadsync desc) needs the
    session TOML; with it, its ECG and EDA give the same tables as our own files."""
    people = {
        Role.THERAPIST: neurokit_person(duration_s=90.0, seed=21),
        Role.CLIENT: neurokit_person(duration_s=90.0, seed=22),
    }
    path = tmp_path / "labrecorder.xdf"
    with XdfWriter.open(path) as writer:
        for role, person in people.items():
            for kind, rate, values in (
                ("ECG", person.ecg_rate_hz, person.ecg_mv),
                ("EDA", person.eda_rate_hz, person.eda_us),
            ):
                stream = writer.add_stream(
                    name=f"amp {kind}",
                    type=kind,
                    channel_count=1,
                    nominal_srate=rate,
                    channel_format="float32",
                    source_id=f"amp-{role.value}-{kind}",
                )
                writer.push(stream, 2000.0 + np.arange(values.shape[0]) / rate, values)
        writer.tick(2090.0)  # fmt: skip
    session = tmp_path / "session.toml"
    session.write_text(
        '[session]\nroom = "lab"\nsignals = ["ecg", "eda"]\n'
        + "".join(
            f'[{role.value}.{kind.lower()}]\ndevice = "generic"\nsource_id = '
            f'"amp-{role.value}-{kind}"\n'
            for role in Role
            for kind in ("ECG", "EDA")
        ),
        encoding="utf-8",
    )
    assert analyze(path, "--out", tmp_path / "without", "--quiet") == 1  # no roles known
    assert analyze(path, "--out", tmp_path / "out", "--session", session, "--quiet") == 0
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["session"]["room"] == "lab"
    for signal in SYNC_SIGNALS:
        table = rows(tmp_path / "out" / f"sync_{signal}.csv")
        assert sum(r["estimate"] == "1" for r in table) > 30


# -- errors ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("make", "extra", "status", "words"),
    [
        ("missing", (), 1, "no such recording file"),
        ("corrupt", (), 1, "not a readable XDF recording"),
        ("truncated", (), 1, "xdf"),
        ("good", ("--window-s", "3"), 2, "window_s"),
        ("good", ("--lag-s", "40"), 2, "lag_s"),
        ("good", ("--surrogates", "0"), 2, "n_surrogates"),
        ("good", ("--store", "nowhere.sqlite3"), 2, "no such session store"),
        ("good", ("--e4", ".", "."), 2, "either FILE or --e4"),
    ],
)
def test_bad_input_is_one_clear_line_and_leaves_no_output(
    make: str, extra: tuple[str, ...], status: int, words: str, neurokit_recording: Path,
    tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    path = {"missing": tmp_path / "missing.xdf", "good": neurokit_recording}.get(
        make, tmp_path / f"{make}.xdf"
    )
    if make == "corrupt":
        path.write_bytes(b"this is not an XDF file\n")
    elif make == "truncated":
        path.write_bytes(neurokit_recording.read_bytes()[:20])
    out = tmp_path / "out"
    assert analyze(path, "--out", out, *extra) == status
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("dyadsync: "), err
    assert words.lower() in err.lower() and "Traceback" not in err
    assert not out.exists()


def test_a_non_empty_output_folder_needs_force(
    neurokit_recording: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "taken"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    assert analyze(neurokit_recording, "--out", out, "--quiet") == 2
    assert "--force" in capsys.readouterr().err
    assert [p.name for p in out.iterdir()] == ["notes.txt"]
    assert analyze(neurokit_recording, "--out", out, "--quiet", "--force") == 0
    assert (out / "notes.txt").read_text() == "keep me" and (out / "summary.json").is_file()


# -- the report in a browser ---------------------------------------------------------------


@pytest.mark.e2e
def test_the_report_opens_in_chromium_with_no_network(neurokit_out: Path, tmp_path: Path) -> None:
    from playwright.sync_api import sync_playwright

    from tests.e2e.browser import CHROMIUM, CHROMIUM_ARGS

    requests: list[str] = []
    errors: list[str] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1300, "height": 900})
            page.on("pageerror", lambda error: errors.append(str(error)))
            page.route("**/*", lambda route: _only_local(route, requests))
            page.goto((neurokit_out / "report.html").as_uri())
            page.wait_for_function(
                "window.Bokeh !== undefined && Bokeh.documents.length > 0", timeout=30_000
            )
            page.wait_for_timeout(1000)
            page.screenshot(path=str(tmp_path / "report.png"), full_page=True)
            text = page.evaluate(_ALL_TEXT_JS)
        finally:
            browser.close()
    assert errors == [] and requests == []
    assert "Whole-session overview" in text and "Heart rate: estimate" in text
    assert (tmp_path / "report.png").stat().st_size > 20_000


def _only_local(route: Any, requests: list[str]) -> None:
    if route.request.url.startswith("file:"):
        route.continue_()
    else:
        requests.append(route.request.url)
        route.abort()


# Bokeh renders its Divs in shadow roots; collect their text too.
_ALL_TEXT_JS = """() => {
  const parts = [];
  const visit = (root) => {
    for (const el of root.querySelectorAll("*")) {
      if (el.shadowRoot) visit(el.shadowRoot);
    }
    parts.push((root === document ? document.body.textContent : root.textContent) || "");
  };
  visit(document);
  return parts.join(" ");
}"""

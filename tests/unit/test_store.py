"""Session store (server/store.py) on real SQLite files: round trips, WAL and file modes,
concurrent writer and reader, validation messages, corrupt/locked files, marker undo,
explicit removal, and a schema that has no room for samples or names."""

from __future__ import annotations

import hashlib
import json
import logging
import multiprocessing
import sqlite3
import stat
import threading
import time
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dsp.exceptions import ConfigError, DyadsyncError
from server.store import (
    SCHEMA_VERSION,
    SessionNotFoundError,
    SessionRow,
    SessionStore,
    StoreError,
    default_store_path,
    format_sessions,
    sessions_json,
    sha256_file,
)
from streamer.errors import RecordingError

T0 = datetime(2024, 5, 6, 14, 0, 0, 123456, tzinfo=UTC)
SHA = "ab" * 32
STREAMS = [
    {"kind": "raw", "name": "therapist-ecg", "type": "ECG", "channels": 2, "rate_hz": 130.0},
    {"kind": "physio", "name": "dyadsync-client-hr", "type": "HR", "channels": 2},
]
SETTINGS = {"synchrony": {"window_s": 20, "lag_s": 4.0, "step_s": 0.5}, "signals": ["ecg"]}
COREG = {"hr": {"entries": 3, "exits": 2, "mean_episode_s": 41.5, "leaders": ["therapist"]}}


def begin(store: SessionStore, session_id: str = "room-2_20240506T140000Z", **overrides: Any):
    fields: dict[str, Any] = {
        "session_id": session_id,
        "room": "room-2",
        "started_utc": T0,
        "started_lsl_s": 1234.5,
        "file_path": store.path.parent / f"{session_id}.xdf",
        "settings": SETTINGS,
        "streams": STREAMS,
    }
    fields.update(overrides)
    return store.begin_session(**fields)


def end(store: SessionStore, session_id: str = "room-2_20240506T140000Z", **overrides: Any):
    fields: dict[str, Any] = {
        "session_id": session_id,
        "ended_utc": T0 + timedelta(minutes=50),
        "duration_s": 3000.25,
        "file_sha256": SHA,
        "coregulation": COREG,
    }
    fields.update(overrides)
    return store.end_session(**fields)


@pytest.fixture
def store_path(tmp_path: Path) -> Path:
    return tmp_path / "state" / "dyadsync" / "sessions.sqlite3"


@pytest.fixture
def store(store_path: Path):
    with SessionStore(store_path) as opened:
        yield opened


# --- round trips ----------------------------------------------------------------------


def test_session_round_trip_survives_reopen(store_path: Path) -> None:
    with SessionStore(store_path) as store:
        begun = begin(store)
        assert begun.is_open and begun.ended_utc is None and begun.coregulation is None
        ended = end(store)
    with SessionStore(store_path) as store:
        again = store.get_session("room-2_20240506T140000Z")
    assert again == ended
    assert again.room == "room-2"
    assert again.started_utc == T0 and again.started_utc.tzinfo is not None
    assert again.started_lsl_s == 1234.5
    assert again.file_path == store_path.parent / "room-2_20240506T140000Z.xdf"
    assert again.settings == SETTINGS
    assert again.streams == tuple(STREAMS)
    assert again.ended_utc == T0 + timedelta(minutes=50)
    assert again.duration_s == 3000.25
    assert again.file_sha256 == SHA
    assert again.coregulation == COREG
    assert not again.is_open


def test_times_in_other_zones_are_stored_as_the_same_instant(store: SessionStore) -> None:
    local = T0.astimezone(timezone(timedelta(hours=2)))
    row = begin(store, started_utc=local)
    assert row.started_utc == T0
    assert row.started_utc.utcoffset() == timedelta(0)


def test_list_sessions_oldest_first_and_by_room(store: SessionStore) -> None:
    begin(store, "b-late", started_utc=T0 + timedelta(hours=1))
    begin(store, "a-early", started_utc=T0)
    begin(store, "c-other", room="room-9", started_utc=T0 + timedelta(hours=2))
    assert [row.session_id for row in store.list_sessions()] == ["a-early", "b-late", "c-other"]
    assert [row.session_id for row in store.list_sessions(room="room-9")] == ["c-other"]
    assert store.list_sessions(room="room-404") == ()


def test_relative_file_path_is_stored_absolute(
    store: SessionStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    row = begin(store, file_path="rec.xdf")
    assert row.file_path == tmp_path / "rec.xdf"


def test_annotations_round_trip(store: SessionStore) -> None:
    begin(store)
    sid = "room-2_20240506T140000Z"
    marker = store.add_marker(
        session_id=sid, kind="rupture", t_lsl_s=1300.0, note="withdrawal", created_utc=T0
    )
    assert (marker.kind, marker.t_lsl_s, marker.note, marker.created_utc) == (
        "rupture",
        1300.0,
        "withdrawal",
        T0,
    )
    srs = store.add_rating(
        session_id=sid, client_code="C017", instrument="SRS", items=[9.1, 8, 10, 7.5]
    )
    wai = store.add_rating(
        session_id=sid, client_code="C017", instrument="WAI-SR", items=[5, 4, 3, 2, 1] * 2 + [3, 3]
    )
    assert srs.items == (9.1, 8.0, 10.0, 7.5) and srs.total == pytest.approx(34.6)
    assert wai.items == (5, 4, 3, 2, 1, 5, 4, 3, 2, 1, 3, 3)
    point = store.add_comment(session_id=sid, t_start_lsl_s=1400.0, text="see the lag here")
    span = store.add_comment(
        session_id=sid,
        t_start_lsl_s=1350.0,
        t_end_lsl_s=1380.5,
        text="repair attempt",
        author_code="SUP-3",
    )
    assert point.t_end_lsl_s is None and point.author_code is None
    assert store.markers(sid) == (marker,)
    assert store.ratings(session_id=sid) == (srs, wai)
    assert store.comments(sid) == (span, point)  # time order, not insertion order


def test_ratings_filter_by_session_and_client(store: SessionStore) -> None:
    begin(store, "s1")
    begin(store, "s2")
    a = store.add_rating(session_id="s1", client_code="C1", instrument="ORS", items=[1, 2, 3, 4])
    b = store.add_rating(session_id="s2", client_code="C1", instrument="ORS", items=[2, 2, 3, 4])
    c = store.add_rating(session_id="s2", client_code="C2", instrument="ORS", items=[5, 5, 5, 5])
    assert store.ratings(client_code="C1") == (a, b)
    assert store.ratings(session_id="s2") == (b, c)
    assert store.ratings(session_id="s2", client_code="C2") == (c,)
    assert store.ratings() == (a, b, c)


@settings(max_examples=60, deadline=None)
@given(
    payload=st.dictionaries(
        st.text(max_size=8),
        st.recursive(
            st.none()
            | st.booleans()
            | st.integers()
            | st.floats(allow_nan=False, allow_infinity=False)
            | st.text(max_size=12),
            lambda children: (
                st.lists(children, max_size=4)
                | st.dictionaries(st.text(max_size=6), children, max_size=4)
            ),
            max_leaves=12,
        ),
        max_size=6,
    )
)
def test_settings_dicts_round_trip_exactly(tmp_path_factory, payload: dict[str, Any]) -> None:
    path = tmp_path_factory.mktemp("hyp") / "s.sqlite3"
    with SessionStore(path) as store:
        begin(store, "hyp", settings=payload)
    with SessionStore(path) as store:
        got = store.get_session("hyp").settings
    assert got == payload
    # == treats 1 == 1.0 == True and 0.0 == -0.0; the JSON text also checks types and signs
    assert json.dumps(got) == json.dumps(payload)


# --- SQLite configuration and files ---------------------------------------------------


def test_wal_mode_schema_version_and_foreign_keys(store: SessionStore) -> None:
    begin(store)
    raw = sqlite3.connect(store.path)
    try:
        assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert raw.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 1
    finally:
        raw.close()
    assert store.schema_version == 1
    # foreign keys enforced on the store's own connection: a marker of a missing session
    # must not slip in, even through SQL that bypasses the Python existence check
    with pytest.raises(StoreError, match="FOREIGN KEY"), store._write("test") as conn:
        conn.execute(
            "INSERT INTO markers (session_id, kind, t_lsl_s, note, created_utc)"
            " VALUES ('nope', 'note', 1.0, '', 'x')"
        )


def test_directory_0700_and_files_0600(store_path: Path) -> None:
    with SessionStore(store_path) as store:
        begin(store)  # a write creates the -wal file
        wal = Path(f"{store_path}-wal")
        assert wal.exists()
        assert stat.S_IMODE(wal.stat().st_mode) == 0o600
        assert stat.S_IMODE(store_path.stat().st_mode) == 0o600
        assert stat.S_IMODE(store_path.parent.stat().st_mode) == 0o700


def test_default_path_and_environment_override(tmp_path: Path) -> None:
    assert default_store_path({"DYADSYNC_STORE": str(tmp_path / "x.db")}) == tmp_path / "x.db"
    assert default_store_path({}) == Path.home() / ".local/share/dyadsync/sessions.sqlite3"


def test_store_uses_environment_when_no_path_given(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DYADSYNC_STORE", str(tmp_path / "env" / "store.sqlite3"))
    with SessionStore() as store:
        assert store.path == tmp_path / "env" / "store.sqlite3"
    assert (tmp_path / "env" / "store.sqlite3").is_file()


def test_create_false_refuses_a_missing_store(tmp_path: Path) -> None:
    missing = tmp_path / "typo.sqlite3"
    with pytest.raises(StoreError, match="no session store") as info:
        SessionStore(missing, create=False)
    assert str(missing) in str(info.value)
    assert not missing.exists()


def test_closed_store_gives_a_clear_error(store_path: Path) -> None:
    store = SessionStore(store_path)
    store.close()
    store.close()  # idempotent
    with pytest.raises(StoreError, match="closed"):
        store.list_sessions()


# --- concurrency ----------------------------------------------------------------------

N_WRITES = 40


def _write_markers_in_child(path: str, session_id: str) -> None:
    # runs in a spawned process: the live recorder's role
    with SessionStore(path) as store:
        for index in range(N_WRITES):
            store.add_marker(session_id=session_id, kind="note", t_lsl_s=float(index))


def test_writer_process_and_reader_at_once(store: SessionStore) -> None:
    begin(store, "live")
    context = multiprocessing.get_context("spawn")
    writer = context.Process(target=_write_markers_in_child, args=(str(store.path), "live"))
    writer.start()
    seen: list[int] = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        seen.append(len(store.markers("live")))  # the CLI reader's role, never "locked"
        if seen[-1] == N_WRITES or not writer.is_alive():
            break
        time.sleep(0.005)
    writer.join(timeout=60)
    assert writer.exitcode == 0
    assert len(store.markers("live")) == N_WRITES
    assert seen == sorted(seen)  # each read is a consistent, growing snapshot


def test_threads_share_one_store(store: SessionStore) -> None:
    begin(store, "shared")
    errors: list[BaseException] = []

    def add(offset: int) -> None:
        try:
            for index in range(25):
                store.add_marker(session_id="shared", kind="note", t_lsl_s=offset + index)
        except BaseException as exc:  # surfaced by the assert below
            errors.append(exc)

    threads = [threading.Thread(target=add, args=(offset,)) for offset in (0, 100, 200)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len(store.markers("shared")) == 75


def test_reader_is_not_blocked_by_an_open_write_transaction(store: SessionStore) -> None:
    begin(store, "committed")
    other = sqlite3.connect(store.path, isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")
        other.execute(
            "INSERT INTO sessions (session_id, room, started_utc, started_lsl_s, file_path,"
            " settings_json, streams_json) VALUES ('pending', 'r', 'x', 0.0, '/p', '{}', '[]')"
        )
        with SessionStore(store.path, busy_timeout_s=0.2) as reader:
            started = time.monotonic()
            ids = [row.session_id for row in reader.list_sessions()]
            assert time.monotonic() - started < 0.2
        assert ids == ["committed"]  # the uncommitted row is invisible, not a lock error
    finally:
        other.execute("ROLLBACK")
        other.close()


def test_writer_locked_out_gets_a_clean_error(store: SessionStore) -> None:
    begin(store, "s")
    other = sqlite3.connect(store.path, isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")
        with SessionStore(store.path, busy_timeout_s=0.1) as second:
            with pytest.raises(StoreError, match="locked by another process") as info:
                second.add_marker(session_id="s", kind="note", t_lsl_s=1.0)
            assert str(store.path) in str(info.value)
            assert info.value.__cause__ is None and info.value.__suppress_context__
    finally:
        other.execute("ROLLBACK")
        other.close()
    assert store.markers("s") == ()  # nothing half-written


# --- damaged or foreign files ---------------------------------------------------------


def test_garbage_file_gives_a_clean_error(tmp_path: Path) -> None:
    path = tmp_path / "sessions.sqlite3"
    path.write_bytes(b"this is an XDF file, not SQLite\n" * 200)
    with pytest.raises(StoreError, match="not a readable session store") as info:
        SessionStore(path)
    message = str(info.value)
    assert message.startswith(f"{path}: ") and "move the file aside" in message
    assert info.value.__cause__ is None and info.value.__suppress_context__
    assert isinstance(info.value, DyadsyncError)


def test_corrupted_pages_give_a_clean_error(store_path: Path) -> None:
    with SessionStore(store_path) as store:
        begin(store)
    data = bytearray(store_path.read_bytes())
    # keep the 100-byte header (so SQLite recognises the file) and wreck the schema page
    data[100:4096] = b"\xff" * (4096 - 100)
    store_path.write_bytes(bytes(data))
    with (
        pytest.raises(StoreError, match="not a readable session store") as info,
        SessionStore(store_path) as store,
    ):
        store.list_sessions()
    assert str(store_path) in str(info.value)


def test_foreign_sqlite_database_is_not_adopted(tmp_path: Path) -> None:
    path = tmp_path / "other.sqlite3"
    raw = sqlite3.connect(path)
    raw.execute("CREATE TABLE photos (id INTEGER)")
    raw.commit()
    raw.close()
    with pytest.raises(StoreError, match="not a dyadsync session store"):
        SessionStore(path)
    raw = sqlite3.connect(path)
    assert raw.execute("PRAGMA user_version").fetchone()[0] == 0  # left as it was
    raw.close()


def test_newer_schema_is_refused(store_path: Path) -> None:
    SessionStore(store_path).close()
    raw = sqlite3.connect(store_path)
    raw.execute("PRAGMA user_version = 99")
    raw.commit()
    raw.close()
    with pytest.raises(StoreError, match=r"newer dyadsync \(schema 99"):
        SessionStore(store_path)


def test_empty_file_is_migrated_to_version_1(tmp_path: Path) -> None:
    path = tmp_path / "empty.sqlite3"
    path.touch()
    with SessionStore(path) as store:
        assert store.schema_version == 1
        begin(store)


# --- markers: undo --------------------------------------------------------------------


def test_undo_hides_a_marker_but_keeps_it(store: SessionStore) -> None:
    begin(store, "s")
    begin(store, "t")
    keep = store.add_marker(session_id="s", kind="repair", t_lsl_s=20.0)
    oops = store.add_marker(session_id="s", kind="intervention", t_lsl_s=10.0)
    later = T0 + timedelta(seconds=3)
    undone = store.undo_marker(session_id="s", marker_id=oops.marker_id, undone_utc=later)
    assert undone.is_undone and undone.undone_utc == later
    assert store.markers("s") == (keep,)
    assert store.markers("s", include_undone=True) == (undone, keep)
    with pytest.raises(StoreError, match="already undone"):
        store.undo_marker(session_id="s", marker_id=oops.marker_id)
    # a viewer of another session cannot undo this session's marker
    with pytest.raises(StoreError, match="session 't' has no marker"):
        store.undo_marker(session_id="t", marker_id=keep.marker_id)
    assert store.markers("s") == (keep,)


# --- removal --------------------------------------------------------------------------


def test_rows_and_files_stay_unless_removed(store_path: Path) -> None:
    with SessionStore(store_path) as store:
        row = begin(store)
        row.file_path.write_bytes(b"xdf")
        end(store)
    with SessionStore(store_path) as store:
        assert [r.session_id for r in store.list_sessions()] == [row.session_id]
    assert row.file_path.read_bytes() == b"xdf"


def test_remove_keeps_the_file_unless_asked(store: SessionStore) -> None:
    row = begin(store, "keep-file")
    row.file_path.write_bytes(b"xdf")
    store.add_marker(session_id="keep-file", kind="note", t_lsl_s=1.0)
    store.add_rating(session_id="keep-file", client_code="C1", instrument="SRS", items=[1] * 4)
    store.add_comment(session_id="keep-file", t_start_lsl_s=1.0, text="x")
    removed = store.remove_session("keep-file", delete_file=False)
    assert removed.session == row and removed.file_deleted is False
    assert row.file_path.read_bytes() == b"xdf"
    assert store.list_sessions() == ()
    with pytest.raises(SessionNotFoundError):
        store.get_session("keep-file")
    # annotations went with the row (ON DELETE CASCADE)
    assert store.ratings(client_code="C1") == ()
    with store._read("test") as conn:
        assert conn.execute("SELECT count(*) FROM markers").fetchone()[0] == 0
        assert conn.execute("SELECT count(*) FROM comments").fetchone()[0] == 0


def test_remove_with_delete_file(store: SessionStore) -> None:
    row = begin(store, "gone")
    row.file_path.write_bytes(b"xdf")
    other = begin(store, "other")
    other.file_path.write_bytes(b"other xdf")
    assert store.remove_session("gone", delete_file=True).file_deleted is True
    assert not row.file_path.exists()
    assert other.file_path.read_bytes() == b"other xdf"
    assert [r.session_id for r in store.list_sessions()] == ["other"]


def test_remove_with_file_already_gone(store: SessionStore) -> None:
    begin(store, "nofile")
    assert store.remove_session("nofile", delete_file=True).file_deleted is False
    assert store.list_sessions() == ()


def test_undeletable_file_keeps_the_row(store: SessionStore, tmp_path: Path) -> None:
    directory = tmp_path / "a-directory.xdf"
    directory.mkdir()
    begin(store, "dir", file_path=directory)
    with pytest.raises(StoreError, match="cannot delete") as info:
        store.remove_session("dir", delete_file=True)
    assert "was kept" in str(info.value)
    assert store.get_session("dir").file_path == directory
    assert directory.is_dir()


def test_remove_unknown_session(store: SessionStore) -> None:
    with pytest.raises(SessionNotFoundError, match="no session 'ghost'"):
        store.remove_session("ghost", delete_file=True)


def test_remove_requires_an_explicit_bool(store: SessionStore) -> None:
    begin(store, "s")
    with pytest.raises(ConfigError, match=r"\[delete_file\]"):
        store.remove_session("s", delete_file="yes")  # type: ignore[arg-type]
    assert store.get_session("s").session_id == "s"


# --- schema: no samples, no names ----------------------------------------------------

EXPECTED_COLUMNS = {
    "sessions": {
        "session_id",
        "room",
        "started_utc",
        "started_lsl_s",
        "file_path",
        "settings_json",
        "streams_json",
        "ended_utc",
        "duration_s",
        "file_sha256",
        "coregulation_json",
    },
    "markers": {"marker_id", "session_id", "kind", "t_lsl_s", "note", "created_utc", "undone_utc"},
    "ratings": {"rating_id", "session_id", "client_code", "instrument", "items_json", "rated_utc"},
    "comments": {
        "comment_id",
        "session_id",
        "t_start_lsl_s",
        "t_end_lsl_s",
        "author_code",
        "text",
        "created_utc",
    },
}


def test_schema_has_no_sample_or_name_columns(store: SessionStore) -> None:
    with store._read("test") as conn:
        tables = {
            row[0]
            for row in conn.execute(
                "SELECT name FROM sqlite_schema WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
            )
        }
        columns = {
            table: {row["name"]: row["type"] for row in conn.execute(f"PRAGMA table_info({table})")}
            for table in tables
        }
    # an exact list: a new column has to be added here on purpose
    assert {table: set(cols) for table, cols in columns.items()} == EXPECTED_COLUMNS
    every_column = [(name, kind) for cols in columns.values() for name, kind in cols.items()]
    assert all(kind in {"TEXT", "REAL", "INTEGER"} for _, kind in every_column)  # no BLOB
    for name, _ in every_column:
        assert not any(word in name for word in ("sample", "value", "signal", "data", "name"))


def test_sample_arrays_do_not_fit_in_metadata(store: SessionStore) -> None:
    samples = [0.123456789] * 60_000  # ~10 minutes of 100 Hz EDA
    with pytest.raises(ConfigError, match="samples belong in the XDF"):
        begin(store, settings={"eda": samples})
    assert store.list_sessions() == ()


# --- validation -----------------------------------------------------------------------


@pytest.mark.parametrize("room", ["Anna Smith", "", "x" * 33, "zoë", "room/2", 7, None])
def test_room_must_be_a_code(store: SessionStore, room: object) -> None:
    with pytest.raises(ConfigError) as info:
        begin(store, room=room)
    message = str(info.value)
    assert "[room]" in message and repr(room) in message and "A-Z a-z 0-9 _ -" in message
    assert store.list_sessions() == ()


@pytest.mark.parametrize("session_id", ["has space", "", "y" * 65, "a.b"])
def test_session_id_rule(store: SessionStore, session_id: str) -> None:
    with pytest.raises(ConfigError, match=r"\[session_id\]"):
        begin(store, session_id)


@pytest.mark.parametrize(
    ("overrides", "field", "fragment"),
    [
        ({"started_utc": datetime(2024, 5, 6, 14)}, "started_utc", "timezone-aware"),
        ({"started_utc": "2024-05-06"}, "started_utc", "timezone-aware"),
        ({"started_lsl_s": float("nan")}, "started_lsl_s", "nan"),
        ({"started_lsl_s": True}, "started_lsl_s", "True"),
        ({"settings": {"lag_s": float("inf")}}, "settings.lag_s", "use null"),
        ({"settings": {"lags": (1, 2)}}, "settings.lags", "tuple"),
        ({"settings": {1: "a"}}, "settings", "key 1 is not a string"),
        ({"settings": {"when": T0}}, "settings.when", "datetime"),
        ({"settings": ["not", "a", "dict"]}, "settings", "list is not a dict"),
        ({"streams": [{"name": "ok"}, "bad"]}, "streams[1]", "str is not a dict"),
        ({"streams": {"name": "x"}}, "streams", "not a list"),
        ({"file_path": ""}, "file_path", "not a file path"),
    ],
)
def test_begin_session_validation(
    store: SessionStore, overrides: dict[str, Any], field: str, fragment: str
) -> None:
    with pytest.raises(ConfigError) as info:
        begin(store, **overrides)
    assert f"[{field}]" in str(info.value) and fragment in str(info.value)
    assert store.list_sessions() == ()


@pytest.mark.parametrize(
    ("overrides", "field", "fragment"),
    [
        ({"duration_s": -1.0}, "duration_s", "below the allowed minimum"),
        ({"file_sha256": "AB" * 32}, "file_sha256", "64 lowercase hex"),
        ({"file_sha256": "ab"}, "file_sha256", "'ab'"),
        ({"coregulation": {"mean_episode_s": float("nan")}}, "coregulation.mean_episode_s", "nan"),
        ({"ended_utc": T0 - timedelta(seconds=1)}, "ended_utc", "before the session's start"),
    ],
)
def test_end_session_validation(
    store: SessionStore, overrides: dict[str, Any], field: str, fragment: str
) -> None:
    begin(store)
    with pytest.raises(ConfigError) as info:
        end(store, **overrides)
    assert f"[{field}]" in str(info.value) and fragment in str(info.value)
    assert store.list_sessions()[0].is_open  # unchanged


def test_session_state_errors(store: SessionStore, tmp_path: Path) -> None:
    begin(store, "s1")
    with pytest.raises(StoreError, match="session id is already catalogued"):
        begin(store, "s1", file_path=tmp_path / "new.xdf")
    with pytest.raises(StoreError, match="is already catalogued"):
        begin(store, "s2", file_path=store.get_session("s1").file_path)
    end(store, "s1")
    with pytest.raises(StoreError, match="already ended"):
        end(store, "s1")
    with pytest.raises(SessionNotFoundError, match="no session 'nope'"):
        end(store, "nope")
    with pytest.raises(SessionNotFoundError):
        store.add_marker(session_id="nope", kind="note", t_lsl_s=1.0)


@pytest.mark.parametrize(
    ("instrument", "items", "field", "fragment"),
    [
        ("SRS", [1, 2, 3], "items", "SRS has 4 items; got 3"),
        ("ORS", [1, 2, 3, 10.5], "items[3]", "ORS items are numbers from 0 to 10"),
        ("SRS", [1, 2, 3, -0.1], "items[3]", "-0.1"),
        ("SRS", [1, 2, 3, float("nan")], "items[3]", "nan"),
        ("SRS", [1, 2, 3, True], "items[3]", "True"),
        ("SRS", [1, 2, 3, "4"], "items[3]", "'4'"),
        ("WAI-SR", [3] * 11 + [2.5], "items[11]", "WAI-SR items are integers from 1 to 5"),
        ("WAI-SR", [3] * 11 + [0], "items[11]", "integers from 1 to 5"),
        ("WAI-SR", [3] * 4, "items", "WAI-SR has 12 items; got 4"),
        ("HAQ", [1, 2], "instrument", "allowed: SRS, ORS, WAI-SR"),
        ("SRS", "1234", "items", "not a sequence"),
    ],
)
def test_rating_validation(
    store: SessionStore, instrument: str, items: Any, field: str, fragment: str
) -> None:
    begin(store, "s")
    with pytest.raises(ConfigError) as info:
        store.add_rating(
            session_id="s",
            client_code="C1",
            instrument=instrument,  # type: ignore[arg-type]
            items=items,
        )
    assert f"[{field}]" in str(info.value) and fragment in str(info.value)
    assert store.ratings() == ()


def test_client_code_must_be_a_code(store: SessionStore) -> None:
    begin(store, "s")
    with pytest.raises(ConfigError, match=r"\[client_code\] 'Maria Rossi' is not a valid code"):
        store.add_rating(
            session_id="s", client_code="Maria Rossi", instrument="SRS", items=[1, 2, 3, 4]
        )


def test_marker_validation(store: SessionStore) -> None:
    begin(store, "s")
    with pytest.raises(ConfigError, match=r"\[kind\] 'alliance' is not a marker kind.*rupture"):
        store.add_marker(session_id="s", kind="alliance", t_lsl_s=1.0)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=r"\[t_lsl_s\] inf"):
        store.add_marker(session_id="s", kind="note", t_lsl_s=float("inf"))
    with pytest.raises(ConfigError, match=r"\[note\] is 501 characters long; at most 500"):
        store.add_marker(session_id="s", kind="note", t_lsl_s=1.0, note="n" * 501)
    with pytest.raises(ConfigError, match=r"\[marker_id\]"):
        store.undo_marker(session_id="s", marker_id="1")  # type: ignore[arg-type]
    assert store.markers("s", include_undone=True) == ()


def test_comment_validation(store: SessionStore) -> None:
    begin(store, "s")
    with pytest.raises(ConfigError, match=r"\[t_end_lsl_s\] 9.0 is below the allowed minimum 10"):
        store.add_comment(session_id="s", t_start_lsl_s=10.0, t_end_lsl_s=9.0, text="x")
    with pytest.raises(ConfigError, match=r"\[text\] is empty"):
        store.add_comment(session_id="s", t_start_lsl_s=10.0, text="   ")
    with pytest.raises(ConfigError, match=r"\[author_code\] 'Dr. Who'"):
        store.add_comment(session_id="s", t_start_lsl_s=10.0, text="x", author_code="Dr. Who")
    assert store.comments("s") == ()


def test_free_text_and_metadata_never_reach_the_log(
    store: SessionStore, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="server.store")
    begin(store, "s", settings={"secret_setting": 71.25})
    store.add_marker(session_id="s", kind="note", t_lsl_s=1.0, note="client mentions Anna")
    store.add_comment(session_id="s", t_start_lsl_s=1.0, text="Bob looked away")
    store.add_rating(session_id="s", client_code="C1", instrument="SRS", items=[9.75] * 4)
    end(store, "s", coregulation={"mean_hr_bpm": 88.5})
    logged = caplog.text
    assert caplog.records  # the store does log its actions...
    for private in ("Anna", "Bob", "71.25", "9.75", "88.5", "secret_setting"):
        assert private not in logged  # ...but never their content


# --- sha256 and presentation ----------------------------------------------------------


def test_sha256_file_streams_in_chunks(tmp_path: Path) -> None:
    path = tmp_path / "big.xdf"
    content = bytes(range(256)) * 4099  # not a multiple of the chunk size
    path.write_bytes(content)
    expected = hashlib.sha256(content).hexdigest()
    assert sha256_file(path, chunk_bytes=1000) == expected
    assert sha256_file(path) == expected


def test_sha256_of_unreadable_file(tmp_path: Path) -> None:
    with pytest.raises(RecordingError, match=r"missing\.xdf: cannot be read"):
        sha256_file(tmp_path / "missing.xdf")


def test_format_sessions_table(store: SessionStore) -> None:
    begin(store, "room-2_a")
    end(store, "room-2_a", duration_s=3725.4)
    begin(store, "room-2_b", started_utc=T0 + timedelta(days=1), streams=[])
    text = format_sessions(store.list_sessions())
    lines = text.splitlines()
    assert lines[0].split() == ["id", "room", "start", "UTC", "duration", "streams", "file"]
    assert lines[1].split()[:6] == ["room-2_a", "room-2", "2024-05-06", "14:00:00", "1:02:05", "2"]
    assert lines[2].split()[:6] == ["room-2_b", "room-2", "2024-05-07", "14:00:00", "open", "0"]
    assert lines[1].endswith("room-2_a.xdf")
    # aligned columns: each cell starts under its heading
    assert lines[0].index("duration") == lines[1].index("1:02:05") == lines[2].index("open")
    assert lines[0].index("file") == lines[1].index("/") == lines[2].index("/")
    assert format_sessions(()) == "no sessions catalogued"


def test_sessions_json_has_every_field(store: SessionStore) -> None:
    begin(store, "a")
    end(store, "a")
    begin(store, "b", started_utc=T0 + timedelta(hours=1))
    documents = json.loads(sessions_json(store.list_sessions()))
    assert [doc["session_id"] for doc in documents] == ["a", "b"]
    first, second = documents
    assert first["started_utc"] == "2024-05-06T14:00:00.123456Z"
    assert first["ended_utc"] == "2024-05-06T14:50:00.123456Z"
    assert first["settings"] == SETTINGS and first["streams"] == STREAMS
    assert first["coregulation"] == COREG and first["file_sha256"] == SHA
    assert second["ended_utc"] is None and second["duration_s"] is None
    assert set(first) == set(SessionRow.__dataclass_fields__)
    assert sessions_json([]) == "[]"

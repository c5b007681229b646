"""The session store: an embedded SQLite catalogue of recorded sessions and their annotations.

One row per session (room, start/end, duration, XDF file path and sha256, streams, settings,
coregulation summary) plus the annotations made during or after it: clinician markers,
alliance ratings and supervisor comments. It holds **no physiological samples** (those stay in
the XDF file) and **no names**: rooms, clients and authors are identified by *codes*.

Codes (room, client, author) must match ``[A-Za-z0-9_-]{1,32}`` (session ids the same
alphabet, up to 64 characters, so ``<room>_<UTC stamp>`` fits). The rule keeps free text
(spaces, punctuation, accents) out of identifier columns; it cannot tell a pseudonym from a
first name, so operators must still use codes such as ``C017`` rather than ``anna``.

Concurrency: the database is in WAL mode, so the live recorder writes while ``dyadsync
sessions`` (another process) reads; writers take the lock up front (``BEGIN IMMEDIATE``) and
wait up to ``busy_timeout_s`` for each other. One :class:`SessionStore` may be shared by the
threads of one process (e.g. ``asyncio.to_thread``); its calls are serialised.

Every sqlite3 error is translated into :class:`StoreError` naming the database file; invalid
arguments raise :class:`~dsp.exceptions.ConfigError` naming the field, the bad value and what
is allowed. A session's row (with its annotations) and its file are removed only by
:meth:`SessionStore.remove_session`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import re
import sqlite3
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final, Literal, cast

from dsp.exceptions import ConfigError, DyadsyncError
from server.closing import ClosedOnExit
from streamer.errors import RecordingError

__all__ = [
    "COMMENT_MAX_CHARS",
    "INSTRUMENTS",
    "MARKER_KINDS",
    "NOTE_MAX_CHARS",
    "SCHEMA_VERSION",
    "CommentRow",
    "Instrument",
    "InstrumentSpec",
    "MarkerKind",
    "MarkerRow",
    "RatingRow",
    "RemovedSession",
    "SessionNotFoundError",
    "SessionRow",
    "SessionStore",
    "StoreError",
    "default_store_path",
    "format_sessions",
    "sessions_json",
    "sha256_file",
]

log = logging.getLogger(__name__)

STORE_ENV: Final = "DYADSYNC_STORE"
DEFAULT_STORE_PATH: Final = Path("~/.local/share/dyadsync/sessions.sqlite3")

CODE_RULE: Final = "1-32 characters from A-Z a-z 0-9 _ - (a code, not a name)"
_CODE_RE: Final = re.compile(r"[A-Za-z0-9_-]{1,32}")
SESSION_ID_RULE: Final = "1-64 characters from A-Z a-z 0-9 _ -"
_SESSION_ID_RE: Final = re.compile(r"[A-Za-z0-9_-]{1,64}")
_SHA256_RE: Final = re.compile(r"[0-9a-f]{64}")

MarkerKind = Literal["rupture", "repair", "intervention", "note"]
MARKER_KINDS: Final[tuple[MarkerKind, ...]] = ("rupture", "repair", "intervention", "note")

NOTE_MAX_CHARS: Final = 500
COMMENT_MAX_CHARS: Final = 4000
# settings / streams / coregulation are metadata; a cap keeps sample arrays from being
# smuggled into the catalogue (they belong in the XDF) and keeps `dyadsync sessions` fast.
JSON_MAX_BYTES: Final = 256 * 1024

Instrument = Literal["SRS", "ORS", "WAI-SR"]


@dataclass(frozen=True, slots=True)
class InstrumentSpec:
    """How many items an alliance/outcome instrument has and what each item may score."""

    n_items: int
    lowest: float
    highest: float
    integer_items: bool


# SRS and ORS (Duncan, Miller et al. 2003) are 10 cm visual-analogue lines scored to the
# millimetre, hence real numbers 0-10; WAI-SR (Hatcher & Gillaspy 2006) is a 12-item 5-point
# Likert scale, hence integers 1-5.
INSTRUMENTS: Final[Mapping[Instrument, InstrumentSpec]] = {
    "SRS": InstrumentSpec(n_items=4, lowest=0.0, highest=10.0, integer_items=False),
    "ORS": InstrumentSpec(n_items=4, lowest=0.0, highest=10.0, integer_items=False),
    "WAI-SR": InstrumentSpec(n_items=12, lowest=1, highest=5, integer_items=True),
}


class StoreError(DyadsyncError):
    """The session store cannot be opened, read or written (corrupt, locked, newer schema),
    or an operation contradicts what it holds (session exists, marker already undone).

    ``path`` is the database file.
    """

    def __init__(self, message: str, *, path: Path) -> None:
        super().__init__(f"{path}: {message}")
        self.path = path


class SessionNotFoundError(StoreError):
    """No session with the given id is catalogued."""


# ---------------------------------------------------------------------------------------
# Rows


@dataclass(frozen=True, slots=True)
class SessionRow:
    """One catalogued session. ``ended_utc``/``duration_s``/``file_sha256``/``coregulation``
    are ``None`` while it is open (recording, or the recorder died before ending it)."""

    session_id: str
    room: str
    started_utc: datetime
    started_lsl_s: float
    file_path: Path
    settings: dict[str, Any]
    streams: tuple[dict[str, Any], ...]
    ended_utc: datetime | None
    duration_s: float | None
    file_sha256: str | None
    coregulation: dict[str, Any] | None

    @property
    def is_open(self) -> bool:
        return self.ended_utc is None


@dataclass(frozen=True, slots=True)
class MarkerRow:
    """A clinician marker at ``t_lsl_s`` (session LSL clock); ``undone_utc`` set once undone."""

    marker_id: int
    session_id: str
    kind: MarkerKind
    t_lsl_s: float
    note: str
    created_utc: datetime
    undone_utc: datetime | None

    @property
    def is_undone(self) -> bool:
        return self.undone_utc is not None


@dataclass(frozen=True, slots=True)
class RatingRow:
    """One administration of an instrument (SRS, ORS or WAI-SR) by a client code."""

    rating_id: int
    session_id: str
    client_code: str
    instrument: Instrument
    items: tuple[float, ...]
    rated_utc: datetime

    @property
    def total(self) -> float:
        return math.fsum(self.items)


@dataclass(frozen=True, slots=True)
class CommentRow:
    """A supervisor comment at a time (``t_end_lsl_s is None``) or over a span."""

    comment_id: int
    session_id: str
    t_start_lsl_s: float
    t_end_lsl_s: float | None
    author_code: str | None
    text: str
    created_utc: datetime


@dataclass(frozen=True, slots=True)
class RemovedSession:
    """What :meth:`SessionStore.remove_session` removed. ``file_deleted`` is False when the
    file was kept (``delete_file=False``) or was already gone."""

    session: SessionRow
    file_deleted: bool


# ---------------------------------------------------------------------------------------
# Schema. Each step migrates version i to i+1 and must never change once released: a
# database created by an old dyadsync is brought forward by running the later steps.
# Marker kinds and instruments are validated in Python, not by SQL CHECKs, because SQLite
# cannot alter a CHECK without rebuilding the table; adding a kind then needs no migration.

_SCHEMA_V1: Final = (
    """CREATE TABLE sessions (
        session_id        TEXT PRIMARY KEY,
        room              TEXT NOT NULL,
        started_utc       TEXT NOT NULL,
        started_lsl_s     REAL NOT NULL,
        file_path         TEXT NOT NULL UNIQUE,
        settings_json     TEXT NOT NULL,
        streams_json      TEXT NOT NULL,
        ended_utc         TEXT,
        duration_s        REAL,
        file_sha256       TEXT,
        coregulation_json TEXT
    ) STRICT""",
    "CREATE INDEX sessions_by_start ON sessions (started_utc)",
    """CREATE TABLE markers (
        marker_id   INTEGER PRIMARY KEY,
        session_id  TEXT NOT NULL REFERENCES sessions (session_id) ON DELETE CASCADE,
        kind        TEXT NOT NULL,
        t_lsl_s     REAL NOT NULL,
        note        TEXT NOT NULL,
        created_utc TEXT NOT NULL,
        undone_utc  TEXT
    ) STRICT""",
    "CREATE INDEX markers_by_session ON markers (session_id, t_lsl_s)",
    """CREATE TABLE ratings (
        rating_id   INTEGER PRIMARY KEY,
        session_id  TEXT NOT NULL REFERENCES sessions (session_id) ON DELETE CASCADE,
        client_code TEXT NOT NULL,
        instrument  TEXT NOT NULL,
        items_json  TEXT NOT NULL,
        rated_utc   TEXT NOT NULL
    ) STRICT""",
    "CREATE INDEX ratings_by_session ON ratings (session_id)",
    "CREATE INDEX ratings_by_client ON ratings (client_code)",
    """CREATE TABLE comments (
        comment_id    INTEGER PRIMARY KEY,
        session_id    TEXT NOT NULL REFERENCES sessions (session_id) ON DELETE CASCADE,
        t_start_lsl_s REAL NOT NULL,
        t_end_lsl_s   REAL,
        author_code   TEXT,
        text          TEXT NOT NULL,
        created_utc   TEXT NOT NULL,
        CHECK (t_end_lsl_s IS NULL OR t_end_lsl_s >= t_start_lsl_s)
    ) STRICT""",
    "CREATE INDEX comments_by_session ON comments (session_id, t_start_lsl_s)",
)


def _migrate_0_to_1(conn: sqlite3.Connection) -> None:
    for statement in _SCHEMA_V1:
        conn.execute(statement)


_MIGRATIONS: Final[tuple[Callable[[sqlite3.Connection], None], ...]] = (_migrate_0_to_1,)
SCHEMA_VERSION: Final = len(_MIGRATIONS)
# STRICT tables (typed columns, so a float never lands in a TEXT column unnoticed).
_MIN_SQLITE: Final = (3, 37, 0)


# ---------------------------------------------------------------------------------------
# Validation and encoding (pure functions; each error names the field)


def check_code(value: object, *, field: str) -> str:
    """``value`` if it is a code (:data:`CODE_RULE`), else ConfigError naming ``field``."""
    if not isinstance(value, str) or _CODE_RE.fullmatch(value) is None:
        raise ConfigError(f"{value!r} is not a valid code; allowed: {CODE_RULE}", key=field)
    return value


def _check_session_id(value: object) -> str:
    if not isinstance(value, str) or _SESSION_ID_RE.fullmatch(value) is None:
        raise ConfigError(
            f"{value!r} is not a valid session id; allowed: {SESSION_ID_RULE}", key="session_id"
        )
    return value


def _check_finite(value: object, *, field: str, minimum: float | None = None) -> float:
    # bool is an int; True as a time or duration is a caller bug, not 1.0
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ConfigError(f"{value!r} is not a finite number of seconds", key=field)
    if minimum is not None and value < minimum:
        raise ConfigError(f"{value!r} is below the allowed minimum {minimum}", key=field)
    return float(value)


def _check_text(value: object, *, field: str, max_chars: int, required: bool) -> str:
    if not isinstance(value, str):
        raise ConfigError(f"{value!r} is not text", key=field)
    if required and not value.strip():
        raise ConfigError("is empty; text is required here", key=field)
    if len(value) > max_chars:
        raise ConfigError(
            f"is {len(value)} characters long; at most {max_chars} are allowed", key=field
        )
    if "\x00" in value:
        raise ConfigError("contains a NUL character; remove it", key=field)
    return value


def _encode_utc(value: object, *, field: str) -> str:
    """Fixed-width ISO 8601 in UTC (``...Z``), so text order is time order in SQL."""
    if not isinstance(value, datetime) or value.utcoffset() is None:
        raise ConfigError(
            f"{value!r} is not a timezone-aware datetime; pass e.g. datetime.now(UTC)", key=field
        )
    return value.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def _decode_utc(text: str) -> datetime:
    return datetime.fromisoformat(text)


def _now_utc() -> datetime:
    return datetime.now(UTC)


def _check_json_value(value: object, *, field: str) -> None:
    """Reject what JSON would change on the way back (tuples, non-str keys) or cannot hold
    (NaN, inf, objects), so what is stored is exactly what :class:`SessionRow` returns."""
    if value is None or isinstance(value, bool | int | str):
        return
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ConfigError(
                f"{value!r} cannot be stored as JSON; use null for a missing number", key=field
            )
        return
    if isinstance(value, list):
        for index, item in enumerate(value):
            _check_json_value(item, field=f"{field}[{index}]")
        return
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise ConfigError(f"key {key!r} is not a string; JSON keys are strings", key=field)
            _check_json_value(item, field=f"{field}.{key}")
        return
    raise ConfigError(
        f"{type(value).__name__} {value!r} is not JSON (allowed: dict with str keys, list, str, "
        "int, finite float, bool, None)",
        key=field,
    )


def _encode_json(value: object, *, field: str) -> str:
    _check_json_value(value, field=field)
    text = json.dumps(value, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    size = len(text.encode("utf-8"))
    if size > JSON_MAX_BYTES:
        raise ConfigError(
            f"is {size} bytes of JSON; at most {JSON_MAX_BYTES} are allowed (samples belong in "
            "the XDF file, not the session store)",
            key=field,
        )
    return text


def _check_dict(value: object, *, field: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ConfigError(f"{type(value).__name__} is not a dict", key=field)
    return value


def _check_items(instrument: object, items: object) -> tuple[Instrument, tuple[float, ...]]:
    if not isinstance(instrument, str) or instrument not in INSTRUMENTS:
        raise ConfigError(
            f"{instrument!r} is not a known instrument; allowed: {', '.join(INSTRUMENTS)}",
            key="instrument",
        )
    name = cast(Instrument, instrument)  # membership checked above
    spec = INSTRUMENTS[name]
    if not isinstance(items, Sequence) or isinstance(items, str):
        raise ConfigError(f"{items!r} is not a sequence of item scores", key="items")
    if len(items) != spec.n_items:
        raise ConfigError(
            f"{name} has {spec.n_items} items; got {len(items)}: {list(items)!r}", key="items"
        )
    kind = "integers" if spec.integer_items else "numbers"
    allowed = f"{name} items are {kind} from {spec.lowest:g} to {spec.highest:g}"
    scores: list[float] = []
    for index, score in enumerate(items):
        ok_type = not isinstance(score, bool) and isinstance(score, int | float)
        if spec.integer_items:
            ok_type = ok_type and float(score).is_integer()
        if not ok_type or not math.isfinite(score) or not spec.lowest <= score <= spec.highest:
            raise ConfigError(f"{score!r} is not allowed; {allowed}", key=f"items[{index}]")
        scores.append(int(score) if spec.integer_items else float(score))
    return name, tuple(scores)


# ---------------------------------------------------------------------------------------
# Paths and files


def default_store_path(environ: Mapping[str, str] | None = None) -> Path:
    """``$DYADSYNC_STORE`` if set, else ``~/.local/share/dyadsync/sessions.sqlite3``."""
    env = os.environ if environ is None else environ
    configured = env.get(STORE_ENV)
    return Path(configured).expanduser() if configured else DEFAULT_STORE_PATH.expanduser()


def sha256_file(path: str | os.PathLike[str], *, chunk_bytes: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in ``chunk_bytes`` pieces so a multi-GB recording is never
    held in memory. Raises :class:`~streamer.errors.RecordingError` if it cannot be read."""
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as handle:
            while chunk := handle.read(chunk_bytes):
                digest.update(chunk)
    except OSError as exc:
        raise RecordingError(
            f"{os.fspath(path)}: cannot be read for its checksum ({exc.strerror or exc})"
        ) from None
    return digest.hexdigest()


def _prepare_file(path: Path, *, create: bool) -> None:
    """Create the directory 0700 and the database file 0600 before SQLite opens it: SQLite
    would create the file with the umask's mode, and its -wal/-shm files copy the main
    file's mode, so setting it here covers all three. Existing files keep their mode."""
    if path.exists():
        return
    if not create:
        raise StoreError(
            "no session store here; record a session first or set $DYADSYNC_STORE", path=path
        )
    try:
        if not path.parent.is_dir():
            path.parent.mkdir(mode=0o700, parents=True)
            os.chmod(path.parent, 0o700)  # mkdir's mode is reduced by the umask
        fd = os.open(path, os.O_CREAT | os.O_WRONLY, 0o600)
        os.close(fd)
        os.chmod(path, 0o600)
    except OSError as exc:
        raise StoreError(
            f"cannot create the session store ({exc.strerror or exc})", path=path
        ) from None


# ---------------------------------------------------------------------------------------
# The store

_SESSION_COLUMNS: Final = (
    "session_id, room, started_utc, started_lsl_s, file_path, settings_json, streams_json, "
    "ended_utc, duration_s, file_sha256, coregulation_json"
)
_MARKER_COLUMNS: Final = "marker_id, session_id, kind, t_lsl_s, note, created_utc, undone_utc"
_RATING_COLUMNS: Final = "rating_id, session_id, client_code, instrument, items_json, rated_utc"
_COMMENT_COLUMNS: Final = (
    "comment_id, session_id, t_start_lsl_s, t_end_lsl_s, author_code, text, created_utc"
)


def _session_row(row: sqlite3.Row) -> SessionRow:
    ended = row["ended_utc"]
    coregulation = row["coregulation_json"]
    return SessionRow(
        session_id=row["session_id"],
        room=row["room"],
        started_utc=_decode_utc(row["started_utc"]),
        started_lsl_s=row["started_lsl_s"],
        file_path=Path(row["file_path"]),
        settings=json.loads(row["settings_json"]),
        streams=tuple(json.loads(row["streams_json"])),
        ended_utc=None if ended is None else _decode_utc(ended),
        duration_s=row["duration_s"],
        file_sha256=row["file_sha256"],
        coregulation=None if coregulation is None else json.loads(coregulation),
    )


def _marker_row(row: sqlite3.Row) -> MarkerRow:
    undone = row["undone_utc"]
    return MarkerRow(
        marker_id=row["marker_id"],
        session_id=row["session_id"],
        kind=row["kind"],
        t_lsl_s=row["t_lsl_s"],
        note=row["note"],
        created_utc=_decode_utc(row["created_utc"]),
        undone_utc=None if undone is None else _decode_utc(undone),
    )


def _rating_row(row: sqlite3.Row) -> RatingRow:
    return RatingRow(
        rating_id=row["rating_id"],
        session_id=row["session_id"],
        client_code=row["client_code"],
        instrument=row["instrument"],
        items=tuple(json.loads(row["items_json"])),
        rated_utc=_decode_utc(row["rated_utc"]),
    )


def _comment_row(row: sqlite3.Row) -> CommentRow:
    return CommentRow(
        comment_id=row["comment_id"],
        session_id=row["session_id"],
        t_start_lsl_s=row["t_start_lsl_s"],
        t_end_lsl_s=row["t_end_lsl_s"],
        author_code=row["author_code"],
        text=row["text"],
        created_utc=_decode_utc(row["created_utc"]),
    )


class SessionStore(ClosedOnExit):
    """The session catalogue in one SQLite file. Use as a context manager (or call
    :meth:`close`).

    ``path`` defaults to :func:`default_store_path`. With ``create=False`` a missing file is
    a :class:`StoreError` instead of a new empty store (for readers such as ``dyadsync
    sessions``, so a mistyped path is not silently an empty catalogue). ``busy_timeout_s`` is
    how long a call waits for another process's write lock before giving up.
    """

    def __init__(
        self,
        path: str | os.PathLike[str] | None = None,
        *,
        create: bool = True,
        busy_timeout_s: float = 5.0,
    ) -> None:
        self.path = Path(path).expanduser() if path is not None else default_store_path()
        self._busy_timeout_s = _check_finite(busy_timeout_s, field="busy_timeout_s", minimum=0)
        self._lock = threading.Lock()
        if sqlite3.sqlite_version_info < _MIN_SQLITE:
            raise StoreError(
                f"SQLite {sqlite3.sqlite_version} is too old; the session store needs "
                f"{'.'.join(map(str, _MIN_SQLITE))} or newer",
                path=self.path,
            )
        _prepare_file(self.path, create=create)
        self._conn: sqlite3.Connection | None = None
        with self._translate("opening"):
            # isolation_level=None: we issue BEGIN IMMEDIATE ourselves, so a writer takes the
            # lock before reading (a deferred read-then-write transaction in WAL mode fails
            # with SQLITE_BUSY at once instead of waiting). check_same_thread=False: calls are
            # serialised by self._lock, so worker threads may share the connection.
            conn = sqlite3.connect(
                self.path,
                timeout=self._busy_timeout_s,
                isolation_level=None,
                check_same_thread=False,
            )
            try:
                conn.row_factory = sqlite3.Row
                conn.execute(f"PRAGMA busy_timeout = {round(self._busy_timeout_s * 1000)}")
                conn.execute("PRAGMA foreign_keys = ON")
                mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
                if mode != "wal":
                    raise StoreError(
                        f"cannot switch to WAL journal mode (got {mode!r}); is the file on a "
                        "network file system? Put the store on a local disk",
                        path=self.path,
                    )
                # NORMAL is durable across application crashes in WAL mode; only a power loss
                # can lose the last commits, and the XDF file is the primary record anyway.
                conn.execute("PRAGMA synchronous = NORMAL")
                self._migrate(conn)
            except BaseException:
                conn.close()
                raise
        self._conn = conn

    # -- lifecycle -------------------------------------------------------------------------

    def close(self) -> None:
        """Close the connection (idempotent)."""
        with self._lock:
            if self._conn is not None:
                conn, self._conn = self._conn, None
                with self._translate("closing"):
                    conn.close()

    @property
    def schema_version(self) -> int:
        with self._read("reading the schema version") as conn:
            version: int = conn.execute("PRAGMA user_version").fetchone()[0]
            return version

    # -- plumbing --------------------------------------------------------------------------

    @contextmanager
    def _translate(self, action: str) -> Iterator[None]:
        """sqlite3 errors -> one StoreError naming the file, the action and what to do."""
        try:
            yield
        except sqlite3.Error as exc:
            code = getattr(exc, "sqlite_errorname", "")
            if code.startswith(("SQLITE_BUSY", "SQLITE_LOCKED")):
                message = (
                    f"the session store is locked by another process (waited "
                    f"{self._busy_timeout_s:g} s) while {action}; retry when the other "
                    "dyadsync process has finished"
                )
            elif code.startswith(("SQLITE_NOTADB", "SQLITE_CORRUPT")):
                message = (
                    f"is not a readable session store ({exc}) while {action}; move the file "
                    "aside to start a new catalogue (recordings are not affected; they are "
                    "separate XDF files)"
                )
            else:
                message = f"SQLite error while {action}: {exc}"
            raise StoreError(message, path=self.path) from None

    def _migrate(self, conn: sqlite3.Connection) -> None:
        # The common case (already current) needs no write lock, so a reader opening the
        # store while the recorder writes does not queue behind it.
        if conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION:
            return
        conn.execute("BEGIN IMMEDIATE")
        try:
            # re-read under the lock: another process may have migrated in the meantime
            version: int = conn.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise StoreError(
                    f"was written by a newer dyadsync (schema {version}; this one knows up to "
                    f"{SCHEMA_VERSION}); upgrade dyadsync",
                    path=self.path,
                )
            if version == 0:
                foreign = conn.execute(
                    "SELECT count(*) FROM sqlite_schema WHERE name NOT LIKE 'sqlite_%'"
                ).fetchone()[0]
                if foreign:
                    raise StoreError(
                        "is an SQLite database but not a dyadsync session store; choose "
                        "another path ($DYADSYNC_STORE)",
                        path=self.path,
                    )
            for step in _MIGRATIONS[version:]:
                step(conn)
            # PRAGMA takes no parameters; SCHEMA_VERSION is our own int constant.
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            conn.commit()
        except BaseException:
            if conn.in_transaction:
                conn.rollback()
            raise
        if version < SCHEMA_VERSION:
            log.info(
                "session store %s migrated from schema %d to %d",
                self.path,
                version,
                SCHEMA_VERSION,
            )

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            raise StoreError("the session store is closed; open a new SessionStore", path=self.path)
        return self._conn

    @contextmanager
    def _read(self, action: str) -> Iterator[sqlite3.Connection]:
        with self._lock, self._translate(action):
            yield self._connection()

    @contextmanager
    def _write(self, action: str) -> Iterator[sqlite3.Connection]:
        """One IMMEDIATE transaction: committed if the block finishes, rolled back if not."""
        with self._lock, self._translate(action):
            conn = self._connection()
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
                conn.commit()
            except BaseException:
                # also when COMMIT itself fails: never leave the lock held
                if conn.in_transaction:
                    conn.rollback()
                raise

    def _require_session(self, conn: sqlite3.Connection, session_id: str) -> sqlite3.Row:
        row: sqlite3.Row | None = conn.execute(
            f"SELECT {_SESSION_COLUMNS} FROM sessions WHERE session_id = ?", (session_id,)
        ).fetchone()
        if row is None:
            raise SessionNotFoundError(
                f"no session {session_id!r}; `dyadsync sessions` lists the catalogued ones",
                path=self.path,
            )
        return row

    # -- sessions --------------------------------------------------------------------------

    def begin_session(
        self,
        *,
        session_id: str,
        room: str,
        started_utc: datetime,
        started_lsl_s: float,
        file_path: str | os.PathLike[str],
        settings: Mapping[str, Any],
        streams: Sequence[Mapping[str, Any]],
    ) -> SessionRow:
        """Catalogue a session as it starts. ``file_path`` (made absolute) is the XDF file;
        ``settings`` and each of ``streams`` are JSON-able metadata dicts (no samples)."""
        _check_session_id(session_id)
        check_code(room, field="room")
        started_text = _encode_utc(started_utc, field="started_utc")
        _check_finite(started_lsl_s, field="started_lsl_s")
        if not isinstance(file_path, str | os.PathLike) or not os.fspath(file_path):
            raise ConfigError(f"{file_path!r} is not a file path", key="file_path")
        absolute = Path(file_path).expanduser().absolute()
        settings_text = _encode_json(_check_dict(settings, field="settings"), field="settings")
        if not isinstance(streams, list | tuple):
            raise ConfigError(f"{type(streams).__name__} is not a list of dicts", key="streams")
        for index, stream in enumerate(streams):
            _check_dict(stream, field=f"streams[{index}]")
        streams_text = _encode_json(list(streams), field="streams")
        with self._write("beginning a session") as conn:
            clash = conn.execute(
                "SELECT session_id FROM sessions WHERE session_id = ? OR file_path = ?",
                (session_id, str(absolute)),
            ).fetchone()
            if clash is not None:
                what = "session id" if clash[0] == session_id else f"file {absolute}"
                raise StoreError(
                    f"{what} is already catalogued (session {clash[0]!r}); a session is never "
                    "overwritten: use a new session id and file",
                    path=self.path,
                )
            conn.execute(
                "INSERT INTO sessions (session_id, room, started_utc, started_lsl_s, file_path,"
                " settings_json, streams_json) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    session_id,
                    room,
                    started_text,
                    float(started_lsl_s),
                    str(absolute),
                    settings_text,
                    streams_text,
                ),
            )
            row = _session_row(self._require_session(conn, session_id))
        log.info("session %s begun (room %s)", session_id, room)
        return row

    def end_session(
        self,
        *,
        session_id: str,
        ended_utc: datetime,
        duration_s: float,
        file_sha256: str,
        coregulation: Mapping[str, Any],
    ) -> SessionRow:
        """Close an open session with its duration, the finished file's sha256 (see
        :func:`sha256_file`) and the coregulation summary. A session is ended once."""
        _check_session_id(session_id)
        ended_text = _encode_utc(ended_utc, field="ended_utc")
        _check_finite(duration_s, field="duration_s", minimum=0.0)
        if not isinstance(file_sha256, str) or _SHA256_RE.fullmatch(file_sha256) is None:
            raise ConfigError(
                f"{file_sha256!r} is not a sha256; allowed: 64 lowercase hex digits",
                key="file_sha256",
            )
        coregulation_text = _encode_json(
            _check_dict(coregulation, field="coregulation"), field="coregulation"
        )
        with self._write("ending a session") as conn:
            current = _session_row(self._require_session(conn, session_id))
            if not current.is_open:
                raise StoreError(
                    f"session {session_id!r} already ended at {current.ended_utc}; it is ended "
                    "only once",
                    path=self.path,
                )
            if ended_utc < current.started_utc:
                raise ConfigError(
                    f"{ended_utc.isoformat()} is before the session's start "
                    f"{current.started_utc.isoformat()}",
                    key="ended_utc",
                )
            conn.execute(
                "UPDATE sessions SET ended_utc = ?, duration_s = ?, file_sha256 = ?,"
                " coregulation_json = ? WHERE session_id = ?",
                (ended_text, float(duration_s), file_sha256, coregulation_text, session_id),
            )
            row = _session_row(self._require_session(conn, session_id))
        log.info("session %s ended (%.0f s)", session_id, duration_s)
        return row

    def list_sessions(self, *, room: str | None = None) -> tuple[SessionRow, ...]:
        """Every session (of ``room`` if given), oldest first."""
        where, params = "", []
        if room is not None:
            where, params = "WHERE room = ?", [check_code(room, field="room")]
        with self._read("listing sessions") as conn:
            rows = conn.execute(
                f"SELECT {_SESSION_COLUMNS} FROM sessions {where} ORDER BY started_utc, session_id",
                params,
            ).fetchall()
            return tuple(_session_row(row) for row in rows)

    def get_session(self, session_id: str) -> SessionRow:
        """The session; :class:`SessionNotFoundError` if it is not catalogued."""
        _check_session_id(session_id)
        with self._read("reading a session") as conn:
            return _session_row(self._require_session(conn, session_id))

    def remove_session(self, session_id: str, *, delete_file: bool) -> RemovedSession:
        """Remove a session's row and its markers, ratings and comments; with
        ``delete_file=True`` also its XDF file. Nothing else ever removes either.

        The row is removed in the same transaction as the file: if the file cannot be
        deleted (permissions, a directory), the row stays and :class:`StoreError` is raised.
        """
        _check_session_id(session_id)
        if not isinstance(delete_file, bool):
            raise ConfigError(f"{delete_file!r} is not True or False", key="delete_file")
        file_deleted = False
        with self._write("removing a session") as conn:
            session = _session_row(self._require_session(conn, session_id))
            conn.execute("DELETE FROM sessions WHERE session_id = ?", (session_id,))
            if delete_file:
                try:
                    session.file_path.unlink()
                    file_deleted = True
                except FileNotFoundError:
                    pass  # already gone: the row is still removed, reported via file_deleted
                except OSError as exc:
                    raise StoreError(
                        f"cannot delete {session.file_path} ({exc.strerror or exc}); session "
                        f"{session_id!r} was kept",
                        path=self.path,
                    ) from None
        log.info("session %s removed (file deleted: %s)", session_id, file_deleted)
        return RemovedSession(session=session, file_deleted=file_deleted)

    # -- markers ---------------------------------------------------------------------------

    def add_marker(
        self,
        *,
        session_id: str,
        kind: MarkerKind,
        t_lsl_s: float,
        note: str = "",
        created_utc: datetime | None = None,
    ) -> MarkerRow:
        """A marker of ``kind`` (one of :data:`MARKER_KINDS`) at ``t_lsl_s`` on the session's
        LSL clock. ``note`` is optional free text (at most :data:`NOTE_MAX_CHARS`; never
        logged); it must not name anyone."""
        _check_session_id(session_id)
        if kind not in MARKER_KINDS:
            raise ConfigError(
                f"{kind!r} is not a marker kind; allowed: {', '.join(MARKER_KINDS)}", key="kind"
            )
        _check_finite(t_lsl_s, field="t_lsl_s")
        _check_text(note, field="note", max_chars=NOTE_MAX_CHARS, required=False)
        created = _encode_utc(
            _now_utc() if created_utc is None else created_utc, field="created_utc"
        )
        with self._write("adding a marker") as conn:
            self._require_session(conn, session_id)
            cursor = conn.execute(
                "INSERT INTO markers (session_id, kind, t_lsl_s, note, created_utc)"
                " VALUES (?, ?, ?, ?, ?)",
                (session_id, kind, float(t_lsl_s), note, created),
            )
            row = conn.execute(
                f"SELECT {_MARKER_COLUMNS} FROM markers WHERE marker_id = ?",
                (cursor.lastrowid,),
            ).fetchone()
        log.info("marker %s (%s) added to session %s", cursor.lastrowid, kind, session_id)
        return _marker_row(row)

    def undo_marker(
        self, *, session_id: str, marker_id: int, undone_utc: datetime | None = None
    ) -> MarkerRow:
        """Soft-delete a marker: it keeps its row (an audit trail of what was shown live) but
        :meth:`markers` no longer lists it unless ``include_undone=True``. The marker must
        belong to ``session_id`` and not be undone already."""
        _check_session_id(session_id)
        if isinstance(marker_id, bool) or not isinstance(marker_id, int):
            raise ConfigError(f"{marker_id!r} is not a marker id (an int)", key="marker_id")
        undone = _encode_utc(_now_utc() if undone_utc is None else undone_utc, field="undone_utc")
        with self._write("undoing a marker") as conn:
            self._require_session(conn, session_id)
            found = conn.execute(
                f"SELECT {_MARKER_COLUMNS} FROM markers WHERE marker_id = ? AND session_id = ?",
                (marker_id, session_id),
            ).fetchone()
            if found is None:
                raise StoreError(
                    f"session {session_id!r} has no marker {marker_id}", path=self.path
                )
            if found["undone_utc"] is not None:
                raise StoreError(
                    f"marker {marker_id} of session {session_id!r} was already undone at "
                    f"{found['undone_utc']}",
                    path=self.path,
                )
            conn.execute(
                "UPDATE markers SET undone_utc = ? WHERE marker_id = ?", (undone, marker_id)
            )
            row = conn.execute(
                f"SELECT {_MARKER_COLUMNS} FROM markers WHERE marker_id = ?", (marker_id,)
            ).fetchone()
        log.info("marker %d of session %s undone", marker_id, session_id)
        return _marker_row(row)

    def markers(self, session_id: str, *, include_undone: bool = False) -> tuple[MarkerRow, ...]:
        """The session's markers in time order; undone ones only if ``include_undone``."""
        _check_session_id(session_id)
        live_only = "" if include_undone else " AND undone_utc IS NULL"
        with self._read("listing markers") as conn:
            self._require_session(conn, session_id)
            rows = conn.execute(
                f"SELECT {_MARKER_COLUMNS} FROM markers WHERE session_id = ?{live_only}"
                " ORDER BY t_lsl_s, marker_id",
                (session_id,),
            ).fetchall()
            return tuple(_marker_row(row) for row in rows)

    # -- ratings ---------------------------------------------------------------------------

    def add_rating(
        self,
        *,
        session_id: str,
        client_code: str,
        instrument: Instrument,
        items: Sequence[float],
        rated_utc: datetime | None = None,
    ) -> RatingRow:
        """One administration of ``instrument`` (see :data:`INSTRUMENTS` for item counts and
        ranges) by the client ``client_code`` (a pseudonym code) in ``session_id``."""
        _check_session_id(session_id)
        check_code(client_code, field="client_code")
        name, scores = _check_items(instrument, items)
        rated = _encode_utc(_now_utc() if rated_utc is None else rated_utc, field="rated_utc")
        with self._write("adding a rating") as conn:
            self._require_session(conn, session_id)
            cursor = conn.execute(
                "INSERT INTO ratings (session_id, client_code, instrument, items_json,"
                " rated_utc) VALUES (?, ?, ?, ?, ?)",
                (session_id, client_code, name, json.dumps(scores), rated),
            )
            row = conn.execute(
                f"SELECT {_RATING_COLUMNS} FROM ratings WHERE rating_id = ?", (cursor.lastrowid,)
            ).fetchone()
        log.info("%s rating %s added to session %s", name, cursor.lastrowid, session_id)
        return _rating_row(row)

    def ratings(
        self, *, session_id: str | None = None, client_code: str | None = None
    ) -> tuple[RatingRow, ...]:
        """Ratings of one session and/or one client code (all if neither), oldest first."""
        clauses: list[str] = []
        params: list[str] = []
        if session_id is not None:
            clauses.append("session_id = ?")
            params.append(_check_session_id(session_id))
        if client_code is not None:
            clauses.append("client_code = ?")
            params.append(check_code(client_code, field="client_code"))
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        with self._read("listing ratings") as conn:
            rows = conn.execute(
                f"SELECT {_RATING_COLUMNS} FROM ratings {where} ORDER BY rated_utc, rating_id",
                params,
            ).fetchall()
            return tuple(_rating_row(row) for row in rows)

    # -- comments --------------------------------------------------------------------------

    def add_comment(
        self,
        *,
        session_id: str,
        t_start_lsl_s: float,
        text: str,
        t_end_lsl_s: float | None = None,
        author_code: str | None = None,
        created_utc: datetime | None = None,
    ) -> CommentRow:
        """A supervisor comment at ``t_start_lsl_s`` or, with ``t_end_lsl_s``, over a span
        (LSL clock of the recording). ``text`` is required free text (at most
        :data:`COMMENT_MAX_CHARS`; never logged); it must not name anyone."""
        _check_session_id(session_id)
        start = _check_finite(t_start_lsl_s, field="t_start_lsl_s")
        if t_end_lsl_s is not None:
            _check_finite(t_end_lsl_s, field="t_end_lsl_s", minimum=start)
        _check_text(text, field="text", max_chars=COMMENT_MAX_CHARS, required=True)
        if author_code is not None:
            check_code(author_code, field="author_code")
        created = _encode_utc(
            _now_utc() if created_utc is None else created_utc, field="created_utc"
        )
        with self._write("adding a comment") as conn:
            self._require_session(conn, session_id)
            cursor = conn.execute(
                "INSERT INTO comments (session_id, t_start_lsl_s, t_end_lsl_s, author_code,"
                " text, created_utc) VALUES (?, ?, ?, ?, ?, ?)",
                (
                    session_id,
                    start,
                    None if t_end_lsl_s is None else float(t_end_lsl_s),
                    author_code,
                    text,
                    created,
                ),
            )
            row = conn.execute(
                f"SELECT {_COMMENT_COLUMNS} FROM comments WHERE comment_id = ?",
                (cursor.lastrowid,),
            ).fetchone()
        log.info("comment %s added to session %s", cursor.lastrowid, session_id)
        return _comment_row(row)

    def comments(self, session_id: str) -> tuple[CommentRow, ...]:
        """The session's comments in time order."""
        _check_session_id(session_id)
        with self._read("listing comments") as conn:
            self._require_session(conn, session_id)
            rows = conn.execute(
                f"SELECT {_COMMENT_COLUMNS} FROM comments WHERE session_id = ?"
                " ORDER BY t_start_lsl_s, comment_id",
                (session_id,),
            ).fetchall()
            return tuple(_comment_row(row) for row in rows)


# ---------------------------------------------------------------------------------------
# Presentation for `dyadsync sessions [--json]`

_TABLE_HEADER: Final = ("id", "room", "start UTC", "duration", "streams", "file")


def _format_duration(seconds: float | None) -> str:
    if seconds is None:
        return "open"  # still recording, or the recorder stopped before ending it
    whole = round(seconds)
    return f"{whole // 3600}:{whole % 3600 // 60:02d}:{whole % 60:02d}"


def format_sessions(rows: Sequence[SessionRow]) -> str:
    """A plain aligned text table (one line per session, header first) for a terminal."""
    if not rows:
        return "no sessions catalogued"
    table = [_TABLE_HEADER] + [
        (
            row.session_id,
            row.room,
            row.started_utc.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S"),
            _format_duration(row.duration_s),
            str(len(row.streams)),
            str(row.file_path),
        )
        for row in rows
    ]
    widths = [max(len(line[column]) for line in table) for column in range(len(_TABLE_HEADER))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip()
        for line in table
    )


def _session_document(row: SessionRow) -> dict[str, Any]:
    return {
        "session_id": row.session_id,
        "room": row.room,
        "started_utc": _encode_utc(row.started_utc, field="started_utc"),
        "started_lsl_s": row.started_lsl_s,
        "ended_utc": None
        if row.ended_utc is None
        else _encode_utc(row.ended_utc, field="ended_utc"),
        "duration_s": row.duration_s,
        "file_path": str(row.file_path),
        "file_sha256": row.file_sha256,
        "streams": list(row.streams),
        "settings": row.settings,
        "coregulation": row.coregulation,
    }


def sessions_json(rows: Sequence[SessionRow]) -> str:
    """A JSON array with one object per session (every catalogue field; times as ISO 8601
    UTC), for scripts: ``dyadsync sessions --json | jq``."""
    return json.dumps([_session_document(row) for row in rows], ensure_ascii=False, indent=2)

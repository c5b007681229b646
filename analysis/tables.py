"""The CSV tables of one analysed session, and the session store's annotations for it.

:func:`write_tables` writes, into an existing folder, one file per table (columns in
docs/analysis.md): each person's derived series, each signal's synchrony updates, the
episodes, the sensor status events, and the markers, ratings and supervisor comments the
session store holds for this recording (headers only when it holds none).

Conventions shared by every table: ``t_s`` columns are the recording's LSL clock (s), as
in the protocol messages; ``session_s`` columns are seconds since the session start (the
dashboard's time axis); an empty cell is "no value" (the protocol's ``null``); booleans
are ``1``/``0``; floats are written in full precision, so numbers read back are the
numbers the pipeline produced. Wall-clock dates stay in the store: the tables carry no
date that could help identify a session's people.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from analysis.session import SessionAnalysis
from dsp.pipeline import Derived
from dsp.types import Role
from server.recorder import SYNC_CHANNELS
from server.store import CommentRow, MarkerRow, RatingRow, SessionStore

__all__ = [
    "COMMENT_COLUMNS",
    "EPISODE_COLUMNS",
    "MARKER_COLUMNS",
    "PHYSIO_COLUMNS",
    "RATING_COLUMNS",
    "STATUS_COLUMNS",
    "SYNC_COLUMNS",
    "Annotations",
    "find_annotations",
    "physio_file",
    "sync_file",
    "write_tables",
]

PHYSIO_COLUMNS = ("t_s", "session_s", "value", "valid")
# Every field of a sync message: the numbers the recorder keeps, then the words.
SYNC_COLUMNS = (
    "t_s",
    "session_s",
    *(c for c in SYNC_CHANNELS if c not in ("state", "leader")),
    "state",
    "leader",
    "reason",
)
EPISODE_COLUMNS = (
    "signal",
    "event",
    "state",
    "leader",
    "t_s",
    "session_s",
    "onset_s",
    "onset_session_s",
    "reason",
)
STATUS_COLUMNS = ("t_s", "session_s", "role", "signal", "kind", "detail")
MARKER_COLUMNS = ("marker_id", "t_s", "session_s", "kind", "note", "undone")
RATING_COLUMNS = ("rating_id", "client_code", "instrument", "total", "items")
COMMENT_COLUMNS = (
    "comment_id",
    "t_start_s",
    "session_start_s",
    "t_end_s",
    "session_end_s",
    "author_code",
    "text",
)


@dataclass(frozen=True, slots=True)
class Annotations:
    """What the session store holds for one recording (empty when it is not catalogued)."""

    session_id: str | None = None
    markers: tuple[MarkerRow, ...] = ()
    ratings: tuple[RatingRow, ...] = ()
    comments: tuple[CommentRow, ...] = ()


def find_annotations(store_path: Path, recording: Path, *, sha256: str) -> Annotations:
    """The markers (undone ones included, flagged), ratings and comments of the session
    recorded in ``recording``, found by its path or, for a moved file, by its checksum.

    A store file that does not exist holds nothing; a store that cannot be read raises
    :class:`~server.store.StoreError`.
    """
    if not store_path.is_file():
        return Annotations()
    absolute = recording.absolute()  # as the store keeps it
    with SessionStore(store_path, create=False) as store:
        rows = store.list_sessions()
        row = next((r for r in rows if r.file_path == absolute), None) or next(
            (r for r in rows if r.file_sha256 == sha256), None
        )
        if row is None:
            return Annotations()
        return Annotations(
            session_id=row.session_id,
            markers=store.markers(row.session_id, include_undone=True),
            ratings=store.ratings(session_id=row.session_id),
            comments=store.comments(row.session_id),
        )


def physio_file(role: Role | str, signal: str) -> str:
    return f"physio_{Role(role).value}_{signal}.csv"


def sync_file(signal: str) -> str:
    return f"sync_{signal}.csv"


def write_tables(
    analysis: SessionAnalysis, out_dir: Path, *, annotations: Annotations
) -> list[Path]:
    """Write every table into ``out_dir`` (which must exist); return the files written."""
    started_t = analysis.started_t

    def session_s(t: Any) -> float | None:
        return None if t is None else float(t) - started_t

    written: list[Path] = []

    def write(name: str, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
        path = out_dir / name
        with path.open("w", newline="", encoding="utf-8") as file:
            writer = csv.writer(file)
            writer.writerow(columns)
            writer.writerows([_cell(v) for v in row] for row in rows)
        written.append(path)

    derived = {m["signal"] for m in analysis.of_type("physio")}
    for role in Role:
        for signal in (d for d in Derived if d.value in derived):
            series = analysis.series(role, signal)
            write(
                physio_file(role, signal.value),
                PHYSIO_COLUMNS,
                (
                    (t, t - started_t, v, ok)
                    for t, v, ok in zip(
                        series.t_s.tolist(),
                        series.values.tolist(),
                        series.valid.tolist(),
                        strict=True,
                    )
                ),
            )
    for signal in analysis.hello["signals"]:
        write(
            sync_file(signal),
            SYNC_COLUMNS,
            (
                (m["t"], session_s(m["t"]), *(m.get(c) for c in SYNC_COLUMNS[2:]))
                for m in analysis.of_type("sync")
                if m["signal"] == signal
            ),
        )
    write(
        "episodes.csv",
        EPISODE_COLUMNS,
        (
            (
                e["signal"],
                e["event"],
                e["state"],
                e["leader"],
                e["t"],
                session_s(e["t"]),
                e["onset_s"],
                session_s(e["onset_s"]),
                e["reason"],
            )
            for e in analysis.episodes()
        ),
    )
    write(
        "status.csv",
        STATUS_COLUMNS,
        (
            (s["t"], session_s(s["t"]), s["role"], s["signal"], s["kind"], s["detail"])
            for s in analysis.of_type("status")
        ),
    )
    write(
        "markers.csv",
        MARKER_COLUMNS,
        (
            (m.marker_id, m.t_lsl_s, session_s(m.t_lsl_s), m.kind, m.note, m.is_undone)
            for m in annotations.markers
        ),
    )
    write(
        "ratings.csv",
        RATING_COLUMNS,
        (
            (r.rating_id, r.client_code, r.instrument, r.total, " ".join(map(repr, r.items)))
            for r in annotations.ratings
        ),
    )
    write(
        "comments.csv",
        COMMENT_COLUMNS,
        (
            (
                c.comment_id,
                c.t_start_lsl_s,
                session_s(c.t_start_lsl_s),
                c.t_end_lsl_s,
                session_s(c.t_end_lsl_s),
                c.author_code,
                c.text,
            )
            for c in annotations.comments
        ),
    )
    return written


def _cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, float):
        return "" if not math.isfinite(value) else repr(value)
    return value

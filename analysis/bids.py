"""BIDS writer for a dyad's physiological recordings (pure: arrays and metadata in, files out).

Layout (BIDS 1.9, docs/bids.md)::

    dataset_description.json  README  participants.tsv  participants.json
    sub-<label>/[ses-<label>/]beh/
        sub-<label>[_ses-<label>]_task-<task>_recording-<ecg|eda>_physio.tsv.gz (+ .json)
        sub-<label>[_ses-<label>]_task-<task>_events.tsv (+ .json)
    sub-<label>/sub-<label>_sessions.tsv (+ .json)      with a session label only

Physiological recordings without neural data go to ``beh``: BIDS lets a behavioural
experiment store its events, physio and stim files there, and the events file is the data
file the physio files accompany. Signals with different rates are separate physio files
told apart by the ``recording`` entity, as the specification prescribes.

De-identification: participants appear only as the codes given (BIDS labels); no date or
time of day is written anywhere (no ``acq_time``, no ``scans.tsv``), times are seconds from
the session's first sample. Files are never overwritten: a second session or participant
is added to an existing dataset, whose ``participants.tsv`` is merged row by row.

:func:`on_grid` places recorded samples on the nominal sampling grid that BIDS physio
requires (a constant ``SamplingFrequency`` from ``StartTime``).
"""

from __future__ import annotations

import csv
import gzip
import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from dsp.exceptions import ConfigError, DyadsyncError

__all__ = [
    "BIDS_VERSION",
    "BidsError",
    "Event",
    "GridPlacement",
    "ParticipantExport",
    "PhysioColumn",
    "bids_label",
    "events_file",
    "on_grid",
    "physio_files",
    "write_session",
]

#: The specification version the files follow (the validator 1.15 checks against it).
BIDS_VERSION: Final = "1.9.0"
MISSING: Final = "n/a"  # BIDS' spelling of a missing value in every TSV
_LABEL: Final = re.compile(r"[A-Za-z0-9]+")
_PARTICIPANT_FIELDS: Final = ("participant_id", "role")
_SESSION_FIELDS: Final = ("session_id", "partner_id")
_EVENT_FIELDS: Final = ("onset", "duration", "trial_type", "signal", "role", "leader", "reason")

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


class BidsError(DyadsyncError):
    """A BIDS dataset cannot be written as asked (a file exists, the dataset disagrees)."""


def bids_label(text: str, *, what: str) -> str:
    """``text`` if it is a valid BIDS label (letters and digits only), else ConfigError."""
    if not _LABEL.fullmatch(text):
        raise ConfigError(
            f"{what} {text!r} is not a BIDS label; allowed: letters and digits only "
            "(a pseudonym code such as T01 or C017, never a name)"
        )
    return text


# ---------------------------------------------------------------------------------------
# samples on the nominal grid


@dataclass(frozen=True, slots=True)
class GridPlacement:
    """Where each recorded sample lies on the nominal grid: sample ``i`` is grid point
    ``indices[i]`` (0 = the first sample); ``length`` grid points in all; ``missing`` of
    them have no sample (gaps, written as n/a)."""

    indices: IntArray
    length: int

    @property
    def missing(self) -> int:
        return self.length - int(self.indices.shape[0])


def on_grid(
    *, timestamps_s: FloatArray, counters: FloatArray | None, rate_hz: float
) -> GridPlacement:
    """Place samples on the grid ``first + k / rate_hz`` by sample index, not by time.

    The step from one sample to the next is what the device's sample counter says (lost
    samples become gaps); without a counter, or where it resets or stands still, it is the
    time difference in whole sampling intervals (at least 1). Steps, not absolute times,
    are rounded, so clock jitter never moves a sample and a device clock that runs slightly
    off its nominal rate never makes samples collide or leaves holes. A counter whose grid
    would be more than twice as long as the time stamps' span (plus a second) is not a
    sample counter, and the time steps are used throughout: a garbage counter must not
    blow the file up. Per step the counter is trusted over the time stamps, since
    dejittered stamps (as replay makes for other tools' files) can smooth a short gap away.
    """
    if not (math.isfinite(rate_hz) and rate_hz > 0):
        raise BidsError(f"a physio file needs a regular stream; nominal rate {rate_hz!r} Hz")
    if timestamps_s.shape[0] == 0:
        return GridPlacement(np.empty(0, dtype=np.int64), 0)
    with np.errstate(invalid="ignore"):
        steps = np.maximum(np.rint(np.diff(timestamps_s) * rate_hz), 1.0)
        steps[~np.isfinite(steps)] = 1.0
        if counters is not None:
            counted = np.diff(counters)
            usable = np.isfinite(counted) & (counted >= 1) & (counted == np.rint(counted))
            by_counter = np.where(usable, counted, steps)
            if by_counter.sum() <= 2 * steps.sum() + rate_hz:
                steps = by_counter
    indices = np.concatenate([[0], np.cumsum(steps.astype(np.int64))])
    return GridPlacement(indices, int(indices[-1]) + 1)


def _text_column(values: npt.NDArray[Any], placement: GridPlacement) -> list[str]:
    """Values as the shortest text that reads back as the same number in the recorded
    type, at their grid points; n/a for gaps and non-finite values."""
    if values.dtype.kind in "iu":
        texts = [str(v) for v in values.tolist()]
    elif values.dtype == np.float64:
        texts = [repr(v) if math.isfinite(v) else MISSING for v in values.tolist()]
    else:  # float32 and the like: numpy's str is the shortest text of that precision
        texts = [str(v) if np.isfinite(v) else MISSING for v in values]
    column = [MISSING] * placement.length
    for index, text in zip(placement.indices.tolist(), texts, strict=True):
        column[index] = text
    return column


# ---------------------------------------------------------------------------------------
# what gets written


@dataclass(frozen=True, slots=True, kw_only=True)
class PhysioColumn:
    """One person's one signal: the raw recorded values of its value channel, with their
    recording times (session clock, s) and sample counter (None if the device has none).

    ``column`` is the BIDS column name (``cardiac`` for ECG, ``eda``), ``recording`` the
    file's recording label, ``units`` the device's unit of the raw values; ``metadata``
    goes into the sidecar as is (Manufacturer, the column's description...).
    """

    column: str
    recording: str
    units: str
    description: str
    rate_hz: float
    timestamps_s: FloatArray
    values: npt.NDArray[Any]
    counters: FloatArray | None
    metadata: Mapping[str, Any]


@dataclass(frozen=True, slots=True, kw_only=True)
class Event:
    """One row of the events file. Times in seconds from the session's time zero;
    optional fields None (written n/a)."""

    onset_s: float
    duration_s: float
    trial_type: str
    signal: str | None = None
    role: str | None = None
    leader: str | None = None
    reason: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class ParticipantExport:
    """One person of the dyad: BIDS label (a code), role, and their signals."""

    label: str
    role: str
    physio: Sequence[PhysioColumn]


_EVENTS_SIDECAR: Final[Mapping[str, Any]] = {
    "onset": {"Description": "Seconds from the session's first recorded sample.", "Units": "s"},
    "duration": {"Description": "Seconds; 0 for an instantaneous event.", "Units": "s"},
    "trial_type": {
        "Description": "What happened.",
        "Levels": {
            "episode_coupled": "A coupling episode: the two people's signal was synchronised "
            "above chance (onset = estimated start, the centre of the window that showed it).",
            "episode_anti_phase": "An anti-phase episode: the signals moved in opposition "
            "above chance.",
            "marker_<kind>": "A clinician's marker (rupture, repair, intervention, note); "
            "its free-text note is not exported.",
            "status_<kind>": "A sensor's stream changed state (stalled, recovered, "
            "clock_break, mismatch, bad_samples, missing, connected).",
        },
    },
    "signal": {
        "Description": "The signal concerned: hr or phasic for episodes (heart rate, phasic "
        "skin conductance), ecg or eda for sensor status.",
    },
    "role": {
        "Description": "Whose sensor a status event concerns.",
        "Levels": {"therapist": "the therapist", "client": "the client"},
    },
    "leader": {
        "Description": "Who led the entry into the episode (the partner followed).",
        "Levels": {"therapist": "the therapist", "client": "the client"},
    },
    "reason": {
        "Description": "Why an episode ended early (e.g. gap, bad signal); recording_end "
        "when it was still open at the end of the recording.",
    },
}

_PARTICIPANTS_SIDECAR: Final[Mapping[str, Any]] = {
    "participant_id": {"Description": "Pseudonym code given at export (never a name)."},
    "role": {
        "Description": "The person's role in the psychotherapy sessions.",
        "Levels": {"therapist": "the therapist", "client": "the client"},
    },
}

_SESSIONS_SIDECAR: Final[Mapping[str, Any]] = {
    "session_id": {"Description": "Session label given at export (no date)."},
    "partner_id": {
        "Description": "The participant_id of the other person of the dyad in this session."
    },
}


# ---------------------------------------------------------------------------------------
# writing


def _tsv(rows: Sequence[Sequence[str]]) -> str:
    return "".join("\t".join(row) + "\n" for row in rows)


def _read_tsv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as file:
        return list(csv.DictReader(file, delimiter="\t"))


def _json_text(data: Mapping[str, Any]) -> str:
    return json.dumps(data, indent=2, allow_nan=False) + "\n"


def _number(value: float) -> str:
    return repr(round(float(value), 6)) if math.isfinite(value) else MISSING


def physio_files(physio: PhysioColumn, *, start_s: float) -> tuple[bytes, str]:
    """The ``_physio.tsv.gz`` bytes (no header line, as BIDS physio prescribes) and its
    JSON sidecar, with ``StartTime`` = first sample - ``start_s``."""
    placement = on_grid(
        timestamps_s=physio.timestamps_s, counters=physio.counters, rate_hz=physio.rate_hz
    )
    text = "\n".join(_text_column(physio.values, placement)) + ("\n" if placement.length else "")
    # mtime=0: gzip's header would otherwise carry the export's date.
    data = gzip.compress(text.encode("ascii"), mtime=0)
    first_s = float(physio.timestamps_s[0]) if physio.timestamps_s.shape[0] else start_s
    sidecar = {
        **physio.metadata,  # first, so it cannot replace the fields BIDS requires
        "SamplingFrequency": physio.rate_hz,
        "StartTime": round(first_s - start_s, 6),
        "Columns": [physio.column],
        physio.column: {"Description": physio.description, "Units": physio.units},
        "MissingSamples": placement.missing,
    }
    return data, _json_text(sidecar)


def events_file(events: Sequence[Event]) -> str:
    """The ``_events.tsv`` text, rows in onset order."""
    rows = [list(_EVENT_FIELDS)]
    for event in sorted(events, key=lambda e: (e.onset_s, e.trial_type)):
        rows.append(
            [
                _number(event.onset_s),
                _number(max(event.duration_s, 0.0)),
                event.trial_type,
                *(
                    value or MISSING
                    for value in (event.signal, event.role, event.leader, event.reason)
                ),
            ]
        )
    return _tsv(rows)


def _dataset_files(
    root: Path, *, participants: Sequence[ParticipantExport], generated_by: Mapping[str, str]
) -> dict[Path, str]:
    """dataset_description, README and participants files for ``root`` with these
    participants added (existing files kept; participants.tsv merged)."""
    files: dict[Path, str] = {}
    description = root / "dataset_description.json"
    if description.exists():
        try:
            existing = json.loads(description.read_text(encoding="utf-8"))
        except (OSError, ValueError) as error:
            raise BidsError(
                f"{description}: not a readable dataset description ({error})"
            ) from None
        if not isinstance(existing, dict) or "BIDSVersion" not in existing:
            raise BidsError(f"{description} has no BIDSVersion: {root} is not a BIDS dataset")
    else:
        files[description] = _json_text(
            {
                "Name": "Psychotherapy dyads: therapist and client ECG and EDA",
                "BIDSVersion": BIDS_VERSION,
                "DatasetType": "raw",
                "GeneratedBy": [dict(generated_by)],
            }
        )
    readme = root / "README"
    if not readme.exists():
        files[readme] = _README
    table = root / "participants.tsv"
    rows = _read_tsv(table) if table.exists() else []
    roles = {row.get("participant_id", ""): row.get("role", MISSING) for row in rows}
    for person in participants:
        participant_id = f"sub-{person.label}"
        known = roles.get(participant_id)
        if known is not None and known != person.role:
            raise BidsError(
                f"{table}: {participant_id} is a {known} there, this recording makes them the "
                f"{person.role}; give another --subject-{person.role} code"
            )
        roles[participant_id] = person.role
    files[table] = _tsv([list(_PARTICIPANT_FIELDS), *([pid, role] for pid, role in roles.items())])
    sidecar = root / "participants.json"
    if not sidecar.exists():
        files[sidecar] = _json_text(_PARTICIPANTS_SIDECAR)
    return files


def _sessions_files(
    root: Path, person: ParticipantExport, *, session: str, partner: str
) -> dict[Path, str]:
    table = root / f"sub-{person.label}" / f"sub-{person.label}_sessions.tsv"
    rows = []
    if table.exists():
        rows = [[row["session_id"], row.get("partner_id", MISSING)] for row in _read_tsv(table)]
    rows.append([f"ses-{session}", f"sub-{partner}"])
    return {
        table: _tsv([list(_SESSION_FIELDS), *rows]),
        table.with_suffix(".json"): _json_text(_SESSIONS_SIDECAR),
    }


def write_session(
    root: Path,
    *,
    participants: Sequence[ParticipantExport],
    events: Sequence[Event],
    task: str,
    session: str | None,
    start_s: float,
    generated_by: Mapping[str, str],
) -> list[Path]:
    """Write one recorded session of a dyad into the BIDS dataset at ``root`` (created if
    missing); returns the files written, data files first.

    ``start_s`` is the session's time zero on the recording clock (event onsets and
    physio StartTime are relative to it). Labels must be valid (:func:`bids_label`).
    Nothing is written if any of the session's data files exists already (BidsError: a
    dataset is added to, never overwritten) or the dataset disagrees (a participant with
    another role, a subject with sessions exported without one or the other way round).
    """
    for label, what in ((task, "task"), (session, "session")):
        if label is not None:
            bids_label(label, what=what)
    labels = [person.label for person in participants]
    if len(set(labels)) != len(labels):
        raise BidsError(f"each person needs their own code; got {labels}")
    files: dict[Path, bytes | str] = {}
    for person in participants:
        bids_label(person.label, what=f"{person.role} code")
        subject = root / f"sub-{person.label}"
        _check_session_layout(subject, session)
        folder = subject / (f"ses-{session}" if session else "") / "beh"
        stem = f"sub-{person.label}" + (f"_ses-{session}" if session else "") + f"_task-{task}"
        for physio in person.physio:
            data, sidecar = physio_files(physio, start_s=start_s)
            files[folder / f"{stem}_recording-{physio.recording}_physio.tsv.gz"] = data
            files[folder / f"{stem}_recording-{physio.recording}_physio.json"] = sidecar
        files[folder / f"{stem}_events.tsv"] = events_file(events)
        files[folder / f"{stem}_events.json"] = _json_text(_EVENTS_SIDECAR)
    existing = sorted(str(path) for path in files if path.exists())
    if existing:
        raise BidsError(
            f"{len(existing)} files of this session exist already, e.g. {existing[0]}; "
            "files are never overwritten: give another --session label or other codes"
        )
    if session is not None and len(participants) == 2:
        for person, partner in (participants, participants[::-1]):
            files.update(_sessions_files(root, person, session=session, partner=partner.label))
    files.update(_dataset_files(root, participants=participants, generated_by=generated_by))
    for path, content in files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            if isinstance(content, bytes):
                path.write_bytes(content)
            else:
                path.write_text(content, encoding="utf-8")
        except OSError as error:
            raise BidsError(f"{path}: cannot write ({error.strerror})") from None
    return list(files)


def _check_session_layout(subject: Path, session: str | None) -> None:
    """BIDS: a subject's data is either all in session folders or none of it is."""
    if not subject.is_dir():
        return
    has_sessions = any(child.name.startswith("ses-") for child in subject.iterdir())
    has_plain = (subject / "beh").exists()
    if session is None and has_sessions:
        raise BidsError(f"{subject} has session folders; give this recording a --session label")
    if session is not None and has_plain:
        raise BidsError(
            f"{subject} holds a recording without a session label; export into a new dataset "
            "or re-export that one with --session"
        )


_README: Final = """\
Psychotherapy dyads: therapist and client physiology
====================================================

Electrocardiogram (ECG) and electrodermal activity (EDA) of a therapist and a client,
recorded together during psychotherapy sessions with dyadsync (live interpersonal
physiological synchrony) and exported from its XDF recordings.

- Each person is a participant; participants.tsv gives their role (therapist or client).
  Participant and session labels are pseudonym codes: no names appear in this dataset.
- No dates or times of day appear either: every time is in seconds from the session's
  first recorded sample, for both people of a session alike, so their files align.
- beh/*_physio.tsv.gz: the raw samples as recorded, in device units (see each sidecar),
  on the nominal sampling grid; n/a where samples were lost.
- beh/*_events.tsv: coupling episodes detected live, clinician markers and sensor status.
- sub-*_sessions.tsv: the partner of each session.
"""

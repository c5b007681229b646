"""``dyadsync export-bids FILE --out DIR``: one XDF recording into a BIDS dataset.

The raw streams are read as replay reads them (:func:`streamer.player.open_replay`: our
recordings by their ``<dyadsync>`` desc, other tools' files through a session TOML), the
live session's episodes, markers and sensor status from our string streams; the files are
written by :mod:`analysis.bids`. See docs/bids.md.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import math
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Final

import numpy as np

from analysis.bids import Event, ParticipantExport, PhysioColumn, bids_label, write_session
from dsp.types import Role, SignalKind
from streamer.devices import CANONICAL_UNIT
from streamer.errors import RecordingError
from streamer.player import RecordedStream, open_replay
from streamer.xdf_read import load_recording

__all__ = ["add_parser", "read_events", "run"]

DEFAULT_TASK: Final = "psychotherapy"
# The recorder's string streams (docs/recording.md), by their <dyadsync><kind>.
_EVENT_KINDS: Final = ("events", "episodes", "markers")
# BIDS column names: "cardiac" is the specification's recommended name for a cardiac
# recording; EDA has no recommended name, "eda" says what it is.
_COLUMN: Final = {SignalKind.ECG: "cardiac", SignalKind.EDA: "eda"}
_DESCRIPTION: Final = {
    SignalKind.ECG: "Electrocardiogram, raw as recorded",
    SignalKind.EDA: "Electrodermal activity (skin conductance or resistance), raw as recorded",
}
_NON_PHYSICAL_UNITS: Final = frozenset({"adc", "scaled"})


def add_parser(
    commands: argparse._SubParsersAction, *, parents: Sequence[argparse.ArgumentParser] = ()
) -> None:
    """Add the ``export-bids`` subcommand to ``commands`` (dispatch with :func:`run`)."""
    parser = commands.add_parser(
        "export-bids",
        parents=list(parents),
        help="write a recording's physiology, episodes and markers as a BIDS dataset",
        description="Write a recording's raw ECG/EDA (per person and signal), its episodes, "
        "markers and sensor status into a BIDS dataset, participants as codes, no dates. "
        "An existing dataset is added to, never overwritten.",
    )
    parser.add_argument("file", type=Path, help="XDF recording (dyadsync's, or LabRecorder's)")
    parser.add_argument("--out", type=Path, required=True, help="BIDS dataset root (created)")
    for role in Role:
        parser.add_argument(
            f"--subject-{role.value}",
            required=True,
            metavar="CODE",
            help=f"the {role.value}'s pseudonym code, letters and digits (never a name)",
        )
    parser.add_argument(
        "--session",
        default=None,
        metavar="LABEL",
        help="BIDS session label, letters and digits (e.g. 01); needed to add a further "
        "session of the same people",
    )
    parser.add_argument(
        "--task", default=DEFAULT_TASK, help=f"BIDS task label (default {DEFAULT_TASK})"
    )
    parser.add_argument(
        "--session-toml",
        type=Path,
        default=None,
        metavar="TOML",
        help="session TOML mapping the file's streams to roles (needed for files other "
        "tools recorded; dyadsync's own files say it themselves)",
    )


def run(args: argparse.Namespace) -> int:
    """Export ``args.file``; prints what was written. Errors are DyadsyncErrors."""
    from streamer.session import load_session

    # Checked before the (possibly long) read of the recording, so a mistake shows at once.
    codes = {
        role: bids_label(getattr(args, f"subject_{role.value}"), what=f"--subject-{role.value}")
        for role in Role
    }
    if args.session is not None:
        bids_label(args.session, what="--session")
    bids_label(args.task, what="--task")
    session = load_session(args.session_toml) if args.session_toml is not None else None
    replay = open_replay(args.file, session=session)
    streams = replay.streams
    if not streams:
        raise RecordingError(f"{args.file}: no raw ECG or EDA stream to export")
    start_s = min(float(s.timestamps_s[0]) for s in streams if s.timestamps_s.shape[0])
    participants = [
        ParticipantExport(
            label=codes[role],
            role=role.value,
            physio=[physio_column(s) for s in streams if s.role is role],
        )
        for role in Role
    ]
    events = list(read_events(args.file, start_s=start_s, end_s=start_s + replay.duration_s))
    written = write_session(
        args.out,
        participants=participants,
        events=events,
        task=args.task,
        session=args.session,
        start_s=start_s,
        generated_by={
            "Name": "dyadsync",
            "Version": importlib.metadata.version("dyadsync"),
            "Description": "export-bids from an XDF recording",
        },
    )
    for person in participants:
        for physio in person.physio:
            print(f"sub-{person.label} {physio.recording}: {physio.timestamps_s.shape[0]} samples")
    print(f"{len(events)} events; {len(written)} files written under {args.out}")
    return 0


def physio_column(stream: RecordedStream) -> PhysioColumn:
    """A recorded raw stream's value channel (and counter) as one physio column."""
    spec = stream.device.spec(stream.signal)
    description = _DESCRIPTION[stream.signal]
    units = spec.unit
    if units in _NON_PHYSICAL_UNITS:
        conversion = spec.conversion
        description += (
            f" (device units; value = raw * {conversion.scale!r} + {conversion.offset!r} "
            f"in {CANONICAL_UNIT[stream.signal]})"
        )
        units = "arbitrary"
    counters = None
    if stream.counter_channel is not None:
        counters = stream.raw[:, stream.counter_channel].astype(np.float64)
    return PhysioColumn(
        column=_COLUMN[stream.signal],
        recording=stream.signal.value,
        units=units,
        description=description,
        rate_hz=stream.rate_hz,
        timestamps_s=stream.timestamps_s,
        values=stream.raw[:, stream.value_channel],
        counters=counters,
        metadata={
            "Manufacturer": stream.device.manufacturer,
            "ManufacturersModelName": stream.device.model,
        },
    )


def read_events(path: Path, *, start_s: float, end_s: float) -> Iterator[Event]:
    """The recording's episodes (paired start and end), markers and sensor status as
    events, onsets relative to ``start_s``; an episode still open at the end runs to
    ``end_s``. Free text (marker notes, status details) is left out: it may name someone.
    """
    recording = load_recording(path, synchronize_clocks=True, dejitter_timestamps=False)
    messages: list[Mapping[str, Any]] = []
    for stream in recording.streams:
        if _stream_kind(stream["info"]) in _EVENT_KINDS:
            messages.extend(_decoded(path, stream["time_series"]))
    open_episodes: dict[str, Mapping[str, Any]] = {}
    for message in sorted(messages, key=lambda m: float(m["t"])):
        kind = message.get("type")
        t_s = float(message["t"])
        if kind == "episode":
            signal = str(message.get("signal"))
            if message.get("event") == "start":
                open_episodes[signal] = message
            elif signal in open_episodes:
                yield _episode(open_episodes.pop(signal), message, start_s=start_s)
        elif kind == "marker":
            yield Event(
                onset_s=t_s - start_s, duration_s=0.0, trial_type=f"marker_{message.get('kind')}"
            )
        elif kind == "status":
            yield Event(
                onset_s=t_s - start_s,
                duration_s=0.0,
                trial_type=f"status_{message.get('kind')}",
                signal=_text(message.get("signal")),
                role=_text(message.get("role")),
            )
    for started in open_episodes.values():
        yield _episode(started, None, start_s=start_s, end_s=end_s)


def _stream_kind(info: Mapping[str, Any]) -> str:
    """A stream's ``<desc><dyadsync><kind>`` in pyxdf's dict-of-lists form ("" if none)."""
    node: Any = info
    for key in ("desc", "dyadsync", "kind"):
        node = (node.get(key) or [None])[0] if isinstance(node, Mapping) else None
    return node if isinstance(node, str) else ""


def _decoded(path: Path, samples: Sequence[Sequence[str]]) -> Iterator[Mapping[str, Any]]:
    """The JSON messages of a string stream; those without a numeric time ``t`` (none that
    dyadsync writes) are skipped, since they cannot be placed."""
    for index, sample in enumerate(samples):
        try:
            message = json.loads(sample[0])
        except (json.JSONDecodeError, IndexError, TypeError):
            raise RecordingError(
                f"{path}: string sample {index} of an events stream is not JSON; "
                "the file is damaged (try `dyadsync repair`)"
            ) from None
        t_s = message.get("t") if isinstance(message, dict) else None
        if isinstance(t_s, int | float) and math.isfinite(t_s):
            yield message


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


def _onset(message: Mapping[str, Any]) -> float:
    onset = message.get("onset_s")
    return (
        float(onset)
        if isinstance(onset, int | float) and math.isfinite(onset)
        else float(message["t"])
    )


def _episode(
    start: Mapping[str, Any],
    end: Mapping[str, Any] | None,
    *,
    start_s: float,
    end_s: float | None = None,
) -> Event:
    onset = _onset(start)
    stop = _onset(end) if end is not None else float(end_s if end_s is not None else onset)
    return Event(
        onset_s=onset - start_s,
        duration_s=stop - onset,
        trial_type=f"episode_{start.get('state')}",
        signal=_text(start.get("signal")),
        leader=_text(start.get("leader")),
        reason=_text(end.get("reason")) if end is not None else "recording_end",
    )

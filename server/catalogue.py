"""A recorded session's life cycle: its XDF recorder and its row in the session store.

:class:`RecordedSession` is what ``dyadsync run --record`` and ``dyadsync demo --record``
create before the session starts (so a bad path fails before anything else) and finish
after it ended: the file's footers are written by the service's recorder, then the store
row gets the end time, duration, the file's sha256 and the coregulation summary.
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from dsp.exceptions import ConfigError, DyadsyncError
from dsp.pipeline import Derived, PipelineConfig
from dsp.synchrony import CoregulationSummary
from dsp.types import Role
from server.protocol import jsonable
from server.recorder import RecordingSummary, SessionRecorder, resolve_target
from server.store import SessionStore, check_code, sha256_file
from streamer.session import SessionConfig


@dataclass(frozen=True, slots=True, kw_only=True)
class RecordingOptions:
    """Where to record: ``target`` is a new file or an existing directory; ``store``
    the session store's file (None: ``$DYADSYNC_STORE`` or the default location)."""

    target: Path
    store: Path | None = None


def check_recording(options: RecordingOptions, session: SessionConfig) -> None:
    """What can be checked before the session starts, as ConfigError (nothing is created
    but the store, if missing): the room is a code, the target can take a new file, the
    store opens."""
    check_code(session.room, field="session.room")
    try:
        resolve_target(options.target, room=session.room, started_utc=datetime.now(UTC))
        with SessionStore(options.store):
            pass
    except DyadsyncError as exc:
        raise ConfigError(str(exc), key="--record") from None


def session_info(
    session: SessionConfig, pipeline: PipelineConfig, *, started_utc: datetime
) -> dict[str, Any]:
    """The ``dyadsync-session`` sample: enough to analyse the file again the same way
    (room, roles, version, every setting, which device sat on which chair). Device
    configs and source ids identify hardware, never people."""
    return {
        "room": session.room,
        "roles": [role.value for role in Role],
        "dyadsync_version": importlib.metadata.version("dyadsync"),
        "started_utc": started_utc.isoformat(),
        "signals": [signal.value for signal in session.signals],
        "synchrony": jsonable(dict(session.synchrony)),
        "pipeline": jsonable(dataclasses.asdict(pipeline)),
        "sensors": [
            {
                "role": sensor.role.value,
                "signal": sensor.signal.value,
                "device": sensor.device.name,
                "source_id": sensor.source_id,
                "name_pattern": sensor.name_pattern,
            }
            for sensor in session.sensors
        ],
    }


class RecordedSession:
    """Opens the recording file and the store row; :meth:`finish` completes the row."""

    __slots__ = ("_options", "_started_utc", "recorder", "session_id")

    def __init__(
        self,
        *,
        options: RecordingOptions,
        session: SessionConfig,
        pipeline: PipelineConfig,
        clock: Callable[[], float],
    ) -> None:
        """Raises :class:`~streamer.errors.RecordingError` for a path that exists or
        cannot be created, and the store's errors for an unusable store, before any
        stream is opened."""
        started = datetime.now(UTC).replace(microsecond=0)
        path = resolve_target(options.target, room=session.room, started_utc=started)
        info = session_info(session, pipeline, started_utc=started)
        self._options = options
        self._started_utc = started
        # Room and start time, plus a few random characters: two rooms starting in the
        # same second never collide, and the id names no person.
        self.session_id = f"{session.room}-{started:%Y%m%dT%H%M%SZ}-{secrets.token_hex(2)}"
        with SessionStore(options.store) as store:
            store.begin_session(
                session_id=self.session_id,
                room=session.room,
                started_utc=started,
                started_lsl_s=clock(),
                file_path=str(path.resolve()),
                settings=info,
                streams=info["sensors"],
            )
        self.recorder = SessionRecorder(
            path=path,
            session_info=info,
            grid_hz=pipeline.grid_hz,
            step_s=pipeline.synchrony.step_s,
            started_utc=started,
            clock=clock,
        )

    def finish(
        self,
        recording: RecordingSummary,
        *,
        coregulation: Mapping[Derived, CoregulationSummary],
    ) -> None:
        """Complete the store row once the recorder has closed the file."""
        ended = datetime.now(UTC)
        summary: dict[str, Any] = {
            signal.value: value.to_dict() for signal, value in coregulation.items()
        }
        summary["recording"] = {
            "failure": recording.failure,
            "items_lost": recording.items_lost,
            "raw_samples": recording.samples,
        }
        with SessionStore(self._options.store) as store:
            store.end_session(
                session_id=self.session_id,
                ended_utc=ended,
                duration_s=(ended - self._started_utc).total_seconds(),
                file_sha256=sha256_file(recording.path),
                coregulation=summary,
            )

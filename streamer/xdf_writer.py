"""Crash-safe XDF writer: the recorder pushes arrays in, ticks it, and closes it.

The file layout and its guarantees are described in ``docs/recording.md``. In short:

* :meth:`XdfWriter.open` creates the file with ``O_CREAT | O_EXCL`` and mode ``0600`` (an
  existing file is never overwritten) and writes the FileHeader.
* :meth:`~XdfWriter.push` only buffers (a copy, so callers may reuse their arrays);
  :meth:`~XdfWriter.tick` is called by the owner's loop with the session clock (LSL
  seconds) and writes whatever is due: Samples chunks every ``flush_interval_s``,
  ClockOffset chunks every 5 s per stream, a Boundary chunk every 10 s, and ``fsync``
  every 5 s. Data goes straight to the file descriptor (no user-space buffer), so a
  SIGKILL loses only what was pushed since the last flush.
* :meth:`~XdfWriter.close` writes the remaining samples and one StreamFooter per stream.

Every OS failure (disk full, I/O error) raises :class:`~streamer.errors.RecordingError` from
the call that hit it, naming the file and what to do; the file is cut back to its last
complete chunk when the OS allows, so it stays readable (``repair`` adds the footers).
The writer is not thread-safe: one owner calls it. ``tick`` may block for an ``fsync``;
an asyncio owner runs it in an executor.
"""

from __future__ import annotations

import math
import os
import re
import xml.etree.ElementTree as ET
from collections.abc import Collection, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from streamer import xdf_format as fmt
from streamer.errors import RecordingError

__all__ = ["XdfWriter", "recording_path"]

_ROOM_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
# Fields of the StreamHeader that the writer sets itself from add_stream's arguments.
_CORE_FIELDS: Final = frozenset(
    {"name", "type", "channel_count", "nominal_srate", "channel_format", "source_id", "desc"}
)


def recording_path(directory: str | os.PathLike[str], *, room: str, started_utc: datetime) -> Path:
    """``<directory>/<room>_<UTC yyyymmddTHHMMSSZ>.xdf`` (rooms and roles, never people)."""
    if not _ROOM_NAME.match(room):
        raise RecordingError(
            f"room name {room!r} cannot be part of a file name: use letters, digits, '_', '-', '.'"
        )
    stamp = started_utc.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
    return Path(directory) / f"{room}_{stamp}.xdf"


class _Stream:
    """One stream's buffer and the tallies its footer needs."""

    __slots__ = (
        "channel_count",
        "channel_format",
        "clock_offset",
        "clock_offsets",
        "first_timestamp",
        "last_timestamp",
        "name",
        "pending_count",
        "pending_stamps",
        "pending_values",
        "sample_count",
        "staged",
        "stream_id",
    )

    def __init__(
        self,
        *,
        stream_id: int,
        name: str,
        channel_format: str,
        channel_count: int,
        clock_offset_interval_s: float,
    ) -> None:
        self.stream_id = stream_id
        self.name = name
        self.channel_format = channel_format
        self.channel_count = channel_count
        self.pending_stamps: list[npt.NDArray[np.float64]] = []
        self.pending_values: list[Any] = []  # numeric arrays or lists of string rows
        self.pending_count = 0
        self.sample_count = 0
        self.first_timestamp = 0.0
        self.last_timestamp = 0.0
        self.clock_offsets: list[tuple[float, float]] = []
        self.staged: tuple[float, float, int] | None = None  # (first, last, count) of a chunk
        self.clock_offset = _Cadence(clock_offset_interval_s)  # the first tick writes one

    def take_chunk(self) -> bytes:
        """Encode and clear what is buffered (the caller checked pending_count > 0)."""
        stamps = np.concatenate(self.pending_stamps)
        if self.channel_format == "string":
            rows = [row for block in self.pending_values for row in block]
            chunk = fmt.string_samples_chunk(
                stream_id=self.stream_id, timestamps=stamps.tolist(), values=rows
            )
        else:
            values = np.concatenate(self.pending_values)
            chunk = fmt.numeric_samples_chunk(
                stream_id=self.stream_id, timestamps=stamps, values=values
            )
        # Counted only once the chunk is in the file (see commit): after a failed write the
        # writer's counts must still describe the file.
        self.staged = (float(stamps[0]), float(stamps[-1]), len(stamps))
        self.pending_stamps.clear()
        self.pending_values.clear()
        self.pending_count = 0
        return chunk

    def commit(self) -> None:
        """The staged chunk reached the file: count it."""
        if self.staged is None:
            return
        first, last, count = self.staged
        if self.sample_count == 0:
            self.first_timestamp = first
        self.last_timestamp = last
        self.sample_count += count
        self.staged = None

    def footer_chunk(self) -> bytes:
        xml = fmt.footer_xml(
            first_timestamp=self.first_timestamp,
            last_timestamp=self.last_timestamp,
            sample_count=self.sample_count,
            clock_offsets=self.clock_offsets,
        )
        return fmt.stream_footer_chunk(stream_id=self.stream_id, xml=xml)


class XdfWriter:
    """An open XDF recording. Create with :meth:`open`; use as a context manager or call
    :meth:`close`.

    ``flush_interval_s`` (0.5 s): buffered samples become Samples chunks and reach the OS at
    least this often (measured on the ``now_s`` given to :meth:`tick`), so with ticks every
    0.1 s a SIGKILL loses well under the promised second. ``fsync_interval_s`` (5 s): data
    is forced to the disk this often (a power cut loses at most this much).
    ``clock_offset_interval_s`` (5 s) and ``boundary_interval_s`` (10 s): the spec's and
    LabRecorder's cadences. ``max_buffered_samples`` (100 000): a push beyond this writes
    at once, so memory stays bounded even if the owner stops ticking.
    """

    __slots__ = (
        "_boundary",
        "_clock_offset_interval_s",
        "_closed",
        "_failure",
        "_fd",
        "_flush",
        "_fsync_cadence",
        "_max_buffered_samples",
        "_pending_samples",
        "_size",
        "_streams",
        "path",
    )

    def __init__(
        self,
        *,
        path: Path,
        fd: int,
        intervals: tuple[float, float, float, float],
        max_buffered_samples: int,
    ) -> None:
        # Private: open() creates the file; this only sets up state.
        self.path = path
        self._fd = fd
        (
            flush_interval_s,
            fsync_interval_s,
            self._clock_offset_interval_s,
            boundary_interval_s,
        ) = intervals
        self._flush = _Cadence(flush_interval_s)
        self._fsync_cadence = _Cadence(fsync_interval_s)
        self._boundary = _Cadence(boundary_interval_s)
        self._max_buffered_samples = max_buffered_samples
        self._streams: dict[int, _Stream] = {}
        self._size = 0
        self._pending_samples = 0
        self._failure: RecordingError | None = None
        self._closed = False

    @classmethod
    def open(
        cls,
        path: str | os.PathLike[str],
        *,
        started_utc: datetime | None = None,
        file_header_fields: Mapping[str, str] | None = None,
        flush_interval_s: float = 0.5,
        fsync_interval_s: float = 5.0,
        clock_offset_interval_s: float = 5.0,
        boundary_interval_s: float = 10.0,
        max_buffered_samples: int = 100_000,
    ) -> XdfWriter:
        """Create ``path`` (never overwriting it; mode 0600) and write the FileHeader.

        ``started_utc`` (default: now) goes into the header's ``datetime`` the way
        LabRecorder writes it; ``file_header_fields`` adds more header elements.
        Raises :class:`RecordingError` if the file exists or cannot be created.
        """
        intervals = (
            flush_interval_s,
            fsync_interval_s,
            clock_offset_interval_s,
            boundary_interval_s,
        )
        if not all(math.isfinite(value) and value > 0 for value in intervals):
            raise RecordingError(f"writer intervals must be finite and > 0 s, got {intervals}")
        if flush_interval_s > 1.0:
            raise RecordingError(
                f"flush_interval_s={flush_interval_s} breaks the promise that a crash loses "
                "at most one second: use <= 1.0"
            )
        if max_buffered_samples < 1:
            raise RecordingError(f"max_buffered_samples must be >= 1, got {max_buffered_samples}")
        target = Path(path)
        try:
            # O_EXCL: an existing recording is never truncated, even by a race.
            fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        except FileExistsError:
            raise RecordingError(
                f"{target}: a file of that name already exists; recordings are never "
                "overwritten, choose another name"
            ) from None
        except OSError as error:
            raise RecordingError(
                f"{target}: cannot create the recording ({error.strerror}); check that the "
                "folder exists and is writable"
            ) from None
        # The umask may have removed bits but never adds them; force exactly 0600.
        writer = cls(
            path=target, fd=fd, intervals=intervals, max_buffered_samples=max_buffered_samples
        )
        started = (started_utc or datetime.now(UTC)).astimezone(UTC)
        fields = {"datetime": started.strftime("%Y-%m-%dT%H:%M:%S%z"), **(file_header_fields or {})}
        try:
            os.fchmod(fd, 0o600)
            writer._write(fmt.MAGIC + fmt.file_header_chunk(fields=fields))
            writer._sync_directory()
        except RecordingError:
            writer.close()
            raise
        except OSError as error:
            writer.close()
            raise writer._os_error("set up", error) from None
        return writer

    # -- streams -------------------------------------------------------------------------

    def add_stream(
        self,
        *,
        name: str,
        type: str,  # the XDF element is called "type"
        channel_count: int,
        nominal_srate: float,
        channel_format: str,
        source_id: str = "",
        desc: ET.Element | None = None,
        extra: Mapping[str, str] | None = None,
        dyadsync: Mapping[str, str] | None = None,
    ) -> int:
        """Write a StreamHeader now and return the new stream's id (1, 2, ...).

        ``desc`` is the header's ``<desc>`` element (copied); ``extra`` adds plain header
        fields; ``dyadsync`` becomes ``<desc><dyadsync>`` (``kind``, ``role``, ``signal``...
        as in docs/recording.md), replacing one already there.
        """
        self._check_usable()
        desc_copy = ET.fromstring(ET.tostring(desc)) if desc is not None else ET.Element("desc")
        if dyadsync is not None:
            for old in desc_copy.findall("dyadsync"):
                desc_copy.remove(old)
            element = ET.SubElement(desc_copy, "dyadsync")
            for key, value in dyadsync.items():
                ET.SubElement(element, key).text = value
        try:
            xml = fmt.stream_header_xml(
                name=name,
                type=type,
                channel_count=channel_count,
                nominal_srate=nominal_srate,
                channel_format=channel_format,
                source_id=source_id,
                extra=extra,
                desc=desc_copy,
            )
        except ValueError as error:
            raise RecordingError(
                f"{self.path}: stream {name!r} cannot be recorded: {error}"
            ) from None
        stream_id = len(self._streams) + 1
        self._write(fmt.stream_header_chunk(stream_id=stream_id, xml=xml))
        self._streams[stream_id] = _Stream(
            stream_id=stream_id,
            name=name,
            channel_format=channel_format,
            channel_count=channel_count,
            clock_offset_interval_s=self._clock_offset_interval_s,
        )
        return stream_id

    def add_lsl_stream(
        self,
        info_xml: str,
        *,
        name: str | None = None,
        drop: Collection[str] = ("hostname",),
        dyadsync: Mapping[str, str] | None = None,
    ) -> int:
        """Add a stream whose header copies an LSL stream's (``pylsl.StreamInfo.as_xml()``,
        e.g. from an inlet's ``info()``), with ``name`` replaced and the fields in ``drop``
        left out (the hostname may name a person). Returns the stream id."""
        try:
            root = ET.fromstring(info_xml)
            channel_count = int(root.findtext("channel_count") or "")
            nominal_srate = float(root.findtext("nominal_srate") or "")
        except (ET.ParseError, ValueError) as error:
            raise RecordingError(
                f"{self.path}: the LSL stream header is not valid ({error})"
            ) from None
        extra = {
            child.tag: child.text or ""
            for child in root
            if child.tag not in _CORE_FIELDS and child.tag not in drop and len(child) == 0
        }
        return self.add_stream(
            name=name if name is not None else root.findtext("name") or "",
            type=root.findtext("type") or "",
            channel_count=channel_count,
            nominal_srate=nominal_srate,
            channel_format=root.findtext("channel_format") or "",
            source_id=root.findtext("source_id") or "",
            desc=root.find("desc"),
            extra=extra,
            dyadsync=dyadsync,
        )

    # -- data ----------------------------------------------------------------------------

    def push(self, stream_id: int, timestamps: Any, values: Any) -> None:
        """Buffer samples: ``timestamps`` (n,) LSL seconds, ``values`` (n, channels) (or (n,)
        for one channel; rows of strings for a string stream). Copies the data.

        Raises :class:`RecordingError` for an unknown stream, non-finite time stamps or
        values that do not fit the stream's format, and (only when more than
        ``max_buffered_samples`` are waiting) when writing fails.
        """
        self._check_usable()
        stream = self._streams.get(stream_id)
        if stream is None:
            raise RecordingError(
                f"{self.path}: no stream with id {stream_id} (known: {sorted(self._streams)})"
            )
        stamps = np.array(timestamps, dtype=np.float64)  # a copy: callers reuse buffers
        if stamps.ndim != 1:
            stamps = stamps.reshape(-1)
        if stamps.size == 0:
            return
        # A sum is NaN or inf if any stamp is (the cheap test for a per-push hot path).
        if not math.isfinite(stamps.sum()):
            raise RecordingError(
                f"{self.path}: stream {stream.name!r} was given non-finite time stamps; "
                "drop or re-stamp those samples before recording"
            )
        try:
            rows = fmt.as_sample_values(
                channel_format=stream.channel_format,
                channel_count=stream.channel_count,
                values=values,
                n_samples=stamps.size,
            )
        except ValueError as error:
            raise RecordingError(f"{self.path}: stream {stream.name!r}: {error}") from None
        stream.pending_stamps.append(stamps)
        stream.pending_values.append(rows)
        stream.pending_count += stamps.size
        self._pending_samples += stamps.size
        if self._pending_samples > self._max_buffered_samples:
            self._write(self._take_samples())

    def tick(self, now_s: float) -> None:
        """Write what is due at session time ``now_s`` (LSL seconds; call every ~0.1 s).

        A clock that steps backwards makes everything due at once rather than never.
        Raises :class:`RecordingError` if the write or ``fsync`` fails; the writer is then
        unusable (start a new recording).
        """
        self._check_usable()
        if not math.isfinite(now_s):
            raise RecordingError(f"{self.path}: tick time must be finite, got {now_s}")
        parts: list[bytes] = []
        if self._flush.due(now_s):
            parts.append(self._take_samples())
        for stream in self._streams.values():
            if stream.clock_offset.due(now_s):
                # Stamps are already on the session clock, so the offset is 0 by design.
                parts.append(
                    fmt.clock_offset_chunk(
                        stream_id=stream.stream_id, collection_time=now_s, offset=0.0
                    )
                )
                stream.clock_offsets.append((now_s, 0.0))
        if self._boundary.due(now_s):
            parts.append(fmt.boundary_chunk())
        self._write(b"".join(parts))
        if self._fsync_cadence.due(now_s):
            self._fsync()

    def close(self) -> None:
        """Write the buffered samples and the StreamFooters, ``fsync`` and close.

        Idempotent. After a failed write the file is only closed (the failure was
        already raised; ``repair`` adds the footers). Raises :class:`RecordingError`
        if the final writes fail (the descriptor is closed anyway).
        """
        if self._closed:
            return
        self._closed = True
        try:
            if self._failure is None:
                self._write(self._take_samples())
                # footers after the last chunk is counted (commit happens on write)
                self._write(b"".join(stream.footer_chunk() for stream in self._streams.values()))
                self._fsync()
        finally:
            os.close(self._fd)

    def __enter__(self) -> XdfWriter:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- facts for the owner ---------------------------------------------------------------

    @property
    def bytes_written(self) -> int:
        """Bytes the file holds (all complete chunks)."""
        return self._size

    def sample_count(self, stream_id: int) -> int:
        """Samples of the stream written to the file so far (not counting buffered ones)."""
        return self._streams[stream_id].sample_count

    # -- internals -----------------------------------------------------------------------

    def _take_samples(self) -> bytes:
        chunks = [stream.take_chunk() for stream in self._streams.values() if stream.pending_count]
        self._pending_samples = 0
        return b"".join(chunks)

    def _check_usable(self) -> None:
        if self._failure is not None:
            raise RecordingError(f"{self._failure} (the recording stopped at that failure)")
        if self._closed:
            raise RecordingError(f"{self.path}: the recording is closed; open a new one")

    def _write(self, blob: bytes) -> None:
        view = memoryview(blob)
        try:
            while view:
                written = os.write(self._fd, view)
                view = view[written:]
        except OSError as error:
            self._fail("write", error)
        self._size += len(blob)
        for stream in self._streams.values():
            stream.commit()

    def _fsync(self) -> None:
        try:
            os.fsync(self._fd)
        except OSError as error:
            self._fail("fsync", error)

    def _sync_directory(self) -> None:
        # The new directory entry must survive a power cut too, not only the file's data.
        directory = os.open(self.path.parent, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)

    def _fail(self, action: str, error: OSError) -> None:
        """Record and raise the failure; first cut a half-written chunk back off the file."""
        note = "the file holds every chunk written before it"
        try:
            os.ftruncate(self._fd, self._size)
        except OSError:
            note = "its last chunk is incomplete: `dyadsync repair` cuts it off"
        self._failure = self._os_error(action, error, note=note)
        raise self._failure from None

    def _os_error(self, action: str, error: OSError, *, note: str = "") -> RecordingError:
        detail = f"; {note}" if note else ""
        return RecordingError(
            f"{self.path}: cannot {action} the recording ({error.strerror or error}){detail}. "
            "Samples from now on are NOT recorded: free disk space or choose another "
            f"folder and start a new recording; `dyadsync repair {self.path}` adds the "
            "missing stream footers"
        )


class _Cadence:
    """Something due every ``interval_s`` of session time, on a fixed grid so that tick
    lateness does not accumulate (offsets stay 5.0 s apart, not 5.0 + a tick)."""

    __slots__ = ("interval_s", "next_s")

    # Tick times are sums of binary fractions: 1025.1 may arrive as 1025.0999999999.
    _TOLERANCE_S: Final = 1e-6

    def __init__(self, interval_s: float) -> None:
        self.interval_s = interval_s
        self.next_s = -math.inf  # the first tick is due

    def due(self, now_s: float) -> bool:
        if now_s < self.next_s - self.interval_s - self._TOLERANCE_S:
            self.next_s = now_s + self.interval_s  # the clock stepped back: due now, not never
            return True
        if now_s < self.next_s - self._TOLERANCE_S:
            return False
        self.next_s += self.interval_s
        if self.next_s <= now_s:  # first tick, or a tick later than a whole interval
            self.next_s = now_s + self.interval_s
        return True

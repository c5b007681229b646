"""Repair a damaged XDF recording into a new file (``dyadsync repair FILE``).

A recording cut by a crash, a full disk or a power loss ends with an incomplete chunk
and lacks its StreamFooters. :func:`repair_file` keeps every complete chunk up to the
first damaged one (found by :func:`streamer.xdf_format.scan_xdf`), appends the missing
StreamFooters (first/last time stamp, sample count and clock offsets, computed from the
kept chunks) and writes ``<FILE>.repaired.xdf``. The original is only read, never
changed, and the output never overwrites anything (``O_EXCL``, mode 0600).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from streamer import xdf_format as fmt
from streamer.errors import RecordingError
from streamer.xdf_read import read_and_scan

__all__ = ["KeptStream", "RepairReport", "repair_file", "repaired_path"]


@dataclass(frozen=True, slots=True)
class KeptStream:
    """One stream of the repaired file. Time stamps are None for an empty stream."""

    stream_id: int
    name: str
    samples: int
    first_timestamp: float | None
    last_timestamp: float | None
    footer_added: bool


@dataclass(frozen=True, slots=True)
class RepairReport:
    """What :func:`repair_file` kept. ``problem`` is why the original stopped being
    readable (None: it was intact and only footers, if any, were added)."""

    source: Path
    output: Path
    streams: tuple[KeptStream, ...]
    seconds_kept: float
    bytes_kept: int
    bytes_dropped: int
    problem: str | None

    def summary(self) -> str:
        """Human-readable lines for the command line."""
        lines = [
            f"{self.source}: " + (self.problem or "no damaged chunk found"),
            f"wrote {self.output}: kept {self.bytes_kept} bytes, dropped {self.bytes_dropped}, "
            f"{self.seconds_kept:.1f} s of data",
        ]
        for stream in self.streams:
            added = ", footer added" if stream.footer_added else ""
            lines.append(
                f"  stream {stream.stream_id} {stream.name!r}: {stream.samples} samples{added}"
            )
        return "\n".join(lines)


def repaired_path(path: str | os.PathLike[str]) -> Path:
    """Where :func:`repair_file` writes by default: ``<path>.repaired.xdf``."""
    return Path(f"{os.fspath(path)}.repaired.xdf")


def repair_file(
    path: str | os.PathLike[str], *, out: str | os.PathLike[str] | None = None
) -> RepairReport:
    """Write the readable part of ``path`` plus the missing footers to ``out``
    (default :func:`repaired_path`) and report what was kept.

    Raises :class:`RecordingError` if ``path`` cannot be read, holds nothing recoverable
    (no complete FileHeader), or ``out`` exists or cannot be written.
    """
    source = Path(path)
    target = Path(out) if out is not None else repaired_path(source)
    data, scan = read_and_scan(source)
    if scan.file_header_xml is None:
        reason = scan.problem.reason if scan.problem else "no FileHeader"
        raise RecordingError(f"{source}: nothing to recover: {reason}")
    kept = []
    footers = []
    for stream in scan.streams.values():
        if not stream.has_footer:
            xml = fmt.footer_xml(
                first_timestamp=stream.first_timestamp or 0.0,
                last_timestamp=stream.last_timestamp or 0.0,
                sample_count=stream.sample_count,
                clock_offsets=stream.clock_offsets,
            )
            footers.append(fmt.stream_footer_chunk(stream_id=stream.stream_id, xml=xml))
        kept.append(
            KeptStream(
                stream_id=stream.stream_id,
                name=stream.name,
                samples=stream.sample_count,
                first_timestamp=stream.first_timestamp,
                last_timestamp=stream.last_timestamp,
                footer_added=not stream.has_footer,
            )
        )
    _write_new_file(target, data[: scan.readable_end] + b"".join(footers))
    firsts = [s.first_timestamp for s in kept if s.first_timestamp is not None]
    lasts = [s.last_timestamp for s in kept if s.last_timestamp is not None]
    return RepairReport(
        source=source,
        output=target,
        streams=tuple(kept),
        seconds_kept=max(lasts) - min(firsts) if firsts else 0.0,
        bytes_kept=scan.readable_end,
        bytes_dropped=scan.size - scan.readable_end,
        problem=scan.problem.reason if scan.problem else None,
    )


def _write_new_file(target: Path, content: bytes) -> None:
    try:
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    except FileExistsError:
        raise RecordingError(
            f"{target}: already exists; remove it or pass another output path"
        ) from None
    except OSError as error:
        raise RecordingError(
            f"{target}: cannot create the repaired file ({error.strerror})"
        ) from None
    try:
        view = memoryview(content)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    except OSError as error:
        raise RecordingError(
            f"{target}: writing the repaired file failed ({error.strerror}); it is incomplete, "
            "delete it and repair again where there is space"
        ) from None
    finally:
        os.close(fd)

"""Read XDF recordings (ours and LabRecorder's) with pyxdf, with clean errors.

pyxdf is the maintained reader, so a file reads here exactly as it reads in anyone's
analysis script. What this module adds is the boundary: the file is first walked with
:func:`streamer.xdf_format.scan_xdf`, which stops at the first incomplete or damaged
chunk. pyxdf then only ever sees chunks that are structurally sound (the whole file, or
its readable prefix), so a corrupt file cannot make it hang, loop or crash: the result
is either the readable part with the damage reported, or a
:class:`~streamer.errors.RecordingError` naming the file and the byte offset. Both passes
are linear in the file size.
"""

from __future__ import annotations

import io
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyxdf

from streamer.errors import RecordingError
from streamer.xdf_format import ScanProblem, XdfScan, scan_xdf

__all__ = ["Recording", "load_recording", "read_and_scan"]


@dataclass(frozen=True, slots=True)
class Recording:
    """What pyxdf read, plus what the scan found.

    ``streams`` and ``file_header`` are pyxdf's ``load_xdf`` results unchanged.
    ``problem`` is None when every byte was readable; otherwise it says where the file
    broke (``problem.offset``) and only the chunks before that were read.
    ``streams_without_footer`` lists stream ids whose StreamFooter is missing (a recording
    that did not close: ``repair`` adds them; the data reads the same either way).
    """

    path: Path
    streams: list[dict[str, Any]]
    file_header: dict[str, Any]
    problem: ScanProblem | None
    streams_without_footer: tuple[int, ...]

    @property
    def damage(self) -> str | None:
        """A message for the user when only part of the file was readable, else None."""
        if self.problem is None:
            return None
        return (
            f"{self.path}: damaged at byte {self.problem.offset} ({self.problem.reason}); "
            f"only the data before it was read (`dyadsync repair {self.path}` saves it)"
        )

    @property
    def complete(self) -> bool:
        """True when the whole file was readable and every stream has its footer."""
        return self.problem is None and not self.streams_without_footer


def read_and_scan(path: str | os.PathLike[str]) -> tuple[bytes, XdfScan]:
    """The file's bytes and its chunk scan; :class:`RecordingError` if it cannot be read."""
    try:
        data = Path(path).read_bytes()
    except OSError as error:
        raise RecordingError(f"{path}: cannot read the recording ({error.strerror})") from None
    return data, scan_xdf(data)


def load_recording(
    path: str | os.PathLike[str],
    *,
    select_streams: Sequence[int] | None = None,
    synchronize_clocks: bool = True,
    dejitter_timestamps: bool = True,
    allow_partial: bool = True,
) -> Recording:
    """Load ``path`` with ``pyxdf.load_xdf`` (options passed through; see pyxdf).

    A damaged file yields its readable part (``Recording.problem`` says where it broke)
    unless ``allow_partial`` is False, in which case it raises. Raises
    :class:`RecordingError` naming the file and the byte offset when nothing is readable
    (not XDF, or damaged before its FileHeader ends), or if pyxdf fails anyway.
    """
    data, scan = read_and_scan(path)
    problem = scan.problem
    if scan.file_header_xml is None or (problem is not None and not allow_partial):
        assert problem is not None  # a scan without a FileHeader always reports why
        raise RecordingError(
            f"{path}: not a readable XDF recording: {problem.reason}"
            + (
                ""
                if scan.file_header_xml is None
                else f" (the first {problem.offset} bytes are readable)"
            )
        )
    readable = io.BytesIO(data if problem is None else data[: scan.readable_end])
    try:
        streams, file_header = pyxdf.load_xdf(
            readable,
            select_streams=list(select_streams) if select_streams is not None else None,
            synchronize_clocks=synchronize_clocks,
            dejitter_timestamps=dejitter_timestamps,
        )
    except Exception as error:
        # The scan passed these bytes, so this is a pyxdf limitation we have not met yet;
        # translate it rather than let a reader traceback reach the user.
        raise RecordingError(
            f"{path}: pyxdf could not read the first {scan.readable_end} bytes "
            f"({type(error).__name__}: {error})"
        ) from error
    without_footer = tuple(
        stream_id for stream_id, stream in scan.streams.items() if not stream.has_footer
    )
    return Recording(
        path=Path(path),
        streams=streams,
        file_header=file_header,
        problem=problem,
        streams_without_footer=without_footer,
    )

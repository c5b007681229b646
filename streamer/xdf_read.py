"""Read XDF recordings (ours and LabRecorder's) with pyxdf, with clean errors.

pyxdf is the maintained reader, so a file reads here exactly as it reads in anyone's
analysis script. What this module adds is the boundary: the file is first walked with
:func:`streamer.xdf_format.scan_xdf`, which stops at the first incomplete or damaged
chunk. pyxdf then only ever sees chunks that are structurally sound (the whole file, or
its readable prefix), so a corrupt file cannot make it hang, loop or crash: the result
is either the readable part with the damage reported, or a
:class:`~streamer.errors.RecordingError` naming the file and the byte offset. Both passes
are linear in the file size.

Why some decoding is our own code: pyxdf 1.17 decodes numeric Samples chunks one sample
at a time in Python (about 2.5 us a sample: 4 s of a 60-minute dyad's 14 s offline
analysis, bench/offline.py). A chunk in which every sample carries its time stamp (all of ours:
:func:`~streamer.xdf_format.numeric_samples_chunk`), or none does, has a constant
per-sample stride, so one structured ``np.frombuffer`` decodes it. Only that decoding is
replaced; pyxdf still reads every file and does everything else (headers, footers,
clock offsets, clock sync, dejittering, segments): it is given the file with each such
chunk shrunk to a one-sample stand-in carrying the chunk's last time stamp (so its state
for deduced stamps is what it would have been), and its documented ``on_chunk`` hook
swaps the decoded arrays back in. The result is therefore pyxdf's by construction, for
any file; chunks mixing stamped and deduced samples, and string chunks, are left to
pyxdf's own loop. ``vectorise=False`` turns the fast path off (the reference it is
tested against).
"""

from __future__ import annotations

import io
import os
import struct
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pyxdf

from streamer import xdf_format as fmt
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
    ``numeric_chunks_vectorised`` / ``numeric_chunks_per_sample`` count the numeric
    Samples chunks of the loaded streams decoded by numpy / left to pyxdf's loop.
    """

    path: Path
    streams: list[dict[str, Any]]
    file_header: dict[str, Any]
    problem: ScanProblem | None
    streams_without_footer: tuple[int, ...]
    numeric_chunks_vectorised: int
    numeric_chunks_per_sample: int

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
    vectorise: bool = True,
) -> Recording:
    """Load ``path`` with ``pyxdf.load_xdf`` (options passed through; see pyxdf).

    A damaged file yields its readable part (``Recording.problem`` says where it broke)
    unless ``allow_partial`` is False, in which case it raises. Raises
    :class:`RecordingError` naming the file and the byte offset when nothing is readable
    (not XDF, or damaged before its FileHeader ends), or if pyxdf fails anyway.
    ``vectorise`` (True) decodes numeric Samples chunks with numpy where that gives
    pyxdf's result (see the module docstring); False leaves every chunk to pyxdf.
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
    selected = None if select_streams is None else frozenset(select_streams)
    decoded = _Predecoded(data, scan, selected=selected, enabled=vectorise)
    try:
        streams, file_header = pyxdf.load_xdf(
            io.BytesIO(decoded.file_for_pyxdf),
            select_streams=list(select_streams) if select_streams is not None else None,
            on_chunk=decoded.swap_in,
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
    decoded.check_all_swapped(path)
    without_footer = tuple(
        stream_id for stream_id, stream in scan.streams.items() if not stream.has_footer
    )
    return Recording(
        path=Path(path),
        streams=streams,
        file_header=file_header,
        problem=problem,
        streams_without_footer=without_footer,
        numeric_chunks_vectorised=decoded.vectorised,
        numeric_chunks_per_sample=decoded.per_sample,
    )


_STAMP = struct.Struct("<d")

# (time stamps, values) of one chunk as pyxdf's _read_chunk3 returns them; None = pyxdf's own.
_Decoded = tuple[npt.NDArray[np.float64], npt.NDArray[Any]] | None


class _Predecoded:
    """The readable chunks with numeric payloads decoded by numpy, and the file pyxdf reads
    instead: the same chunks, each decoded one shrunk to a one-sample stand-in."""

    __slots__ = ("_queues", "file_for_pyxdf", "per_sample", "vectorised")

    def __init__(
        self, data: bytes, scan: XdfScan, *, selected: frozenset[int] | None, enabled: bool
    ) -> None:
        self.vectorised = 0
        self.per_sample = 0
        # Per stream, in file order, what on_chunk hands pyxdf for each Samples chunk.
        self._queues: dict[int, deque[_Decoded]] = {sid: deque() for sid in scan.streams}
        decoders = {
            stream_id: _NumericDecoder(stream)
            for stream_id, stream in scan.streams.items()
            if stream.channel_format in fmt.NUMERIC_FORMATS
            and (selected is None or stream_id in selected)
        }
        view = memoryview(data)
        parts: list[bytes | memoryview] = [view[: len(fmt.MAGIC)]]
        for chunk in scan.chunks:
            original = view[chunk.offset : chunk.end]
            stream_id = chunk.stream_id
            if chunk.tag != fmt.Tag.SAMPLES or stream_id is None:
                parts.append(original)
                continue
            decoder = decoders.get(stream_id)
            result = None
            if decoder is not None:
                result = decoder.decode(view, chunk, enabled=enabled)
                if result is None:
                    self.per_sample += 1
                else:
                    self.vectorised += 1
            self._queues[stream_id].append(result)
            if result is None or decoder is None:
                parts.append(original)
            else:
                parts.append(decoder.stand_in(last_stamp_s=float(result[0][-1])))
        self.file_for_pyxdf = b"".join(parts)

    def swap_in(
        self,
        values: Any,
        stamps: npt.NDArray[np.float64],
        info: dict[str, Any],
        stream_id: int,
    ) -> tuple[Any, npt.NDArray[np.float64], dict[str, Any]]:
        """pyxdf's ``on_chunk``: the chunk's decoded arrays in place of the stand-in's."""
        decoded = self._queues[stream_id].popleft()
        if decoded is None:
            return values, stamps, info
        decoded_stamps, decoded_values = decoded
        return decoded_values, decoded_stamps, info

    def check_all_swapped(self, path: str | os.PathLike[str]) -> None:
        # pyxdf treats an exception in on_chunk as file damage and skips ahead, so a
        # stand-in it did not hand over must be caught here, not trusted.
        left = {sid: len(q) for sid, q in self._queues.items() if any(x is not None for x in q)}
        if left:
            raise RecordingError(
                f"{path}: pyxdf did not return {left} decoded Samples chunks per stream; "
                "read it with load_recording(..., vectorise=False) and report the file"
            )


class _NumericDecoder:
    """One numeric stream's Samples chunks decoded as pyxdf decodes them, in file order."""

    __slots__ = (
        "_deduced",
        "_native",
        "_previous_s",
        "_stamped",
        "_stand_in_after",
        "_stand_in_before",
        "_step_s",
    )

    def __init__(self, stream: fmt.ScannedStream) -> None:
        value_dtype = fmt.NUMERIC_FORMATS[stream.channel_format]
        value_field = ("values", value_dtype, (stream.channel_count,))
        self._stamped = np.dtype([("stamp_bytes", "u1"), ("stamp", "<f8"), value_field])
        self._deduced = np.dtype([("stamp_bytes", "u1"), value_field])
        self._native = value_dtype.newbyteorder("=")  # pyxdf's arrays; the file's are LE
        # pyxdf's nominal interval and its state for deduced stamps (the last stamp, 0.0
        # at first); None once a chunk left to pyxdf moved it to a value not computed here.
        self._step_s = 1.0 / stream.nominal_srate if stream.nominal_srate > 0 else 0.0
        self._previous_s: float | None = 0.0
        # The stand-in chunk around its one time stamp (8 bytes before the zero values),
        # encoded once: a chunk per 0.5 s per stream makes per-chunk encoding add up.
        template = fmt.numeric_samples_chunk(
            stream_id=stream.stream_id,
            timestamps=np.zeros(1),
            values=np.zeros((1, stream.channel_count), dtype=value_dtype),
        )
        stamp_at = len(template) - value_dtype.itemsize * stream.channel_count - _STAMP.size
        self._stand_in_before = template[:stamp_at]
        self._stand_in_after = template[stamp_at + _STAMP.size :]

    def decode(self, view: memoryview, chunk: fmt.ChunkSpan, *, enabled: bool) -> _Decoded:
        """The chunk's (stamps, values), or None if pyxdf must decode it: ``enabled`` is
        False, the chunk is empty, its stride is not constant (stamped and deduced samples
        mixed), or its deduced stamps continue from a chunk pyxdf decodes."""
        decoded = self._decode(view, chunk) if enabled else None
        self._previous_s = None if decoded is None else float(decoded[0][-1])
        return decoded

    def _decode(self, view: memoryview, chunk: fmt.ChunkSpan) -> _Decoded:
        # chunk = [width][length][tag: 2][stream id: 4][count varlen][samples]
        pos = chunk.offset + 1 + view[chunk.offset] + 2 + 4
        count_width = view[pos]
        count = int.from_bytes(view[pos + 1 : pos + 1 + count_width], "little")
        pos += 1 + count_width
        payload = chunk.end - pos
        if count == 0:
            return None
        if payload == count * self._stamped.itemsize:
            records = np.frombuffer(view, dtype=self._stamped, count=count, offset=pos)
            if not (records["stamp_bytes"] == 8).all():
                return None
            stamps = records["stamp"].astype(np.float64)  # a copy: the file's bytes can go
        elif payload == count * self._deduced.itemsize and self._previous_s is not None:
            records = np.frombuffer(view, dtype=self._deduced, count=count, offset=pos)
            if (records["stamp_bytes"] != 0).any():
                return None
            # pyxdf adds the interval sample after sample; a running sum (not
            # previous + k * interval) rounds the same way.
            steps = np.full(count + 1, self._step_s)
            steps[0] = self._previous_s
            stamps = np.add.accumulate(steps)[1:]
        else:
            return None
        return stamps, records["values"].astype(self._native)

    def stand_in(self, *, last_stamp_s: float) -> bytes:
        """The one-sample chunk pyxdf reads instead of a decoded one: its last stamp leaves
        pyxdf's deduced-stamp state where the whole chunk would have."""
        return self._stand_in_before + _STAMP.pack(last_stamp_s) + self._stand_in_after

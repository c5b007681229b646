"""XDF 1.0 bytes: chunk encoders and a chunk scanner (pure: bytes in, bytes or facts out).

The layout follows the XDF 1.0 specification (sccn/xdf wiki "Specifications"): the magic
``XDF:``, then chunks ``[NumLengthBytes][Length][Tag][Content]`` with little-endian
fields. The writer (:mod:`streamer.xdf_writer`) turns pushed arrays into these chunks;
repair (:mod:`streamer.xdf_repair`) and the reader's pre-check (:mod:`streamer.xdf_read`)
use :func:`scan_xdf`, which walks a file's chunks, checks each one's structure against its
stream header, and stops at the first chunk that is incomplete or damaged, reporting the
byte offset where the readable part ends.

Numeric samples are encoded and checked with numpy record views (one vectorised pass per
chunk), so recording costs a small fraction of a core; only string samples and foreign
files that omit time stamps are walked sample by sample.
"""

from __future__ import annotations

import math
import struct
import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any, Final

import numpy as np
import numpy.typing as npt

__all__ = [
    "BOUNDARY_UUID",
    "MAGIC",
    "NUMERIC_FORMATS",
    "ChunkSpan",
    "ScanProblem",
    "ScannedStream",
    "Tag",
    "XdfScan",
    "as_sample_values",
    "boundary_chunk",
    "clock_offset_chunk",
    "encode_chunk",
    "encode_varlen",
    "file_header_chunk",
    "footer_xml",
    "numeric_samples_chunk",
    "scan_xdf",
    "stream_footer_chunk",
    "stream_header_chunk",
    "stream_header_xml",
    "string_samples_chunk",
]

# Names of dyadsync's own streams in a recording (docs/recording.md), shared by the
# recorder that writes them and the player that reads them.
EVENTS_STREAM = "dyadsync-events"
SESSION_STREAM = "dyadsync-session"

MAGIC: Final = b"XDF:"

#: The spec's Boundary chunk content: readers search for it to resynchronise after damage.
BOUNDARY_UUID: Final = bytes(
    [0x43, 0xA5, 0x46, 0xDC, 0xCB, 0xF5, 0x41, 0x0F, 0xB3, 0x0E, 0xD5, 0x46, 0x73, 0x83, 0xCB, 0xE4]
)

#: XDF channel formats with a fixed-size little-endian numpy type.
NUMERIC_FORMATS: Final[Mapping[str, np.dtype[Any]]] = {
    "float32": np.dtype("<f4"),
    "double64": np.dtype("<f8"),
    "int8": np.dtype("i1"),
    "int16": np.dtype("<i2"),
    "int32": np.dtype("<i4"),
    "int64": np.dtype("<i8"),
}
_FORMATS: Final = (*NUMERIC_FORMATS, "string")


class Tag(IntEnum):
    """Chunk tags of XDF 1.0."""

    FILE_HEADER = 1
    STREAM_HEADER = 2
    SAMPLES = 3
    CLOCK_OFFSET = 4
    BOUNDARY = 5
    STREAM_FOOTER = 6


# Chunks whose content starts with a uint32 stream id.
_STREAM_TAGS: Final = frozenset(
    {Tag.STREAM_HEADER, Tag.SAMPLES, Tag.CLOCK_OFFSET, Tag.STREAM_FOOTER}
)
_STREAM_ID = struct.Struct("<I")
_TAG = struct.Struct("<H")
_DOUBLE = struct.Struct("<d")
_CLOCK_OFFSET = struct.Struct("<Idd")


# ---------------------------------------------------------------------------------------
# encoding


def encode_varlen(value: int) -> bytes:
    """The spec's variable-length unsigned integer, in its shortest form (1, 4 or 8 bytes)."""
    if value < 0:
        raise ValueError(f"a variable-length integer cannot be negative, got {value}")
    if value < 1 << 8:
        return bytes((1, value))
    if value < 1 << 32:
        return b"\x04" + value.to_bytes(4, "little")
    return b"\x08" + value.to_bytes(8, "little")


def encode_chunk(*, tag: Tag, content: bytes) -> bytes:
    """One chunk: the length (of tag plus content), the tag, the content."""
    return encode_varlen(len(content) + _TAG.size) + _TAG.pack(tag) + content


def _xml_bytes(root: ET.Element) -> bytes:
    # LabRecorder writes a declaration; pyxdf and MATLAB's load_xdf accept either.
    return b'<?xml version="1.0"?>' + ET.tostring(root, encoding="utf-8", xml_declaration=False)


def file_header_chunk(*, fields: Mapping[str, str]) -> bytes:
    """FileHeader chunk: ``<info><version>1.0</version>`` plus ``fields`` (e.g. datetime)."""
    root = ET.Element("info")
    ET.SubElement(root, "version").text = "1.0"
    for key, value in fields.items():
        ET.SubElement(root, key).text = value
    return encode_chunk(tag=Tag.FILE_HEADER, content=_xml_bytes(root))


def stream_header_xml(
    *,
    name: str,
    type: str,  # the XDF element is called "type"
    channel_count: int,
    nominal_srate: float,
    channel_format: str,
    source_id: str = "",
    extra: Mapping[str, str] | None = None,
    desc: ET.Element | None = None,
) -> bytes:
    """A StreamHeader's XML (``<info>`` root), built with ElementTree so text is escaped.

    ``extra`` adds plain ``<info>`` children (``created_at``, ``uid``, ``version``...) in
    the given order; ``desc`` (an element named ``desc``) is appended as is.
    """
    if channel_format not in _FORMATS:
        raise ValueError(f"channel_format {channel_format!r} is not one of {', '.join(_FORMATS)}")
    if channel_count < 0:
        raise ValueError(f"channel_count must be >= 0, got {channel_count}")
    if not (math.isfinite(nominal_srate) and nominal_srate >= 0):
        raise ValueError(
            f"nominal_srate must be finite and >= 0 (0 = irregular), got {nominal_srate}"
        )
    root = ET.Element("info")
    for key, value in (
        ("name", name),
        ("type", type),
        ("channel_count", str(channel_count)),
        ("nominal_srate", repr(float(nominal_srate))),
        ("channel_format", channel_format),
        ("source_id", source_id),
    ):
        ET.SubElement(root, key).text = value
    for key, value in (extra or {}).items():
        ET.SubElement(root, key).text = value
    if desc is None:
        desc = ET.Element("desc")
    if desc.tag != "desc":
        raise ValueError(f"the desc element must be called 'desc', got {desc.tag!r}")
    root.append(desc)
    return _xml_bytes(root)


def stream_header_chunk(*, stream_id: int, xml: bytes) -> bytes:
    """StreamHeader chunk for ``xml`` (from :func:`stream_header_xml` or a foreign header)."""
    return encode_chunk(tag=Tag.STREAM_HEADER, content=_STREAM_ID.pack(stream_id) + xml)


def as_sample_values(
    *, channel_format: str, channel_count: int, values: Any, n_samples: int
) -> npt.NDArray[Any] | list[list[str]]:
    """``values`` checked and copied for a stream: a new ``(n_samples, channel_count)``
    numeric array of the stream's type, or a list of ``channel_count`` strings per sample.

    A single-channel stream also takes a 1-D array. Integer formats refuse values that
    would change when stored (fractions, NaN, out of range): silently wrapped numbers
    would be wrong data in the file. Raises ``ValueError`` saying what did not fit.
    """
    if channel_format == "string":
        rows = [[str(v) for v in row] for row in values]
        if len(rows) != n_samples or any(len(row) != channel_count for row in rows):
            raise ValueError(
                f"expected {n_samples} samples of {channel_count} strings each, "
                f"got {[len(row) for row in rows][:5]}... ({len(rows)} samples)"
            )
        return rows
    dtype = NUMERIC_FORMATS[channel_format]
    array = np.asarray(values)
    if array.ndim == 1 and channel_count == 1:
        array = array.reshape(-1, 1)
    if array.shape != (n_samples, channel_count):
        raise ValueError(
            f"expected values of shape ({n_samples}, {channel_count}), got {array.shape}"
        )
    if dtype.kind == "i" and array.dtype != dtype and array.size:
        _check_integers(array, channel_format)
    # Always a fresh array: the caller may reuse its buffer after pushing.
    return np.array(array, dtype=dtype)


def _check_integers(array: npt.NDArray[Any], channel_format: str) -> None:
    info = np.iinfo(NUMERIC_FORMATS[channel_format])
    if array.dtype.kind == "f":
        if not (np.isfinite(array).all() and (array == np.round(array)).all()):
            raise ValueError(f"{channel_format} samples must be whole numbers, got fractions/NaN")
    elif array.dtype.kind not in "iub":
        raise ValueError(f"{channel_format} samples must be numbers, got dtype {array.dtype}")
    if array.min() < info.min or array.max() > info.max:
        raise ValueError(
            f"{channel_format} samples must lie in [{info.min}, {info.max}], "
            f"got [{array.min()}, {array.max()}]"
        )


def _record_dtype(value_dtype: np.dtype[Any], channel_count: int) -> np.dtype[Any]:
    # One sample with its own time stamp: [TimeStampBytes=8][double][values], packed.
    return np.dtype(
        [("stamp_bytes", "u1"), ("stamp", "<f8"), ("values", value_dtype, (channel_count,))]
    )


def numeric_samples_chunk(
    *, stream_id: int, timestamps: npt.NDArray[np.float64], values: npt.NDArray[Any]
) -> bytes:
    """Samples chunk of a numeric stream; ``values`` already of the stream's dtype and shape
    ``(n, channels)`` (see :func:`as_sample_values`). Every sample carries its time stamp:
    deduced stamps would make a dejittered or irregular stream's times depend on the reader.
    """
    records = np.empty(len(timestamps), dtype=_record_dtype(values.dtype, values.shape[1]))
    records["stamp_bytes"] = 8
    records["stamp"] = timestamps
    records["values"] = values
    head = _STREAM_ID.pack(stream_id) + encode_varlen(len(timestamps))
    return encode_chunk(tag=Tag.SAMPLES, content=head + records.tobytes())


def string_samples_chunk(
    *, stream_id: int, timestamps: Sequence[float], values: Sequence[Sequence[str]]
) -> bytes:
    """Samples chunk of a string stream (UTF-8, each value length-prefixed)."""
    parts = [_STREAM_ID.pack(stream_id), encode_varlen(len(timestamps))]
    for stamp, row in zip(timestamps, values, strict=True):
        parts.append(b"\x08" + _DOUBLE.pack(stamp))
        for value in row:
            raw = value.encode("utf-8")
            parts.append(encode_varlen(len(raw)))
            parts.append(raw)
    return encode_chunk(tag=Tag.SAMPLES, content=b"".join(parts))


def clock_offset_chunk(*, stream_id: int, collection_time: float, offset: float) -> bytes:
    """ClockOffset chunk: at ``collection_time`` the stream's clock was ``offset`` s behind."""
    return encode_chunk(
        tag=Tag.CLOCK_OFFSET, content=_CLOCK_OFFSET.pack(stream_id, collection_time, offset)
    )


def boundary_chunk() -> bytes:
    """Boundary chunk (the spec's 16-byte UUID), a resynchronisation point for readers."""
    return encode_chunk(tag=Tag.BOUNDARY, content=BOUNDARY_UUID)


def footer_xml(
    *,
    first_timestamp: float,
    last_timestamp: float,
    sample_count: int,
    clock_offsets: Sequence[tuple[float, float]],
) -> bytes:
    """StreamFooter XML with the fields LabRecorder writes (an empty stream has 0 stamps)."""
    root = ET.Element("info")
    ET.SubElement(root, "first_timestamp").text = repr(float(first_timestamp))
    ET.SubElement(root, "last_timestamp").text = repr(float(last_timestamp))
    ET.SubElement(root, "sample_count").text = str(sample_count)
    offsets = ET.SubElement(root, "clock_offsets")
    for time_s, value_s in clock_offsets:
        offset = ET.SubElement(offsets, "offset")
        ET.SubElement(offset, "time").text = repr(float(time_s))
        ET.SubElement(offset, "value").text = repr(float(value_s))
    return _xml_bytes(root)


def stream_footer_chunk(*, stream_id: int, xml: bytes) -> bytes:
    """StreamFooter chunk for ``xml`` (see :func:`footer_xml`)."""
    return encode_chunk(tag=Tag.STREAM_FOOTER, content=_STREAM_ID.pack(stream_id) + xml)


# ---------------------------------------------------------------------------------------
# scanning


@dataclass(frozen=True, slots=True)
class ChunkSpan:
    """Where one complete chunk lies: ``data[offset:end]``."""

    offset: int
    end: int
    tag: int
    stream_id: int | None


@dataclass(frozen=True, slots=True)
class ScanProblem:
    """Why the scan stopped before the end of the data: ``offset`` is the first byte of the
    first chunk that is incomplete or damaged (everything before it is readable)."""

    offset: int
    reason: str


@dataclass(slots=True)
class ScannedStream:
    """What the complete chunks say about one stream (filled in while scanning)."""

    stream_id: int
    header_xml: bytes
    name: str
    channel_count: int
    channel_format: str
    nominal_srate: float
    sample_count: int = 0
    first_timestamp: float | None = None
    last_timestamp: float | None = None
    clock_offsets: list[tuple[float, float]] = field(default_factory=list)
    has_footer: bool = False
    # the last stamp, for samples whose stamp the file leaves to be deduced (spec: last + 1/rate)
    _previous_stamp: float = 0.0


@dataclass(frozen=True, slots=True)
class XdfScan:
    """Result of :func:`scan_xdf`. ``readable_end`` is the offset just after the last
    complete chunk (the whole size when ``problem`` is None)."""

    size: int
    readable_end: int
    problem: ScanProblem | None
    file_header_xml: bytes | None
    streams: dict[int, ScannedStream]
    chunks: list[ChunkSpan]


class _Damaged(Exception):
    """Internal: the chunk being checked is damaged (message = reason)."""


def _read_varlen(data: memoryview, pos: int, end: int) -> tuple[int, int]:
    """(value, position after it); raises _Damaged when it is malformed or runs past ``end``."""
    if pos >= end:
        raise _Damaged("ends inside a length field")
    width = data[pos]
    if width not in (1, 4, 8):
        raise _Damaged(f"has a length field of invalid size {width} (allowed: 1, 4, 8)")
    if pos + 1 + width > end:
        raise _Damaged("ends inside a length field")
    return int.from_bytes(data[pos + 1 : pos + 1 + width], "little"), pos + 1 + width


def _parse_xml(raw: memoryview, what: str) -> ET.Element:
    try:
        return ET.fromstring(bytes(raw))
    except ET.ParseError as error:
        raise _Damaged(f"has {what} XML that does not parse ({error})") from None


def _stream_from_header(stream_id: int, raw: memoryview) -> ScannedStream:
    root = _parse_xml(raw, "StreamHeader")
    # pyxdf (and the spec) need these three; without them no reader can use the stream.
    texts = {
        key: root.findtext(key) for key in ("channel_count", "nominal_srate", "channel_format")
    }
    missing = [key for key, text in texts.items() if text is None]
    if missing:
        raise _Damaged(f"is a StreamHeader without {', '.join(missing)}")
    try:
        channel_count = int(str(texts["channel_count"]))
        nominal_srate = float(str(texts["nominal_srate"]))
    except ValueError:
        raise _Damaged(
            f"is a StreamHeader with channel_count {texts['channel_count']!r} / "
            f"nominal_srate {texts['nominal_srate']!r} that are not numbers"
        ) from None
    channel_format = str(texts["channel_format"])
    if channel_format not in _FORMATS or channel_count < 0 or not math.isfinite(nominal_srate):
        raise _Damaged(
            f"is a StreamHeader with channel_format {channel_format!r}, channel_count "
            f"{channel_count}, nominal_srate {nominal_srate} (not a valid stream)"
        )
    return ScannedStream(
        stream_id=stream_id,
        header_xml=bytes(raw),
        name=root.findtext("name") or "",
        channel_count=channel_count,
        channel_format=channel_format,
        nominal_srate=nominal_srate,
    )


def _check_samples(stream: ScannedStream, data: memoryview, pos: int, end: int) -> None:
    """Walk one Samples chunk's content ``data[pos:end]`` and update the stream's tallies."""
    count, pos = _read_varlen(data, pos, end)
    if stream.channel_format in NUMERIC_FORMATS:
        value_dtype = NUMERIC_FORMATS[stream.channel_format]
        sample_bytes = stream.channel_count * value_dtype.itemsize
        record = _record_dtype(value_dtype, stream.channel_count)
        if end - pos == count * record.itemsize:
            stamps = np.frombuffer(data, dtype=record, count=count, offset=pos)
            if count == 0 or bool((stamps["stamp_bytes"] == 8).all()):
                if count:
                    _tally(stream, count, float(stamps["stamp"][0]), float(stamps["stamp"][-1]))
                return
    else:
        sample_bytes = -1
    # Foreign files may leave stamps to be deduced, and strings vary in length: walk them.
    first: float | None = None
    for _ in range(count):
        if pos >= end:
            raise _Damaged(f"holds fewer than the {count} samples it declares")
        stamp_bytes = data[pos]
        if stamp_bytes == 8:
            if pos + 9 > end:
                raise _Damaged("ends inside a time stamp")
            stamp = _DOUBLE.unpack_from(data, pos + 1)[0]
            pos += 9
        elif stamp_bytes == 0:
            stamp = stream._previous_stamp + (
                1.0 / stream.nominal_srate if stream.nominal_srate > 0 else 0.0
            )
            pos += 1
        else:
            raise _Damaged(f"has a sample with TimeStampBytes {stamp_bytes} (allowed: 0, 8)")
        stream._previous_stamp = stamp
        if first is None:
            first = stamp
        if sample_bytes >= 0:
            pos += sample_bytes
        else:
            for _channel in range(stream.channel_count):
                length, pos = _read_varlen(data, pos, end)
                pos += length
        if pos > end:
            raise _Damaged(f"holds fewer than the {count} samples it declares")
    if pos != end:
        raise _Damaged(f"has {end - pos} bytes after its {count} samples")
    if first is not None:
        _tally(stream, count, first, stream._previous_stamp)


def _tally(stream: ScannedStream, count: int, first: float, last: float) -> None:
    if stream.first_timestamp is None:
        stream.first_timestamp = first
    stream.last_timestamp = last
    stream._previous_stamp = last
    stream.sample_count += count


# The spec's names, for messages.
_TAG_NAMES: Final = {
    Tag.FILE_HEADER: "FileHeader",
    Tag.STREAM_HEADER: "StreamHeader",
    Tag.SAMPLES: "Samples chunk",
    Tag.CLOCK_OFFSET: "ClockOffset chunk",
    Tag.BOUNDARY: "Boundary chunk",
    Tag.STREAM_FOOTER: "StreamFooter",
}
_MIN_CONTENT: Final = {
    Tag.FILE_HEADER: 0,
    Tag.STREAM_HEADER: 4,
    Tag.SAMPLES: 4,
    Tag.CLOCK_OFFSET: 20,
    Tag.BOUNDARY: 16,
    Tag.STREAM_FOOTER: 4,
}


def scan_xdf(data: bytes | bytearray | memoryview) -> XdfScan:
    """Walk the chunks of XDF ``data`` (a whole file, e.g. an ``mmap``) and check each one.

    Stops at the first chunk that is incomplete (the file was cut) or damaged: bad length
    field, unknown stream, content that does not match its stream header, malformed XML,
    a wrong Boundary UUID, a FileHeader that is missing or repeated. Chunks with tags
    beyond XDF 1.0 are skipped, as the spec asks. Linear in the size of ``data`` and never
    allocates more than a chunk's worth, so no input can hang it.
    """
    view = memoryview(data).cast("B")
    size = len(view)
    streams: dict[int, ScannedStream] = {}
    chunks: list[ChunkSpan] = []
    file_header: bytes | None = None

    def result(end: int, problem: ScanProblem | None) -> XdfScan:
        return XdfScan(size, end, problem, file_header, streams, chunks)

    if bytes(view[:4]) != MAGIC:
        return result(0, ScanProblem(0, "does not start with the XDF magic bytes 'XDF:'"))
    pos = len(MAGIC)
    while pos < size:
        start = pos
        tag_name = "chunk"
        try:
            length, pos = _read_varlen(view, pos, size)
            if length < _TAG.size:
                raise _Damaged(f"declares length {length}, less than its 2-byte tag")
            end = pos + length
            if end > size:
                raise _Damaged(
                    f"declares {length} bytes but only {size - pos} remain (the file was cut)"
                )
            tag = _TAG.unpack_from(view, pos)[0]
            pos += _TAG.size
            tag_name = _TAG_NAMES.get(tag, f"chunk with tag {tag}")
            if (file_header is None) != (tag == Tag.FILE_HEADER):
                raise _Damaged("is out of place (the FileHeader must come first, and only once)")
            if tag not in Tag._value2member_map_:
                chunks.append(ChunkSpan(start, end, tag, None))
                pos = end
                continue
            if end - pos < _MIN_CONTENT[Tag(tag)]:
                raise _Damaged(
                    f"has {end - pos} content bytes, fewer than the {_MIN_CONTENT[Tag(tag)]} "
                    "its kind needs"
                )
            stream_id = None
            if tag in _STREAM_TAGS:
                stream_id = _STREAM_ID.unpack_from(view, pos)[0]
                pos += _STREAM_ID.size
                if (tag == Tag.STREAM_HEADER) == (stream_id in streams):
                    state = (
                        "has a second StreamHeader"
                        if tag == Tag.STREAM_HEADER
                        else "has no StreamHeader"
                    )
                    raise _Damaged(f"belongs to stream {stream_id}, which {state} before it")
            _check_content(Tag(tag), stream_id, streams, view, pos, end)
            if tag == Tag.FILE_HEADER:
                file_header = bytes(view[pos:end])
        except _Damaged as damage:
            return result(start, ScanProblem(start, f"{tag_name} at byte {start} {damage}"))
        chunks.append(ChunkSpan(start, end, tag, stream_id))
        pos = end
    return result(size, None)


def _check_content(
    tag: Tag,
    stream_id: int | None,
    streams: dict[int, ScannedStream],
    view: memoryview,
    pos: int,
    end: int,
) -> None:
    """Validate one chunk's content ``view[pos:end]`` (after the stream id)."""
    if tag == Tag.FILE_HEADER:
        _parse_xml(view[pos:end], "FileHeader")
    elif tag == Tag.STREAM_HEADER:
        assert stream_id is not None
        streams[stream_id] = _stream_from_header(stream_id, view[pos:end])
    elif tag == Tag.SAMPLES:
        assert stream_id is not None
        stream = streams[stream_id]
        if stream.has_footer:
            raise _Damaged(f"adds samples to stream {stream_id} after its StreamFooter")
        _check_samples(stream, view, pos, end)
    elif tag == Tag.CLOCK_OFFSET:
        assert stream_id is not None
        if end - pos != 16:
            raise _Damaged(f"is a ClockOffset with {end - pos} content bytes instead of 16")
        time_s, value_s = struct.unpack_from("<dd", view, pos)
        streams[stream_id].clock_offsets.append((time_s, value_s))
    elif tag == Tag.BOUNDARY:
        if bytes(view[pos:end]) != BOUNDARY_UUID:
            raise _Damaged("is a Boundary chunk without the spec's UUID")
    elif tag == Tag.STREAM_FOOTER:
        assert stream_id is not None
        _parse_xml(view[pos:end], "StreamFooter")
        streams[stream_id].has_footer = True

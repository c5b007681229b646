"""The XDF file layer: what XdfWriter writes reads back through pyxdf exactly, and the
scanner / repair / reader handle cut and garbled files (no network, no LSL)."""

from __future__ import annotations

import os
import re
import stat
import struct
import xml.etree.ElementTree as ET
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pylsl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streamer import xdf_format as fmt
from streamer.errors import RecordingError
from streamer.xdf_read import load_recording
from streamer.xdf_repair import repair_file, repaired_path
from streamer.xdf_writer import XdfWriter, recording_path

RAW: dict[str, Any] = {"synchronize_clocks": False, "dejitter_timestamps": False}


def _by_name(recording: Any) -> dict[str, dict[str, Any]]:
    return {stream["info"]["name"][0]: stream for stream in recording.streams}


def _write_session(path: Path, *, seconds: float = 12.0, close: bool = True) -> XdfWriter:
    """A small two-stream session ticked every 0.1 s: a 100 Hz counter stream and a string
    marker stream with one marker per second."""
    writer = XdfWriter.open(path)
    counter = writer.add_stream(
        name="counter", type="Test", channel_count=1, nominal_srate=100, channel_format="int32"
    )
    markers = writer.add_stream(
        name="markers", type="Markers", channel_count=1, nominal_srate=0, channel_format="string"
    )
    for step in range(round(seconds * 10)):
        k = np.arange(step * 10, step * 10 + 10)
        writer.push(counter, 1000.0 + k / 100, k)
        if step % 10 == 0:
            writer.push(markers, [1000.0 + step / 10], [[f"marker {step // 10}"]])
        writer.tick(1000.0 + (step + 1) / 10)
    if close:
        writer.close()
    return writer


@pytest.mark.parametrize("channel_format", sorted(fmt.NUMERIC_FORMATS))
def test_numeric_round_trip_is_exact(tmp_path: Path, channel_format: str) -> None:
    dtype = fmt.NUMERIC_FORMATS[channel_format]
    rng = np.random.default_rng(7)
    if dtype.kind == "i":
        info = np.iinfo(dtype)
        values = rng.integers(info.min, info.max, size=(300, 3), endpoint=True, dtype=dtype)
        values[0] = [info.min, info.max, 0]
    else:
        values = rng.normal(scale=1e3, size=(300, 3)).astype(dtype)
        values[0] = [np.finfo(dtype).max, np.finfo(dtype).tiny, -0.0]
    stamps = 5000.0 + np.cumsum(rng.uniform(0.001, 0.01, size=300))
    with XdfWriter.open(tmp_path / "n.xdf") as writer:
        sid = writer.add_stream(
            name="s", type="T", channel_count=3, nominal_srate=250, channel_format=channel_format
        )
        for start in range(0, 300, 37):  # uneven pushes and ticks
            writer.push(sid, stamps[start : start + 37], values[start : start + 37])
            writer.tick(float(stamps[min(start + 36, 299)]))
    stream = load_recording(tmp_path / "n.xdf", **RAW).streams[0]
    assert stream["info"]["channel_format"] == [channel_format]
    assert stream["time_series"].dtype == dtype
    np.testing.assert_array_equal(stream["time_series"], values)
    np.testing.assert_array_equal(stream["time_stamps"], stamps)


def test_strings_round_trip_with_unicode_markup_and_empty_values(tmp_path: Path) -> None:
    rows = [["", "<b>&amp;</b>"], ["émotion 🦀", '{"event": "segment"}'], ["x" * 300, "\n"]]
    with XdfWriter.open(tmp_path / "s.xdf") as writer:
        sid = writer.add_stream(
            name="m", type="Markers", channel_count=2, nominal_srate=0, channel_format="string"
        )
        writer.push(sid, [1.0, 2.5, 2.5], rows)
    stream = load_recording(tmp_path / "s.xdf", **RAW).streams[0]
    assert stream["time_series"] == rows
    np.testing.assert_array_equal(stream["time_stamps"], [1.0, 2.5, 2.5])


def test_empty_streams_have_headers_and_zero_footers(tmp_path: Path) -> None:
    with XdfWriter.open(tmp_path / "e.xdf") as writer:
        writer.add_stream(
            name="num", type="T", channel_count=2, nominal_srate=32, channel_format="float32"
        )
        writer.add_stream(
            name="str", type="M", channel_count=1, nominal_srate=0, channel_format="string"
        )
        writer.tick(10.0)
    streams = _by_name(load_recording(tmp_path / "e.xdf", **RAW))
    assert streams["num"]["time_series"].shape == (0, 2)
    assert streams["str"]["time_series"] == []
    for stream in streams.values():
        footer = stream["footer"]["info"]
        assert footer["sample_count"] == ["0"]
        assert float(footer["first_timestamp"][0]) == float(footer["last_timestamp"][0]) == 0.0


def test_footer_clock_offsets_and_boundaries_follow_the_cadence(tmp_path: Path) -> None:
    path = tmp_path / "c.xdf"
    _write_session(path, seconds=31.0)
    recording = load_recording(path, **RAW)
    assert recording.complete
    for stream in recording.streams:
        # one at the first tick (1000.1 s), then every 5 s of session time
        np.testing.assert_allclose(stream["clock_times"], 1000.1 + 5.0 * np.arange(7))
        assert stream["clock_values"] == [0.0] * 7
        footer = stream["footer"]["info"]
        offsets = footer["clock_offsets"][0]["offset"]
        assert [float(o["time"][0]) for o in offsets] == stream["clock_times"]
        assert int(footer["sample_count"][0]) == len(stream["time_stamps"])
        assert float(footer["first_timestamp"][0]) == stream["time_stamps"][0]
        assert float(footer["last_timestamp"][0]) == stream["time_stamps"][-1]
    counter = _by_name(recording)["counter"]
    np.testing.assert_array_equal(counter["time_series"][:, 0], np.arange(3100))
    scan = fmt.scan_xdf(path.read_bytes())
    boundaries = [c for c in scan.chunks if c.tag == fmt.Tag.BOUNDARY]
    assert len(boundaries) == 4  # at 1000.1, 1010.1, 1020.1, 1030.1
    # with zero offsets, clock synchronisation must not move a single stamp
    synced = _by_name(load_recording(path, dejitter_timestamps=False))["counter"]
    np.testing.assert_allclose(synced["time_stamps"], counter["time_stamps"], atol=1e-9)


def test_samples_reach_the_file_within_the_flush_interval(tmp_path: Path) -> None:
    path = tmp_path / "f.xdf"
    writer = XdfWriter.open(path, flush_interval_s=0.5)
    sid = writer.add_stream(
        name="c", type="T", channel_count=1, nominal_srate=10, channel_format="double64"
    )
    writer.tick(0.0)  # first tick: clock offset + boundary, nothing buffered yet

    def on_disk() -> int:
        return fmt.scan_xdf(path.read_bytes()).streams[sid].sample_count

    writer.push(sid, [0.1, 0.2], [1.0, 2.0])
    writer.tick(0.3)
    assert on_disk() == 0  # still buffered: 0.3 s since the last flush
    writer.tick(0.5)
    assert on_disk() == 2
    writer.push(sid, [0.6], [3.0])
    writer.tick(0.2)  # the clock stepped backwards: flush now rather than never
    assert on_disk() == 3
    writer.close()


def test_file_is_0600_and_never_overwritten(tmp_path: Path) -> None:
    old_umask = os.umask(0)  # a permissive umask must not widen the mode
    try:
        path = tmp_path / "r.xdf"
        XdfWriter.open(path).close()
    finally:
        os.umask(old_umask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    before = path.read_bytes()
    with pytest.raises(RecordingError, match="already exists"):
        XdfWriter.open(path)
    assert path.read_bytes() == before
    with pytest.raises(RecordingError, match="cannot create"):
        XdfWriter.open(tmp_path / "missing-dir" / "x.xdf")


def test_header_escapes_text_and_carries_dyadsync_desc(tmp_path: Path) -> None:
    desc = ET.Element("desc")
    ET.SubElement(ET.SubElement(ET.SubElement(desc, "channels"), "channel"), "label").text = "ECG"
    with XdfWriter.open(tmp_path / "h.xdf") as writer:
        writer.add_stream(
            name='therapist-ecg <&">',
            type="ECG",
            channel_count=1,
            nominal_srate=256,
            channel_format="float32",
            source_id="dev&1",
            desc=desc,
            dyadsync={"kind": "raw", "role": "therapist", "signal": "ecg"},
        )
    info = load_recording(tmp_path / "h.xdf", **RAW).streams[0]["info"]
    assert info["name"] == ['therapist-ecg <&">']
    assert info["source_id"] == ["dev&1"]
    assert info["nominal_srate"] == ["256.0"]
    described = info["desc"][0]
    assert described["channels"][0]["channel"][0]["label"] == ["ECG"]
    assert described["dyadsync"][0] == {"kind": ["raw"], "role": ["therapist"], "signal": ["ecg"]}


def test_lsl_header_is_copied_without_hostname(tmp_path: Path) -> None:
    info = pylsl.StreamInfo("Polar H10 of someone", "ECG", 2, 130.0, pylsl.cf_int16, "src-9")
    info.desc().append_child("channels").append_child("channel").append_child_value("unit", "uV")
    with XdfWriter.open(tmp_path / "l.xdf") as writer:
        writer.add_lsl_stream(info.as_xml(), name="client-ecg", dyadsync={"kind": "raw"})
    header = load_recording(tmp_path / "l.xdf", **RAW).streams[0]["info"]
    assert header["name"] == ["client-ecg"]
    assert header["type"] == ["ECG"]
    assert header["channel_format"] == ["int16"]
    assert header["source_id"] == ["src-9"]
    assert "hostname" not in header
    assert header["version"][0]  # other LSL fields are kept
    assert header["desc"][0]["channels"][0]["channel"][0]["unit"] == ["uV"]


def test_bad_input_raises_recording_error_naming_the_stream(tmp_path: Path) -> None:
    writer = XdfWriter.open(tmp_path / "b.xdf")
    sid = writer.add_stream(
        name="ecg", type="ECG", channel_count=2, nominal_srate=256, channel_format="int16"
    )
    with pytest.raises(RecordingError, match=r"shape \(1, 2\)"):
        writer.push(sid, [1.0], [1, 2, 3])
    with pytest.raises(RecordingError, match="whole numbers"):
        writer.push(sid, [1.0], [[0.5, 1]])
    with pytest.raises(RecordingError, match=r"\[-32768, 32767\]"):
        writer.push(sid, [1.0], [[40000, 1]])
    with pytest.raises(RecordingError, match=r"'ecg'.*non-finite"):
        writer.push(sid, [np.nan], [[1, 1]])
    with pytest.raises(RecordingError, match="no stream with id 9"):
        writer.push(9, [1.0], [[1, 1]])
    with pytest.raises(RecordingError, match="channel_format 'uint8'"):
        writer.add_stream(
            name="x", type="T", channel_count=1, nominal_srate=1, channel_format="uint8"
        )
    buffer = np.array([[1, 2]])
    writer.push(sid, [1.0], buffer)
    buffer[:] = 99  # the writer copied the pushed values
    writer.close()
    writer.close()  # idempotent
    with pytest.raises(RecordingError, match="closed"):
        writer.push(sid, [2.0], [[1, 1]])
    stream = load_recording(tmp_path / "b.xdf", **RAW).streams[0]
    np.testing.assert_array_equal(stream["time_series"], [[1, 2]])


def test_recording_path_names_rooms_not_people(tmp_path: Path) -> None:
    started = datetime(2026, 3, 4, 5, 6, 7, tzinfo=UTC)
    assert recording_path(tmp_path, room="room-1", started_utc=started) == (
        tmp_path / "room-1_20260304T050607Z.xdf"
    )
    with pytest.raises(RecordingError, match="cannot be part of a file name"):
        recording_path(tmp_path, room="../etc", started_utc=started)


def test_varlen_uses_the_shortest_form() -> None:
    assert fmt.encode_varlen(255) == b"\x01\xff"
    assert fmt.encode_varlen(256) == b"\x04" + struct.pack("<I", 256)
    assert fmt.encode_varlen(1 << 32) == b"\x08" + struct.pack("<Q", 1 << 32)
    assert fmt.boundary_chunk() == b"\x01\x12\x05\x00" + fmt.BOUNDARY_UUID


def test_every_truncation_repairs_to_its_complete_chunks(tmp_path: Path) -> None:
    path = tmp_path / "t.xdf"
    _write_session(path, seconds=3.0, close=False)  # like a killed recorder: no footers
    data = path.read_bytes()
    chunk_ends = {c.end for c in fmt.scan_xdf(data).chunks}
    counters_seen = set()
    # every chunk edge (cut exactly at, one before, one after) plus a stride through the rest
    edges = {end + delta for end in chunk_ends for delta in (-1, 0, 1)}
    cuts = sorted(
        (edges | set(range(len(fmt.MAGIC), len(data), 11))) & set(range(4, len(data) + 1))
    )
    for cut in cuts:
        cut_path = tmp_path / f"cut{cut}.xdf"
        cut_path.write_bytes(data[:cut])
        scan = fmt.scan_xdf(data[:cut])
        assert scan.readable_end == max(e for e in chunk_ends | {4} if e <= cut)
        if scan.file_header_xml is None:
            with pytest.raises(RecordingError, match=re.escape(str(cut_path))):
                repair_file(cut_path)
            continue
        report = repair_file(cut_path)
        assert cut_path.read_bytes() == data[:cut]  # the original is untouched
        assert report.bytes_dropped == cut - scan.readable_end
        repaired = load_recording(report.output, **RAW)
        assert repaired.complete
        streams = _by_name(repaired)
        if "counter" in streams:
            counts = streams["counter"]["time_series"].reshape(-1)
            np.testing.assert_array_equal(counts, np.arange(len(counts)))  # a prefix, no gaps
            kept = {s.name: s for s in report.streams}["counter"]
            assert kept.samples == len(counts)
            counters_seen.add(len(counts))
    # flushes at 1000.1 + 0.5 k s: the last (1002.6 s) wrote samples 0..259; the rest was
    # still buffered when the "recorder" stopped without closing
    assert max(counters_seen) == 260
    with pytest.raises(RecordingError, match="already exists"):
        repair_file(cut_path)  # the last cut was repaired above: never overwritten


def test_repair_report_counts_streams_samples_and_seconds(tmp_path: Path) -> None:
    path = tmp_path / "k.xdf"
    _write_session(path, seconds=5.0, close=False)
    report = repair_file(path, out=tmp_path / "fixed.xdf")
    assert report.output == tmp_path / "fixed.xdf"
    assert report.problem is None and report.bytes_dropped == 0
    kept = {s.name: s for s in report.streams}
    # samples pushed after the last flush (1004.6 s) never reached the file, as after a kill
    assert kept["counter"].samples == 460 and kept["counter"].footer_added
    assert kept["markers"].samples == 5
    assert report.seconds_kept == pytest.approx(4.59)
    assert "counter" in report.summary()
    assert repaired_path(path) == Path(f"{path}.repaired.xdf")


def test_unreadable_files_raise_naming_file_and_offset(tmp_path: Path) -> None:
    not_xdf = tmp_path / "x.xdf"
    not_xdf.write_bytes(b"PK\x03\x04 a zip file")
    with pytest.raises(RecordingError, match=re.escape(str(not_xdf)) + ".*magic"):
        load_recording(not_xdf)
    path = tmp_path / "d.xdf"
    _write_session(path, seconds=2.0)
    data = bytearray(path.read_bytes())
    second = fmt.scan_xdf(bytes(data)).chunks[5]
    data[second.offset] = 3  # an invalid length-field size
    path.write_bytes(bytes(data))
    with pytest.raises(RecordingError, match=rf"byte {second.offset}"):
        load_recording(path, allow_partial=False)
    partial = load_recording(path)
    assert partial.problem is not None and partial.problem.offset == second.offset
    assert partial.damage is not None and str(path) in partial.damage
    with pytest.raises(RecordingError, match="cannot read"):
        load_recording(tmp_path / "absent.xdf")


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    flips=st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255)), min_size=1, max_size=6)
)
def test_garbled_bytes_give_data_or_a_recording_error(
    tmp_path: Path, flips: list[tuple[int, int]]
) -> None:
    path = tmp_path / "g.xdf"
    if not path.exists():
        _write_session(path, seconds=2.0)
    data = bytearray(path.read_bytes())
    for position, value in flips:
        data[position % len(data)] = value
    garbled = tmp_path / "garbled.xdf"
    garbled.write_bytes(bytes(data))
    try:
        recording = load_recording(garbled)
    except RecordingError as error:
        assert str(garbled) in str(error)
        return
    scan = fmt.scan_xdf(bytes(data))
    assert (recording.problem is None) == (scan.readable_end == len(data))

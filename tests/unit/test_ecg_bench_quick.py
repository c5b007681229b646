"""bench/dsp_throughput.py runs in quick mode and prints its table (CI smoke test)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.paths import testdata

REPO = Path(__file__).resolve().parents[2]


def test_throughput_bench_quick_mode_prints_its_table() -> None:
    testdata("ecg/mitbih/100.dat")  # the bench reads the shared recordings
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    result = subprocess.run(
        [sys.executable, str(REPO / "bench" / "dsp_throughput.py"), "--quick"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split()[:2] == ["signal", "implementation"]
    for name in (
        "HeartRateProcessor (0.1 s chunks)",
        "HeartRateProcessor (0.05 s chunks)",
        "detect_r_peaks",
        "ecg_process",
        "eda_features",
        "eda_process",
    ):
        row = next(line for line in lines if name in line)
        assert float(row.split()[-2]) > 0  # x real time column
    assert any(line.startswith("target 1000x real time") for line in lines)

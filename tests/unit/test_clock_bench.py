"""The ingest clock benchmark runs in quick mode and prints its table."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "bench" / "ingest_clock.py"


def test_ingest_clock_bench_quick_mode() -> None:
    result = subprocess.run(
        [sys.executable, str(BENCH), "--quick"], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[1].split()[:3] == ["stream", "raw", "err"]
    rows = {line.split()[0]: line.split() for line in lines[3:] if line.strip()}
    assert {"Polar", "simulator-like", "E4"} <= set(rows)
    for row in rows.values():
        numbers = [float(cell) for cell in row[-7:]]
        raw_err_ms, dejitter_err_ms, agreement_s = numbers[0], numbers[1], numbers[-1]
        assert dejitter_err_ms < raw_err_ms / 5  # smoothing must beat the raw baseline
        assert agreement_s < 1e-6  # and equal the per-sample reference

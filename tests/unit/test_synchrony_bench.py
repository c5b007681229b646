"""bench/synchrony.py runs in quick mode (as CI does) and prints its tables."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_synchrony_bench_quick_mode() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "synchrony.py"), "--quick"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    out = result.stdout
    rows = (
        "naive per-lag corrcoef",
        "naive vectorised block",
        "incremental co-moments",
        "StreamingCrossCorrelation",
    )
    for row in rows:
        assert out.count(row) == 2, out  # one row per grid rate (4 and 32 Hz)
    assert "dyads per core in real time" in out

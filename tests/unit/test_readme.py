"""The README's Python example runs as printed."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

README = Path(__file__).resolve().parents[2] / "README.md"


def test_readme_python_example_runs() -> None:
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.DOTALL)
    assert len(blocks) == 1
    result = subprocess.run(
        [sys.executable, "-c", blocks[0]], capture_output=True, text=True, check=False, timeout=120
    )
    assert result.returncode == 0, result.stderr
    beats, scrs, windows, lags = (int(n) for n in re.findall(r"\d+", result.stdout))
    # ~2 min at ~68 bpm; rMEA: ceil((480 - 120 - 20 + 1) / 40) = 9 windows, 2 * 20 + 1 = 41 lags
    assert 100 < beats < 180 and scrs >= 0 and (windows, lags) == (9, 41)

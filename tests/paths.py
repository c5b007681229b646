"""Where tests find the shared real recordings (never copied into this repository)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

_DEFAULT = Path(__file__).resolve().parents[2] / "shared" / "data"


def testdata_dir() -> Path:
    """Root of the shared recordings: $DYADSYNC_TESTDATA, else ../shared/data."""
    return Path(os.environ.get("DYADSYNC_TESTDATA", str(_DEFAULT)))


def testdata(relative: str) -> Path:
    """Path of one shared recording; skips the test (with the reason) if the folder is absent.

    CI always has the folder, so this skip only fires on a developer machine without it.
    """
    root = testdata_dir()
    if not root.is_dir():
        pytest.skip(f"shared test data folder {root} is absent (set DYADSYNC_TESTDATA)")
    path = root / relative
    if not path.exists():
        raise FileNotFoundError(f"expected shared recording {path} is missing")
    return path


# Named test*, but a helper, not a test: keep pytest from collecting it when imported.
testdata.__test__ = False  # type: ignore[attr-defined]
testdata_dir.__test__ = False  # type: ignore[attr-defined]

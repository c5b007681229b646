"""Test-wide setup: tests (and the LSL processes they start, LabRecorder included) use
the liblsl configuration the dyadsync command line ships, so a test of discovery tests
what users get."""

from __future__ import annotations

import os
from pathlib import Path

os.environ.setdefault(
    "LSLAPICFG", str(Path(__file__).resolve().parents[1] / "streamer" / "lsl_api.cfg")
)

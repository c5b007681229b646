"""Fixtures shared by the integration tests."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

DYADSYNC = str(Path(sys.executable).with_name("dyadsync"))
# Long enough for estimates (35 s), the surrogate null (about 85 s) and the demo
# scenario's first episode (coupled from 1:00) to be decided live.
DEMO_RECORDING_S = 110.0


@dataclass(frozen=True)
class DemoRecording:
    """A real `dyadsync demo --record` run: the file, its session store, its stdout."""

    path: Path
    store: Path
    stdout: str


@pytest.fixture(scope="session")
def demo_recording(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DemoRecording]:
    """One live recording for every test that needs one (the run takes 110 s of real
    time); tests only read it."""
    directory = tmp_path_factory.mktemp("demo-recording")
    store = directory / "store.sqlite3"
    done = subprocess.run(
        [DYADSYNC, "demo", "--no-browser", "--ws-port", "0", "--dashboard-port", "0",
         "--record", str(directory), "--duration", str(DEMO_RECORDING_S)],
        capture_output=True, text=True, timeout=DEMO_RECORDING_S + 120,
        env={**os.environ, "DYADSYNC_STORE": str(store)},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    files = sorted(directory.glob("demo_*.xdf"))
    assert len(files) == 1, (done.stdout, done.stderr)
    yield DemoRecording(path=files[0], store=store, stdout=done.stdout)

"""`dyadsync demo` as a user runs it: URL printed, Ctrl-C stops it cleanly with a summary."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

DYADSYNC = str(Path(sys.executable).with_name("dyadsync"))


def test_demo_prints_the_dashboard_url_and_stops_cleanly_on_ctrl_c() -> None:
    demo = subprocess.Popen(
        [DYADSYNC, "demo", "--no-browser", "--ws-port", "0", "--dashboard-port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert demo.stdout is not None
        first_line = demo.stdout.readline()
        assert first_line.startswith("Dashboard: http://127.0.0.1:"), first_line
        time.sleep(5.0)
        demo.send_signal(signal.SIGINT)
        out, err = demo.communicate(timeout=20)
    finally:
        if demo.poll() is None:
            demo.kill()
    assert demo.returncode == 0, err
    assert "Traceback" not in err
    assert "Synchrony updates sent:" in out
    rows = [line.split() for line in out.splitlines() if line.startswith(("therapist-", "client-"))]
    assert len(rows) == 4
    for name, received, lost, duplicated, status in rows:
        assert int(received) > 0 and int(lost) == 0 and int(duplicated) == 0, name
        assert status == "connected"

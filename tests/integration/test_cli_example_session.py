"""The shipped example session file works with `dyadsync simulate` as the README shows:
`dyadsync run --example-session` finds it, `streams --session` and `run` accept it.

These use the simulator's default source prefix on purpose (that is what the file is for).
"""

from __future__ import annotations

import signal
import subprocess
from pathlib import Path

import pytest

from streamer.session import load_session, simulator_session
from tests.integration.test_cli_signals import DYADSYNC, cli, summary_rows

pytestmark = pytest.mark.integration


def example_session() -> Path:
    result = subprocess.run(
        [DYADSYNC, "run", "--example-session"], capture_output=True, text=True, check=True
    )
    return Path(result.stdout.strip())


def test_example_session_is_the_simulators_session() -> None:
    path = example_session()
    assert path.name == "simulator.toml" and path.parent.name == "sessions"
    loaded, built = load_session(path), simulator_session()
    assert loaded.signals == built.signals
    assert [(s.role, s.signal, s.device.name, s.source_id) for s in loaded.sensors] == [
        (s.role, s.signal, s.device.name, s.source_id) for s in built.sensors
    ]
    assert dict(loaded.synchrony) == dict(built.synchrony)


def test_streams_and_run_accept_the_example_against_the_simulator() -> None:
    session = str(example_session())
    with cli("simulate") as simulate:
        simulate.wait_for("Publishing 4 LSL streams with source_id prefix 'dyadsync-sim'")
        streams = subprocess.run(
            [DYADSYNC, "streams", "--session", session, "--timeout", "3"],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert streams.returncode == 0, streams.stdout + streams.stderr
        for sensor in ("therapist ecg", "therapist eda", "client ecg", "client eda"):
            assert sensor in streams.stdout
        run = subprocess.run(
            [
                DYADSYNC,
                "run",
                session,
                "--duration",
                "4",
                "--no-browser",
                "--ws-port",
                "0",
                "--dashboard-port",
                "0",
            ],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        simulate.finish(send=signal.SIGTERM)
    assert run.returncode == 0, run.stderr
    rows = summary_rows(run.stdout)
    assert sorted(rows) == ["client-ecg", "client-eda", "therapist-ecg", "therapist-eda"]
    for name, (received, lost, duplicated, state) in rows.items():
        assert int(received) > 0 and lost == duplicated == "0" and state == "connected", name

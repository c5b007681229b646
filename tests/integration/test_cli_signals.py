"""SIGINT, SIGTERM and SIGHUP end every command in order, with its summary and exit status 0.

Real ``dyadsync`` processes, real LSL (``dyadsync simulate`` with a unique source prefix
per test), real signals. :class:`Cli` is shared with the other ``test_cli_*`` files.
"""

from __future__ import annotations

import contextlib
import queue
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import pytest

pytestmark = pytest.mark.integration

DYADSYNC = str(Path(sys.executable).with_name("dyadsync"))
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
EXAMPLE_PREFIX = "dyadsync-sim"


class Cli:
    """A running ``dyadsync`` command whose output lines are collected as they come, so a
    test can wait for a line (the command reached a given stage) and then signal it."""

    def __init__(self, *args: str) -> None:
        self.process = subprocess.Popen(
            [DYADSYNC, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        self.stdout: list[str] = []
        self.stderr: list[str] = []
        self._lines: queue.Queue[tuple[str, str]] = queue.Queue()
        assert self.process.stdout is not None and self.process.stderr is not None
        self._readers = [
            threading.Thread(target=self._read, args=(pipe, name, lines), daemon=True)
            for pipe, name, lines in (
                (self.process.stdout, "stdout", self.stdout),
                (self.process.stderr, "stderr", self.stderr),
            )
        ]
        for reader in self._readers:
            reader.start()

    def _read(self, pipe: IO[str], name: str, lines: list[str]) -> None:
        for line in pipe:
            lines.append(line)
            self._lines.put((name, line))

    def wait_for(self, text: str, *, timeout_s: float = 60.0) -> str:
        """The first new output line containing ``text``; fails if the command ends first."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                _, line = self._lines.get(timeout=0.1)
            except queue.Empty:
                if self.process.poll() is not None and all(not r.is_alive() for r in self._readers):
                    break
                continue
            if text in line:
                return line
        raise AssertionError(f"no line with {text!r}; stdout {self.out!r}, stderr {self.err!r}")

    def finish(self, *, send: signal.Signals | None = None, timeout_s: float = 60.0) -> int:
        """Send ``send`` (if any), wait for the exit and all output; the exit status."""
        if send is not None:
            self.process.send_signal(send)
        status = self.process.wait(timeout=timeout_s)
        for reader in self._readers:
            reader.join(timeout=10)
        return status

    @property
    def out(self) -> str:
        return "".join(self.stdout)

    @property
    def err(self) -> str:
        return "".join(self.stderr)

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


@contextlib.contextmanager
def cli(*args: str) -> Iterator[Cli]:
    """A :class:`Cli` that is killed if the test leaves it running."""
    command = Cli(*args)
    try:
        yield command
    finally:
        command.kill()


@contextlib.contextmanager
def simulating(prefix: str) -> Iterator[Cli]:
    """``dyadsync simulate`` publishing (its outlets exist) until the block ends."""
    with cli("simulate", "--source-prefix", prefix) as command:
        command.wait_for("Publishing 4 LSL streams")
        yield command
        command.finish(send=signal.SIGINT)


def session_file(directory: Path, prefix: str) -> Path:
    """The shipped example session with the simulator's source prefix replaced, so tests
    use streams of their own (the example's is the simulator's default)."""
    example = subprocess.run(
        [DYADSYNC, "run", "--example-session"], capture_output=True, text=True, check=True
    ).stdout.strip()
    text = Path(example).read_text()
    assert text.count(f'"{EXAMPLE_PREFIX}-') == 4
    path = directory / f"{prefix}.toml"
    path.write_text(text.replace(f'"{EXAMPLE_PREFIX}-', f'"{prefix}-'))
    return path


def summary_rows(out: str) -> dict[str, list[str]]:
    """The per-stream rows of a run summary: name -> received, lost, duplicated, status."""
    rows = [line.split() for line in out.splitlines() if line.startswith(("therapist-", "client-"))]
    return {row[0]: row[1:] for row in rows}


def assert_stopped_by(command: Cli, status: int, sig: signal.Signals) -> None:
    assert status == 0, command.err
    assert f"dyadsync: {sig.name} received" in command.err
    assert "Traceback" not in command.err


@pytest.fixture
def simulator() -> Iterator[str]:
    """A ``dyadsync simulate`` of the test's own; yields its source prefix."""
    prefix = f"test-sig-{uuid.uuid4().hex[:8]}"
    with simulating(prefix):
        yield prefix


@pytest.mark.parametrize("sig", STOP_SIGNALS, ids=lambda s: s.name)
def test_simulate_prints_what_it_sent(sig: signal.Signals) -> None:
    prefix = f"test-sig-{uuid.uuid4().hex[:8]}"
    with cli("simulate", "--source-prefix", prefix) as command:
        command.wait_for("Publishing 4 LSL streams")
        time.sleep(1.0)
        status = command.finish(send=sig)
        assert_stopped_by(command, status, sig)
        sent = command.out.split("Samples sent:")[1]
        counts = dict(item.split() for item in sent.strip().split(", "))
        assert len(counts) == 4 and all(int(n) > 0 for n in counts.values()), sent


@pytest.mark.parametrize("sig", STOP_SIGNALS, ids=lambda s: s.name)
def test_run_prints_its_summary(sig: signal.Signals, simulator: str, tmp_path: Path) -> None:
    session = session_file(tmp_path, simulator)
    with cli(
        "run", str(session), "--no-browser", "--ws-port", "0", "--dashboard-port", "0"
    ) as command:
        command.wait_for("Dashboard: http://127.0.0.1:")
        time.sleep(2.0)
        status = command.finish(send=sig)
        assert_stopped_by(command, status, sig)
        assert "Synchrony updates sent:" in command.out
        rows = summary_rows(command.out)
        assert sorted(rows) == ["client-ecg", "client-eda", "therapist-ecg", "therapist-eda"]
        for name, (received, lost, duplicated, state) in rows.items():
            assert int(received) > 0 and lost == duplicated == "0", name
            assert state == "connected", name


@pytest.mark.parametrize("sig", (signal.SIGTERM, signal.SIGHUP), ids=lambda s: s.name)
def test_demo_prints_its_summary(sig: signal.Signals) -> None:
    # SIGINT: tests/integration/test_demo_cli.py
    with cli("demo", "--no-browser", "--ws-port", "0", "--dashboard-port", "0") as command:
        command.wait_for("Dashboard: http://127.0.0.1:")
        time.sleep(2.0)
        status = command.finish(send=sig)
        assert_stopped_by(command, status, sig)
        assert len(summary_rows(command.out)) == 4


@pytest.mark.parametrize("sig", STOP_SIGNALS, ids=lambda s: s.name)
def test_run_stops_at_once_while_waiting_for_streams(sig: signal.Signals, tmp_path: Path) -> None:
    session = session_file(tmp_path, f"absent-{uuid.uuid4().hex[:8]}")
    with cli(
        "run", str(session), "--wait", "120", "--ws-port", "0", "--dashboard-port", "0"
    ) as command:
        command.wait_for("Waiting up to 120 s")
        started = time.monotonic()
        status = command.finish(send=sig, timeout_s=30)
        assert time.monotonic() - started < 10  # not after the 120 s wait
        assert status == 0, command.err
        assert f"{sig.name} received before it started; stopped" in command.err
        assert "Traceback" not in command.err and command.out == ""


@pytest.mark.parametrize("sig", STOP_SIGNALS, ids=lambda s: s.name)
def test_streams_finishes_its_listing(sig: signal.Signals, simulator: str) -> None:
    with cli("streams", "--timeout", "3") as command:
        command.wait_for("Looking for LSL streams")
        status = command.finish(send=sig)
        assert status == 0, command.err
        assert f"{sig.name} received, stopped after listing" in command.err
        assert "LSL stream(s) visible" in command.out
        assert f"{simulator}-client-eda" in command.out  # the listing is complete

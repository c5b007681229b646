"""Bad input at the command line gives one clear message and a non-zero exit, no traceback."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

DYADSYNC = str(Path(sys.executable).with_name("dyadsync"))


def run_cli(*args: str, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [DYADSYNC, *args], capture_output=True, text=True, timeout=timeout, check=False
    )


def test_malformed_scenario_names_file_key_and_allowed_values(tmp_path: Path) -> None:
    scenario = tmp_path / "bad.toml"
    scenario.write_text(
        "[scenario]\nduration_s = 120\n\n"
        '[[episode]]\nstart_s = 10\nend_s = 60\ncoupling = 0.8\nleader = "supervisor"\n'
    )
    result = run_cli("demo", "--scenario", str(scenario), "--no-browser", "--duration", "1")
    assert result.returncode == 2
    assert str(scenario) in result.stderr
    assert "episode[0].leader" in result.stderr
    assert "'supervisor'" in result.stderr
    assert "client, therapist" in result.stderr
    assert "Traceback" not in result.stderr


def test_scenario_that_is_not_toml_is_reported(tmp_path: Path) -> None:
    scenario = tmp_path / "broken.toml"
    scenario.write_text("[scenario\nduration_s = ")
    result = run_cli("simulate", "--scenario", str(scenario), "--duration", "1")
    assert result.returncode == 2
    assert "not valid TOML" in result.stderr and str(scenario) in result.stderr


def test_missing_stream_names_it_and_says_how_to_start_the_simulator(tmp_path: Path) -> None:
    prefix = f"absent-{uuid.uuid4().hex[:8]}"
    session = tmp_path / "session.toml"
    session.write_text(
        f'[session]\nroom = "room-1"\nsignals = ["ecg"]\n\n'
        f'[therapist.ecg]\ndevice = "dyadsync_simulator"\nsource_id = "{prefix}-therapist-ecg"\n\n'
        f'[client.ecg]\ndevice = "dyadsync_simulator"\nsource_id = "{prefix}-client-ecg"\n'
    )
    result = run_cli("run", str(session), "--wait", "1", "--duration", "1")
    assert result.returncode == 1, result.stderr
    assert f"{prefix}-therapist-ecg" in result.stderr
    assert "dyadsync simulate" in result.stderr
    assert "Traceback" not in result.stderr


def test_exposed_bind_without_token_is_refused_before_starting() -> None:
    result = run_cli("demo", "--host", "0.0.0.0", "--no-browser", "--duration", "1")
    assert result.returncode == 2
    assert "token" in result.stderr


def test_streams_exits_non_zero_when_the_session_is_incomplete(tmp_path: Path) -> None:
    prefix = f"absent-{uuid.uuid4().hex[:8]}"
    session = tmp_path / "session.toml"
    session.write_text(
        f'[session]\nsignals = ["eda"]\n\n'
        f'[therapist.eda]\ndevice = "dyadsync_simulator"\nsource_id = "{prefix}-t"\n\n'
        f'[client.eda]\ndevice = "dyadsync_simulator"\nsource_id = "{prefix}-c"\n'
    )
    result = run_cli("streams", "--session", str(session), "--timeout", "0.5")
    assert result.returncode == 1
    assert f"MISSING    therapist eda: device 'dyadsync_simulator', source_id='{prefix}-t'" in (
        result.stdout
    )


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (
            ("streams", "--timeout", "-1"),
            "argument --timeout: '-1' must be a number of seconds > 0",
        ),
        (("demo", "--duration", "0"), "argument --duration: '0' must be a number of seconds > 0"),
        (("demo", "--ws-port", "70000"), "argument --ws-port: '70000' is not a port number"),
    ],
)
def test_nonsense_options_are_refused_by_the_parser(args: tuple[str, ...], fragment: str) -> None:
    result = run_cli(*args)
    assert result.returncode == 2 and fragment in result.stderr


@pytest.fixture
def taken_port() -> Iterator[str]:
    """A port another program listens on."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        yield str(taken.getsockname()[1])


def test_port_in_use_is_one_clear_line(taken_port: str) -> None:
    result = run_cli("demo", "--no-browser", "--duration", "5", "--ws-port", taken_port)
    assert result.returncode == 2
    assert f"cannot listen for websocket clients on 127.0.0.1:{taken_port}" in result.stderr
    assert "choose another --ws-port (0 picks a free one)" in result.stderr
    assert "Traceback" not in result.stderr


# (extra arguments, what the one line must say); {port} is a port in use.
EARLY_ERRORS = [
    (
        ("--ws-port", "{port}"),
        "error: cannot listen for websocket clients on 127.0.0.1:{port}: the port is in use; "
        "choose another --ws-port (0 picks a free one)",
    ),
    (
        ("--dashboard-port", "{port}"),
        "error: cannot listen for the dashboard on 127.0.0.1:{port}: the port is in use; "
        "choose another --dashboard-port (0 picks a free one)",
    ),
    (("--host", "0.0.0.0"), "set a token (--token or DYADSYNC_TOKEN)"),
    (
        ("--host", "0.0.0.0", "--token", "t0k"),
        "name each with --allow-origin (repeatable; scheme://host:port, no path)",
    ),
    (
        ("--host", "0.0.0.0", "--token", "t0k", "--allow-origin", "http://clinic:5006/dashboard"),
        "--allow-origin 'http://clinic:5006/dashboard' is not an origin (an origin has no "
        "path, query or fragment); expected an exact browser origin: scheme://host:port",
    ),
    (("--allow-origin", "clinic:5006"), "the scheme must be http or https"),
    (("--certfile", "clinic.crt"), "--certfile and --keyfile go together"),
    (("--certfile", "/nonexistent.crt", "--keyfile", "/nonexistent.key"), "--certfile"),
    (("--mqtt-username", "bridge"), "--mqtt-username needs --mqtt-host"),
    (("--mqtt-host", "127.0.0.1", "--mqtt-qos", "3"), "--mqtt-qos"),
    # TEST-NET-3 (RFC 5737): never an address of this machine.
    (("--host", "203.0.113.7", "--token", "t0k"), "--host is not an address of this machine"),
]


@pytest.mark.parametrize(("extra", "message"), EARLY_ERRORS, ids=lambda v: str(v)[:40])
def test_option_errors_come_before_stream_discovery_with_status_2(
    extra: tuple[str, ...], message: str, taken_port: str, tmp_path: Path
) -> None:
    # The session's streams do not exist and discovery would wait 60 s for them: an error
    # within seconds, and not the missing streams, shows the check came first.
    prefix = f"absent-{uuid.uuid4().hex[:8]}"
    session = tmp_path / "session.toml"
    session.write_text(
        f'[session]\nsignals = ["eda"]\n\n'
        f'[therapist.eda]\ndevice = "dyadsync_simulator"\nsource_id = "{prefix}-t"\n\n'
        f'[client.eda]\ndevice = "dyadsync_simulator"\nsource_id = "{prefix}-c"\n'
    )
    args = [arg.format(port=taken_port) for arg in extra]
    started = time.monotonic()
    result = run_cli("run", str(session), "--wait", "60", "--no-browser", *args)
    assert time.monotonic() - started < 30
    assert result.returncode == 2, result.stderr
    assert message.format(port=taken_port) in result.stderr
    assert "Waiting up to" not in result.stderr and "not found" not in result.stderr
    assert len(result.stderr.splitlines()) == 1 and "Traceback" not in result.stderr


def test_bad_session_file_comes_before_stream_discovery(tmp_path: Path) -> None:
    session = tmp_path / "session.toml"
    session.write_text('[session]\nsignals = ["eda", "emg"]\n')
    result = run_cli("run", str(session), "--wait", "60")
    assert result.returncode == 2
    assert f"{session}: [session.signals] value ['eda', 'emg'] is not allowed" in result.stderr


def test_rooms_need_their_own_names_and_a_folder_to_record_in(tmp_path: Path) -> None:
    sessions = []
    for name in ("a", "b"):
        path = tmp_path / f"{name}.toml"
        path.write_text(
            '[session]\nroom = "room-1"\nsignals = ["eda"]\n\n'
            '[therapist.eda]\ndevice = "dyadsync_simulator"\n\n'
            '[client.eda]\ndevice = "dyadsync_simulator"\n'
        )
        sessions.append(str(path))
    result = run_cli("run", *sessions, "--no-browser")
    assert result.returncode == 2 and "two sessions use the room name 'room-1'" in result.stderr
    other = tmp_path / "c.toml"
    other.write_text(Path(sessions[0]).read_text().replace("room-1", "room-2"))
    result = run_cli("run", sessions[0], str(other), "--record", str(tmp_path / "one.xdf"))
    assert result.returncode == 2 and "give a folder" in result.stderr, result.stderr


def test_run_without_a_session_says_how_to_get_one() -> None:
    result = run_cli("run")
    assert result.returncode == 2 and "--example-session" in result.stderr

"""Pytest fixtures that run a real mosquitto broker on a free localhost port.

Import the fixtures into a test module (``from tests.integration.mosquitto import
mosquitto_fixture``); they are named ``mosquitto``, ``mosquitto_auth`` and
``mosquitto_tls`` (the functions carry a suffix so a test's argument does not shadow the
import). Each broker has its own config file in ``tmp_path``, no persistence, and
can be killed and started again on the same port (:meth:`Broker.kill`,
:meth:`Broker.start`), for outage tests. Variants: anonymous (``mosquitto``), a
password file made by ``mosquitto_passwd`` (``mosquitto_auth``), and a TLS listener
with a CA and server certificate made by the ``openssl`` CLI (``mosquitto_tls``).
"""

from __future__ import annotations

import getpass
import shutil
import socket
import ssl
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.certs import openssl

MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
MOSQUITTO_PASSWD = shutil.which("mosquitto_passwd") or "/usr/bin/mosquitto_passwd"
HOST = "127.0.0.1"
USERNAME = "clinic-bridge"
PASSWORD = "correct horse battery staple"
_READY_TIMEOUT_S = 5.0


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((HOST, 0))
        return int(probe.getsockname()[1])


@dataclass(slots=True, kw_only=True)
class Broker:
    """One mosquitto configuration; its process comes and goes with start/kill."""

    port: int
    config_path: Path
    log_path: Path
    ca_path: Path | None = None
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        """Start mosquitto and return once it accepts TCP connections."""
        assert self.process is None, "already running"
        with self.log_path.open("ab") as log_file:
            self.process = subprocess.Popen(
                [MOSQUITTO, "-c", str(self.config_path)],
                stdout=log_file,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + _READY_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                self.process = None
                pytest.fail(f"mosquitto exited at start:\n{self.log_path.read_text()}")
            try:
                with socket.create_connection((HOST, self.port), timeout=0.2):
                    return
            except OSError:
                time.sleep(0.02)
        self.kill()
        pytest.fail(f"mosquitto did not listen within {_READY_TIMEOUT_S} s")

    def kill(self) -> None:
        """SIGKILL: the broker vanishes as in a crash (no clean disconnects)."""
        if self.process is not None:
            self.process.kill()
            self.process.wait(timeout=5)
            self.process = None

    def client_tls(self) -> ssl.SSLContext | None:
        """A TLS context trusting this broker's CA (None for a plain listener)."""
        return None if self.ca_path is None else ssl.create_default_context(cafile=self.ca_path)


def _broker(tmp_path: Path, *, extra: list[str], ca_path: Path | None = None) -> Iterator[Broker]:
    port = free_port()
    config_path = tmp_path / "mosquitto.conf"
    lines = [
        f"listener {port} {HOST}",
        "persistence false",
        "log_dest stderr",  # unbuffered: the log is complete even after a SIGKILL
        "log_type error",
        "log_type warning",
        "log_type notice",
        "log_type information",
        # Run as root, mosquitto would switch to the 'mosquitto' user, which cannot read
        # tmp_path; without root this line has no effect.
        f"user {getpass.getuser()}",
        *extra,
    ]
    config_path.write_text("\n".join(lines) + "\n")
    broker = Broker(
        port=port, config_path=config_path, log_path=tmp_path / "mosquitto.log", ca_path=ca_path
    )
    broker.start()
    try:
        yield broker
    finally:
        broker.kill()


@pytest.fixture(name="mosquitto")
def mosquitto_fixture(tmp_path: Path) -> Iterator[Broker]:
    """A running anonymous broker."""
    yield from _broker(tmp_path, extra=["allow_anonymous true"])


@pytest.fixture(name="mosquitto_auth")
def mosquitto_auth_fixture(tmp_path: Path) -> Iterator[Broker]:
    """A running broker that only accepts :data:`USERNAME` / :data:`PASSWORD`."""
    password_file = tmp_path / "passwd"
    subprocess.run(
        [MOSQUITTO_PASSWD, "-b", "-c", str(password_file), USERNAME, PASSWORD],
        check=True,
        capture_output=True,
    )
    yield from _broker(tmp_path, extra=["allow_anonymous false", f"password_file {password_file}"])


def make_certificates(directory: Path) -> tuple[Path, Path, Path]:
    """A self-signed CA and a server certificate it signed for 127.0.0.1/localhost:
    (ca.crt, server.crt, server.key)."""
    days = "2"
    openssl(
        "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", days,
        "-keyout", "ca.key", "-out", "ca.crt", "-subj", "/CN=dyadsync test CA",
        cwd=directory,
    )  # fmt: skip
    openssl(
        "req", "-newkey", "rsa:2048", "-nodes",
        "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=localhost",
        cwd=directory,
    )  # fmt: skip
    (directory / "san.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    openssl(
        "x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
        "-CAcreateserial", "-days", days, "-extfile", "san.ext", "-out", "server.crt",
        cwd=directory,
    )  # fmt: skip
    return directory / "ca.crt", directory / "server.crt", directory / "server.key"


@pytest.fixture(name="mosquitto_tls")
def mosquitto_tls_fixture(tmp_path: Path) -> Iterator[Broker]:
    """A running anonymous broker with only a TLS listener; ``ca_path`` is its CA."""
    ca_path, cert_path, key_path = make_certificates(tmp_path)
    yield from _broker(
        tmp_path,
        extra=[
            "allow_anonymous true",
            f"cafile {ca_path}",
            f"certfile {cert_path}",
            f"keyfile {key_path}",
        ],
        ca_path=ca_path,
    )

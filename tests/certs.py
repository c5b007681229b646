"""Real certificates for the TLS tests, made with the ``openssl`` command line (as
docs/operations.md tells a clinic to make its own)."""

from __future__ import annotations

import subprocess
from pathlib import Path


def openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def self_signed(
    directory: Path,
    name: str,
    *,
    names: str = "DNS:localhost,IP:127.0.0.1",
    key_type: str = "ec",
) -> tuple[Path, Path]:
    """A self-signed certificate for ``names`` (subjectAltName) and its key:
    (NAME.crt, NAME.key) in ``directory``."""
    new_key = ["-newkey", "rsa:2048"] if key_type == "rsa" else ["-newkey", "ec"]
    new_key += [] if key_type == "rsa" else ["-pkeyopt", "ec_paramgen_curve:P-256"]
    openssl(
        "req", "-x509", *new_key, "-nodes", "-days", "2",
        "-keyout", f"{name}.key", "-out", f"{name}.crt",
        "-subj", f"/CN={names.split(',')[0].split(':', 1)[1]}",
        "-addext", f"subjectAltName={names}",
        cwd=directory,
    )  # fmt: skip
    return directory / f"{name}.crt", directory / f"{name}.key"

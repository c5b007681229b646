"""TLS: real certificates made by the openssl command line, real handshakes over loopback,
and every broken certificate/key pair refused with the flag to fix."""

from __future__ import annotations

import asyncio
import ssl
from pathlib import Path

import pytest
import websockets

from dsp.exceptions import ConfigError
from server.tls import TlsConfig, exposure_warning
from tests.certs import openssl
from tests.certs import self_signed as make_self_signed

CLINIC_NAME = "DNS:dyadsync.clinic.lan,IP:192.168.1.10"  # not 127.0.0.1, as in clinics


def self_signed(directory: Path, name: str, *, key_type: str = "ec") -> TlsConfig:
    """A self-signed certificate as docs/operations.md makes one, for a clinic's name."""
    certfile, keyfile = make_self_signed(directory, name, names=CLINIC_NAME, key_type=key_type)
    return TlsConfig(certfile=certfile, keyfile=keyfile)


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("certs")


@pytest.fixture(scope="module")
def tls(certs: Path) -> TlsConfig:
    return self_signed(certs, "server", key_type="rsa")


@pytest.fixture(scope="module")
def other_tls(certs: Path) -> TlsConfig:
    return self_signed(certs, "other")


async def echo_once(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.write(await reader.readline())
    await writer.drain()
    writer.close()


async def round_trip(*, server: ssl.SSLContext, client: ssl.SSLContext) -> tuple[bytes, str]:
    """A line echoed by a TLS server on 127.0.0.1; the line and the TLS version used."""
    listener = await asyncio.start_server(echo_once, "127.0.0.1", 0, ssl=server)
    async with listener:
        port = listener.sockets[0].getsockname()[1]
        reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=client)
        writer.write(b"hello\n")
        echoed = await reader.readline()
        version = writer.get_extra_info("ssl_object").version()
        writer.close()
        await writer.wait_closed()
    return echoed, version


# --- handshakes over loopback ---------------------------------------------------------


async def test_round_trip_over_loopback(tls: TlsConfig) -> None:
    echoed, version = await round_trip(server=tls.server_context(), client=tls.client_context())
    assert echoed == b"hello\n"
    assert version in {"TLSv1.2", "TLSv1.3"}


async def test_websocket_round_trip_over_wss(tls: TlsConfig) -> None:
    async def echo(connection: websockets.ServerConnection) -> None:
        async for message in connection:
            await connection.send(message)

    async with websockets.serve(echo, "127.0.0.1", 0, ssl=tls.server_context()) as server:
        port = server.sockets[0].getsockname()[1]
        uri = f"wss://127.0.0.1:{port}/"
        async with websockets.connect(uri, ssl=tls.client_context()) as client:
            await client.send("sync")
            assert await client.recv() == "sync"


async def test_client_trusts_no_other_self_signed_certificate(
    tls: TlsConfig, other_tls: TlsConfig
) -> None:
    with pytest.raises(ssl.SSLCertVerificationError):
        await round_trip(server=other_tls.server_context(), client=tls.client_context())


async def test_client_trusts_its_certificate_not_its_issuer(certs: Path) -> None:
    """A clinic CA's certificate for this machine: the CA's other certificates (another
    machine's) are refused, though the chain file holds the CA."""
    openssl(
        "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
        "-days", "2", "-keyout", "ca.key", "-out", "ca.crt", "-subj", "/CN=Clinic CA",
        cwd=certs,
    )  # fmt: skip
    for leaf in ("this", "that"):
        openssl(
            "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-keyout", f"{leaf}.key", "-out", f"{leaf}.csr", "-subj", f"/CN={leaf}.clinic.lan",
            cwd=certs,
        )  # fmt: skip
        openssl(
            "x509", "-req", "-in", f"{leaf}.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
            "-CAcreateserial", "-days", "2", "-out", f"{leaf}.leaf.crt",
            cwd=certs,
        )  # fmt: skip
        chain = (certs / f"{leaf}.leaf.crt").read_text() + (certs / "ca.crt").read_text()
        (certs / f"{leaf}.chain.crt").write_text(chain)
    this = TlsConfig(certfile=certs / "this.chain.crt", keyfile=certs / "this.key")
    that = TlsConfig(certfile=certs / "that.chain.crt", keyfile=certs / "that.key")

    echoed, _ = await round_trip(server=this.server_context(), client=this.client_context())
    assert echoed == b"hello\n"
    with pytest.raises(ssl.SSLCertVerificationError):
        await round_trip(server=that.server_context(), client=this.client_context())


def test_contexts_require_tls_1_2_or_later(tls: TlsConfig) -> None:
    for context in (tls.server_context(), tls.client_context()):
        assert context.minimum_version >= ssl.TLSVersion.TLSv1_2
    assert tls.client_context().verify_mode is ssl.CERT_REQUIRED


# --- refused when built, naming the flag --------------------------------------------


def test_missing_files_name_their_flag(tls: TlsConfig, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"--certfile '.*nowhere\.crt' does not exist"):
        TlsConfig(certfile=tmp_path / "nowhere.crt", keyfile=tls.keyfile)
    with pytest.raises(ConfigError, match=r"--keyfile '.*nowhere\.key' does not exist"):
        TlsConfig(certfile=tls.certfile, keyfile=tmp_path / "nowhere.key")
    with pytest.raises(ConfigError, match=r"--certfile .* is a directory"):
        TlsConfig(certfile=tmp_path, keyfile=tls.keyfile)


@pytest.mark.parametrize("key_type", ["rsa", "ec"])  # the certificate's type, and another
def test_key_of_another_certificate(tls: TlsConfig, certs: Path, key_type: str) -> None:
    other = self_signed(certs, f"other-{key_type}", key_type=key_type)
    with pytest.raises(ConfigError, match=r"--keyfile .* is not the private key of --certfile"):
        TlsConfig(certfile=tls.certfile, keyfile=other.keyfile)


def test_corrupt_certificate(tls: TlsConfig, tmp_path: Path) -> None:
    lines = tls.certfile.read_text().splitlines()
    corrupt = tmp_path / "corrupt.crt"
    corrupt.write_text("\n".join([lines[0], *lines[3:]]) + "\n")  # body cut short
    with pytest.raises(ConfigError, match=r"--certfile .* holds a corrupt certificate"):
        TlsConfig(certfile=corrupt, keyfile=tls.keyfile)


def test_corrupt_key(tls: TlsConfig, tmp_path: Path) -> None:
    lines = tls.keyfile.read_text().splitlines()
    corrupt = tmp_path / "corrupt.key"
    corrupt.write_text("\n".join([lines[0], *lines[3:]]) + "\n")
    with pytest.raises(ConfigError, match=r"--keyfile .* is not a usable PEM private key"):
        TlsConfig(certfile=tls.certfile, keyfile=corrupt)


def test_key_and_certificate_swapped(tls: TlsConfig) -> None:
    with pytest.raises(ConfigError, match=r"--certfile .* holds no PEM certificate"):
        TlsConfig(certfile=tls.keyfile, keyfile=tls.certfile)


def test_encrypted_key_is_refused_without_prompting(tls: TlsConfig, tmp_path: Path) -> None:
    openssl(
        "pkey", "-in", str(tls.keyfile), "-aes256", "-passout", "pass:secret",
        "-out", "encrypted.key",
        cwd=tmp_path,
    )  # fmt: skip
    with pytest.raises(ConfigError, match=r"--keyfile .* is encrypted"):
        TlsConfig(certfile=tls.certfile, keyfile=tmp_path / "encrypted.key")


def test_expired_certificate(tmp_path: Path) -> None:
    # `openssl req -x509` cannot back-date; `openssl ca` can, with a minimal database.
    (tmp_path / "index.txt").touch()
    (tmp_path / "serial").write_text("01\n")
    (tmp_path / "ca.cnf").write_text(
        "[ca]\ndefault_ca = old\n[old]\ndatabase = index.txt\nnew_certs_dir = .\n"
        "serial = serial\ndefault_md = sha256\npolicy = any\n[any]\ncommonName = supplied\n"
    )
    openssl(
        "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
        "-keyout", "old.key", "-out", "old.csr", "-subj", "/CN=old",
        cwd=tmp_path,
    )  # fmt: skip
    openssl(
        "ca", "-batch", "-config", "ca.cnf", "-selfsign", "-keyfile", "old.key",
        "-in", "old.csr", "-out", "old.crt", "-notext",
        "-startdate", "20200101000000Z", "-enddate", "20200102000000Z",
        cwd=tmp_path,
    )  # fmt: skip
    with pytest.raises(ConfigError, match=r"--certfile .* certificate has expired"):
        TlsConfig(certfile=tmp_path / "old.crt", keyfile=tmp_path / "old.key")


def test_certificate_and_key_in_one_file(tls: TlsConfig, tmp_path: Path) -> None:
    combined = tmp_path / "combined.pem"
    combined.write_text(tls.keyfile.read_text() + tls.certfile.read_text())
    TlsConfig(certfile=combined, keyfile=combined)


# --- exposure -----------------------------------------------------------------------


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "::1", "127.0.0.2"])
def test_no_warning_on_loopback(host: str) -> None:
    assert exposure_warning(host=host, tls=None) is None


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.10", "dyadsync.clinic.lan"])
def test_warning_beyond_loopback_without_tls(host: str, tls: TlsConfig) -> None:
    warning = exposure_warning(host=host, tls=None)
    assert warning is not None
    assert repr(host) in warning and "clear text" in warning and "--certfile" in warning
    assert exposure_warning(host=host, tls=tls) is None

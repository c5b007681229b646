"""TLS for ``wss://`` and ``https://``: one certificate and key, checked before anything starts.

Clinics run dyadsync on isolated networks, usually with a self-signed certificate. A
:class:`TlsConfig` loads the pair into the contexts it hands out, so whatever could go
wrong with the files (missing, unreadable, corrupt, key of another certificate, expired)
is a :class:`~dsp.exceptions.ConfigError` naming ``--certfile`` or ``--keyfile`` when it
is built, not a failed handshake in the middle of a session.
"""

from __future__ import annotations

import re
import ssl
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

from dsp.exceptions import ConfigError
from server.exposure import is_loopback

_PEM_CERTIFICATE = re.compile(
    r"-----BEGIN CERTIFICATE-----\s.*?-----END CERTIFICATE-----", flags=re.DOTALL
)


@dataclass(frozen=True, slots=True, kw_only=True)
class TlsConfig:
    """The server's certificate (PEM; the first certificate in ``certfile`` is the
    server's, any after it its chain) and its unencrypted private key (PEM; may be the
    same file). Raises :class:`~dsp.exceptions.ConfigError` when built if they cannot
    serve TLS."""

    certfile: Path
    keyfile: Path
    _server: ssl.SSLContext = field(init=False, repr=False, compare=False)
    _client: ssl.SSLContext = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        certificates = _read_certificates(self.certfile)
        _require_readable(self.keyfile, flag="--keyfile")
        server = _server_context(certfile=self.certfile, keyfile=self.keyfile)
        client = _client_context(certificate=certificates[0])
        _require_handshake(server=server, client=client, certfile=self.certfile)
        object.__setattr__(self, "_server", server)
        object.__setattr__(self, "_client", client)

    def server_context(self) -> ssl.SSLContext:
        """For the websocket server (``websockets.serve(ssl=...)``) and the dashboard's
        HTTP server (tornado's ``ssl_options=``); TLS 1.2 or later. One context, shared:
        do not modify it."""
        return self._server

    def client_context(self) -> ssl.SSLContext:
        """For a client in this process connecting back to our own server over loopback
        (the dashboard's feed of the websocket): it trusts this certificate and no other.
        One context, shared: do not modify it."""
        return self._client


def exposure_warning(*, host: str, tls: TlsConfig | None) -> str | None:
    """The warning to print when the servers are reachable from the network in clear
    text (the token, required there, would travel readable by anyone on the network);
    ``None`` when bound to loopback or serving TLS."""
    if is_loopback(host) or tls is not None:
        return None
    return (
        f"--host {host!r} serves the websocket and dashboard to the network without TLS: "
        "the token and the session's data travel in clear text. Give --certfile and "
        "--keyfile (see docs/operations.md), or bind to 127.0.0.1"
    )


def _require_readable(path: Path, *, flag: str) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"{flag} {str(path)!r} does not exist") from None
    except IsADirectoryError:
        raise ConfigError(f"{flag} {str(path)!r} is a directory, not a PEM file") from None
    except OSError as exc:
        raise ConfigError(f"{flag} {str(path)!r} cannot be read: {exc.strerror}") from None


def _read_certificates(certfile: Path) -> list[str]:
    """The PEM certificates of ``certfile``, each parsed (so a corrupt one is named here,
    not mistaken for a key problem by ``load_cert_chain``, which cannot tell)."""
    text = _require_readable(certfile, flag="--certfile").decode("ascii", errors="replace")
    certificates = _PEM_CERTIFICATE.findall(text)
    if not certificates:
        raise ConfigError(
            f"--certfile {str(certfile)!r} holds no PEM certificate "
            "(-----BEGIN CERTIFICATE-----); give the certificate, not the key or a DER file"
        )
    try:
        ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).load_verify_locations(
            cadata="\n".join(certificates)
        )
    except ssl.SSLError:
        # OpenSSL's own text ("no start line", "bad base64 decode") says no more than this.
        raise ConfigError(
            f"--certfile {str(certfile)!r} holds a corrupt certificate (its PEM text does not "
            "decode); copy the file again or make a new certificate"
        ) from None
    return certificates


def _refuse_passphrase(keyfile: Path) -> bytes:
    # Without a callback OpenSSL would prompt on the terminal, and a service has none.
    raise ConfigError(
        f"--keyfile {str(keyfile)!r} is encrypted and dyadsync cannot ask for its "
        "passphrase; write an unencrypted copy readable only by the service: "
        f"openssl pkey -in {str(keyfile)!r} -out KEYFILE"
    )


def _server_context(*, certfile: Path, keyfile: Path) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(certfile, keyfile, password=partial(_refuse_passphrase, keyfile))
    except ssl.SSLError as exc:
        # A key of the certificate's type but not its own is a mismatch; a key of
        # another type (EC for an RSA certificate) leaves no certificate for it.
        if exc.reason in {"KEY_VALUES_MISMATCH", "NO_CERTIFICATE_ASSIGNED"}:
            raise ConfigError(
                f"--keyfile {str(keyfile)!r} is not the private key of --certfile "
                f"{str(certfile)!r}; give the key the certificate was made with"
            ) from None
        # The certificates were parsed already, so what failed is the key.
        why = f" ({exc.reason})" if exc.reason else ""  # OpenSSL gives none for bad PEM
        raise ConfigError(
            f"--keyfile {str(keyfile)!r} is not a usable PEM private key{why}; give the "
            "key the certificate was made with (-----BEGIN PRIVATE KEY-----)"
        ) from None
    return context


def _client_context(*, certificate: str) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    # Trust exactly our own certificate: it is the only trust anchor (not its issuer, so a
    # certificate a clinic CA issued to another machine is refused), and partial-chain
    # verification lets a CA-issued leaf be an anchor by itself.
    context.load_verify_locations(cadata=certificate)
    context.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN
    # No hostname check, on purpose. The client dials 127.0.0.1, while the certificate
    # names the machine as browsers on the clinic network reach it (a LAN name or IP), so
    # a check would fail or would force every clinic to add 127.0.0.1 to its certificate.
    # It would also add nothing: hostname checking tells apart certificates that one CA
    # issued to different names, and here the one trusted certificate can only be
    # presented by whoever holds our private key. CERT_REQUIRED stays (verify_mode is
    # the default of PROTOCOL_TLS_CLIENT), so the chain and its dates are still checked.
    context.check_hostname = False
    return context


def _require_handshake(*, server: ssl.SSLContext, client: ssl.SSLContext, certfile: Path) -> None:
    """A TLS handshake between the two contexts, in memory: what the client accepts here
    it accepts over loopback, so an expired or not yet valid certificate is an error now
    rather than a dashboard that silently gets no data."""
    to_server, to_client = ssl.MemoryBIO(), ssl.MemoryBIO()
    ends = [
        client.wrap_bio(to_client, to_server, server_side=False),
        server.wrap_bio(to_server, to_client, server_side=True),
    ]
    # TLS 1.2 needs two round trips, 1.3 one; each pass moves every pending flight.
    for _ in range(4):
        for end in list(ends):
            try:
                end.do_handshake()
            except ssl.SSLWantReadError:
                continue
            except ssl.SSLCertVerificationError as exc:
                raise ConfigError(
                    f"--certfile {str(certfile)!r} is refused by TLS clients: "
                    f"{exc.verify_message}; make a new certificate (docs/operations.md)"
                ) from None
            except ssl.SSLError as exc:
                raise ConfigError(
                    f"--certfile {str(certfile)!r} and --keyfile cannot complete a TLS "
                    f"handshake: {exc.reason or exc}"
                ) from None
            ends.remove(end)
        if not ends:
            return
    raise ConfigError(f"--certfile {str(certfile)!r}: a TLS handshake with itself did not complete")

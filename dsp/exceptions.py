"""The one exception tree of dyadsync.

Every error dyadsync raises on purpose derives from :class:`DyadsyncError`, so a caller
can catch everything we mean with one ``except``. Third-party errors are translated at
the boundary where they occur. Messages say what was wrong, the offending value, and
what to do about it.

    DyadsyncError
    ├── ConfigError            a TOML file (scenario, device, session) is malformed
    ├── SignalError            input to a dsp object is unusable (shape, rate, order)
    ├── StreamError            LSL acquisition problem
    │   ├── StreamNotFoundError    a required stream is not visible on the network
    │   └── StreamMismatchError    channel count / duplicate source_id / format changed
    ├── ProtocolError          a websocket/MQTT message is malformed or too large
    ├── ServeError             a server cannot start (port in use, address not on this host)
    └── RecordingError         an XDF file cannot be written or read
"""

from __future__ import annotations


class DyadsyncError(Exception):
    """Root of every error dyadsync raises deliberately."""


class ConfigError(DyadsyncError):
    """A configuration file or value is invalid.

    The message names the file (when there is one), the key, the bad value and what is
    allowed. ``path`` and ``key`` are kept as attributes for programmatic use.
    """

    def __init__(self, message: str, *, path: str | None = None, key: str | None = None) -> None:
        where = ""
        if path is not None:
            where = f"{path}: "
        if key is not None:
            where += f"[{key}] "
        super().__init__(f"{where}{message}")
        self.detail = message
        self.path = path
        self.key = key

    def within(self, *, path: str | None = None, key_prefix: str | None = None) -> ConfigError:
        """The same error located in a file and/or under an enclosing table.

        A nested config (say ``[episodes]``) does not know it sits in ``[synchrony]`` of
        ``session.toml``; the loader that does re-raises with this.
        """
        key = self.key
        if key_prefix is not None:
            key = key_prefix if key is None else f"{key_prefix}.{key}"
        return ConfigError(self.detail, path=path or self.path, key=key)


class SignalError(DyadsyncError):
    """Input handed to a dsp object cannot be processed (wrong shape, rate, ordering)."""


class StreamError(DyadsyncError):
    """A problem acquiring data over Lab Streaming Layer."""


class StreamNotFoundError(StreamError):
    """A stream the session needs is not visible on the network."""


class StreamMismatchError(StreamError):
    """A stream changed shape (channel count, format) or two streams claim one source_id."""


class ProtocolError(DyadsyncError):
    """A websocket or MQTT message is malformed, of an unknown version, or too large."""


class ServeError(DyadsyncError):
    """A network server (websocket, dashboard) cannot listen where it was asked to."""


class RecordingError(DyadsyncError):
    """An XDF recording cannot be written, or a file cannot be read back."""

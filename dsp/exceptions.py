"""The one exception tree of dyadsync.

Every error dyadsync raises on purpose derives from :class:`DyadsyncError`, so a caller
can catch everything we mean with one ``except``. Third-party errors are translated at
the boundary where they occur. Messages say what was wrong, the offending value, and
what to do about it.

    DyadsyncError                          (here)
    ├── ConfigError            a TOML file (scenario, device, session) or option is malformed
    ├── SignalError            input to a dsp object is unusable (shape, rate, order)
    ├── StreamError            LSL acquisition problem                    (streamer.errors)
    │   └── StreamNotFoundError    a required stream is not visible on the network
    ├── RecordingError         an XDF file cannot be written or read      (streamer.errors)
    ├── ProtocolError          a websocket/MQTT message is malformed      (server.errors)
    └── ServeError             a server cannot start (port in use, ...)   (server.errors)

The root and the errors of the pure core live here; the I/O errors live in the layer
that does that I/O, so ``dsp`` stays free of it.
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

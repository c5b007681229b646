"""Errors of the servers and their protocol, in the one exception tree rooted at
:class:`dsp.exceptions.DyadsyncError`."""

from __future__ import annotations

from dsp.exceptions import DyadsyncError


class ProtocolError(DyadsyncError):
    """A websocket or MQTT message is malformed, of an unknown version, or too large."""


class ServeError(DyadsyncError):
    """A network server (websocket, dashboard) cannot listen where it was asked to."""

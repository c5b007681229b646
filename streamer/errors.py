"""Errors of acquisition and recording (LSL streams, XDF files), in the one exception tree
rooted at :class:`dsp.exceptions.DyadsyncError`."""

from __future__ import annotations

from dsp.exceptions import DyadsyncError


class StreamError(DyadsyncError):
    """A problem acquiring data over Lab Streaming Layer."""


class StreamNotFoundError(StreamError):
    """A stream the session needs is not visible on the network."""


class RecordingError(DyadsyncError):
    """An XDF recording cannot be written, or a file cannot be read back."""

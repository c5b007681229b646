"""Shared checks for the numeric fields of frozen config dataclasses.

Every config validates in ``__post_init__`` and raises :class:`ConfigError` naming the
key, the bad value and what is allowed. Most fields are durations, rates or thresholds
that must be finite and positive; these helpers keep that one rule (and its wording) in
one place instead of a loop per config.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

from dsp.exceptions import ConfigError

__all__ = ["require_at_least", "require_finite_non_negative", "require_finite_positive"]


def _full_key(key: str, section: str | None) -> str:
    """``section.key`` as the key appears in a TOML file, or ``key`` for a top-level table."""
    return key if section is None else f"{section}.{key}"


def require_finite_positive(
    config: object, keys: Iterable[str], *, section: str | None = None
) -> None:
    """ConfigError unless every attribute ``keys`` of ``config`` is finite and > 0.

    NaN and infinity are rejected too: a NaN compares false with everything and would
    pass a bare ``> 0`` test the wrong way round, and an infinite window or timeout never
    elapses.
    """
    for key in keys:
        value = getattr(config, key)
        if not (math.isfinite(value) and value > 0):
            raise ConfigError(
                f"value {value!r} is not allowed; allowed: > 0 and finite",
                key=_full_key(key, section),
            )


def require_finite_non_negative(
    config: object, keys: Iterable[str], *, section: str | None = None
) -> None:
    """ConfigError unless every attribute ``keys`` of ``config`` is finite and >= 0."""
    for key in keys:
        value = getattr(config, key)
        if not (math.isfinite(value) and value >= 0):
            raise ConfigError(
                f"value {value!r} is not allowed; allowed: >= 0 and finite",
                key=_full_key(key, section),
            )


def require_at_least(
    config: object, keys: Iterable[str], minimum: int, *, section: str | None = None
) -> None:
    """ConfigError unless every attribute ``keys`` of ``config`` is >= ``minimum`` (counts)."""
    for key in keys:
        value = getattr(config, key)
        if value < minimum:
            raise ConfigError(
                f"value {value!r} is not allowed; allowed: >= {minimum}",
                key=_full_key(key, section),
            )

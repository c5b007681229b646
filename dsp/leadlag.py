"""Who leads: the best lag per update, with a bounded rate of change.

The lag of the cross-correlation peak jumps between the ends of the lag range on noise. Like
DyadSync's ``ccfBest`` (Kleinbub, the DyadSync R package: the best lag is searched under a
constraint on how far it may move between consecutive windows), the reported lag follows
the raw best lag but moves at most ``max_rate_s_per_s`` seconds per second of session time.
A sign convention for "a"/"b" is all this module knows; :mod:`dsp.synchrony` maps it to
therapist and client.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import StrEnum

from dsp.validation import require_finite_non_negative, require_finite_positive

__all__ = ["LagLeader", "LeadLagConfig", "RateLimitedLag", "leader_of_lag"]


class LagLeader(StrEnum):
    """Which series leads for a given lag (positive lag = b follows a)."""

    A = "a"
    B = "b"
    NONE = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class LeadLagConfig:
    """``max_rate_s_per_s`` (1.0): the reported lag moves at most 1 s per second, so crossing
    the whole +-5 s range takes 10 s — slower than noise flips between windows (1 s steps),
    faster than the minutes-long episodes of interest (Kleinbub et al. 2020).
    ``dead_zone_s`` (0.5): lags shorter than this name no leader (two grid samples at 4 Hz;
    below it the sign of the lag is within estimation noise).
    """

    max_rate_s_per_s: float = 1.0
    dead_zone_s: float = 0.5

    def __post_init__(self) -> None:
        require_finite_positive(self, ("max_rate_s_per_s",), section="lead_lag")
        require_finite_non_negative(self, ("dead_zone_s",), section="lead_lag")


def leader_of_lag(lag_s: float, dead_zone_s: float) -> LagLeader:
    """A leads (b follows) for lags >= dead zone, B leads for <= -dead zone, else none."""
    if not math.isfinite(lag_s) or abs(lag_s) < max(dead_zone_s, 1e-12):
        return LagLeader.NONE
    return LagLeader.A if lag_s > 0 else LagLeader.B


class RateLimitedLag:
    """Follows the raw best lag, moving at most ``max_rate_s_per_s * dt`` per update."""

    __slots__ = ("_lag_s", "_max_rate", "_t_s")

    def __init__(self, config: LeadLagConfig) -> None:
        self._max_rate = config.max_rate_s_per_s
        self._lag_s = math.nan
        self._t_s = math.nan

    def update(self, t_s: float, raw_lag_s: float) -> float:
        """The reported lag at ``t_s``; the first update after a reset takes the raw lag."""
        if not math.isfinite(raw_lag_s):
            return self._lag_s
        if math.isnan(self._lag_s):
            self._lag_s = raw_lag_s
        else:
            max_move = self._max_rate * (t_s - self._t_s)
            self._lag_s += min(max(raw_lag_s - self._lag_s, -max_move), max_move)
        self._t_s = t_s
        return self._lag_s

    def reset(self) -> None:
        """Forget the history (after a gap: the old lag says nothing about the new data)."""
        self._lag_s = math.nan
        self._t_s = math.nan

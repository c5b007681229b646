"""Rate-limited best lag and the leader it names."""

from __future__ import annotations

import math

import pytest

from dsp.exceptions import ConfigError
from dsp.leadlag import LagLeader, LeadLagConfig, RateLimitedLag, leader_of_lag


def test_lag_moves_at_most_the_rate_per_second() -> None:
    lag = RateLimitedLag(LeadLagConfig(max_rate_s_per_s=1.0))
    assert lag.update(0.0, 2.0) == 2.0  # first value taken as is
    assert lag.update(1.0, -5.0) == 1.0  # noise flip: one second allows 1 s of lag change
    assert lag.update(3.0, -5.0) == -1.0  # two seconds later, two more
    assert lag.update(4.0, -1.5) == -1.5  # close targets are reached exactly
    assert lag.update(5.0, math.nan) == -1.5  # no estimate: the lag holds
    lag.reset()
    assert lag.update(6.0, 4.0) == 4.0


def test_leader_from_lag_sign_with_dead_zone() -> None:
    assert leader_of_lag(2.0, 0.5) is LagLeader.A  # positive lag: b follows a
    assert leader_of_lag(-0.75, 0.5) is LagLeader.B
    assert leader_of_lag(0.25, 0.5) is LagLeader.NONE
    assert leader_of_lag(0.0, 0.0) is LagLeader.NONE
    assert leader_of_lag(math.nan, 0.5) is LagLeader.NONE


@pytest.mark.parametrize(
    ("kwargs", "key"),
    [({"max_rate_s_per_s": 0.0}, "max_rate_s_per_s"), ({"dead_zone_s": -1.0}, "dead_zone_s")],
)
def test_config_errors(kwargs: dict[str, float], key: str) -> None:
    with pytest.raises(ConfigError, match=key):
        LeadLagConfig(**kwargs)

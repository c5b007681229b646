"""The session's [synchrony] table configures the engine and is validated at load time."""

from __future__ import annotations

from typing import Any

import pytest

from dsp.exceptions import ConfigError
from dsp.pipeline import Derived
from server.app import pipeline_config
from streamer.session import parse_session

BASE: dict[str, Any] = {
    "session": {"room": "r", "signals": ["ecg"]},
    "therapist": {"ecg": {"device": "polar_h10", "source_id": "a"}},
    "client": {"ecg": {"device": "polar_h10", "source_id": "b"}},
}


def test_engine_options_and_nested_tables_reach_the_engine() -> None:
    session = parse_session(
        BASE | {"synchrony": {"window_s": 20.0, "z_cap": 5.0, "episodes": {"z_enter": 2.5}}},
        source="s.toml",
    )
    config = pipeline_config(session)
    assert config.synchrony.window_s == 20.0
    assert config.synchrony.z_cap == 5.0
    assert config.synchrony.episodes.z_enter == 2.5
    assert config.sync_signals == (Derived.HR,)  # an ECG-only session synchronises HR only


@pytest.mark.parametrize(
    ("synchrony", "fragment"),
    [
        ({"z_capp": 3}, "[synchrony.z_capp] unknown key; allowed keys here: concordance"),
        ({"episodes": {"nonsense": 1}}, "nonsense"),
        ({"window_s": 2.0, "lag_s": 1.0}, "window_s must be in [5, 300] s"),
    ],
)
def test_bad_engine_options_name_file_and_key(synchrony: dict[str, Any], fragment: str) -> None:
    with pytest.raises(ConfigError) as excinfo:
        parse_session(BASE | {"synchrony": synchrony}, source="s.toml")
    assert str(excinfo.value).startswith("s.toml: ")
    assert fragment in str(excinfo.value)

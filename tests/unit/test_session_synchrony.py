"""The session's [synchrony] table configures the engine and is validated at load time."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from dsp.exceptions import ConfigError
from dsp.pipeline import Derived
from server.rooms import pipeline_config
from streamer.scenario import load_scenario
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
        ({"episodes": {"nonsense": 1}}, "[synchrony.episodes.nonsense] unknown key; allowed"),
        ({"lead_lag": {"bogus": 1}}, "[synchrony.lead_lag.bogus] unknown key; allowed keys here"),
        ({"episodes": {"z_enter": "3"}}, "[synchrony.episodes.z_enter] value '3' is not allowed"),
        ({"surrogates": {"n_surrogates": 5}}, "[synchrony.surrogates.n_surrogates] n_surrogates"),
        ({"window_s": 2.0, "lag_s": 1.0}, "window_s must be in [5, 300] s"),
    ],
)
def test_bad_engine_options_name_file_and_key(synchrony: dict[str, Any], fragment: str) -> None:
    with pytest.raises(ConfigError) as excinfo:
        parse_session(BASE | {"synchrony": synchrony}, source="s.toml")
    assert str(excinfo.value).startswith("s.toml: ")
    assert fragment in str(excinfo.value)


def test_scenario_episode_errors_name_the_episode(tmp_path: Path) -> None:
    path = tmp_path / "sc.toml"
    path.write_text(
        "[scenario]\nduration_s = 100\n"
        '[[episode]]\nstart_s = 1\nend_s = 5\ncoupling = 0.5\nleader = "client"\n'
        '[[episode]]\nstart_s = 10\nend_s = 5\ncoupling = 0.5\nleader = "client"\n'
    )
    with pytest.raises(ConfigError, match=r"sc.toml: \[episode\[1\]\] episode needs 0 <= start_s"):
        load_scenario(path)


def test_a_folder_is_not_a_config_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"is a folder; give the path of a \.toml file"):
        load_scenario(tmp_path)

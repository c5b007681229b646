"""Scripted dyad scenarios: the ground truth the simulator plays and tests score against.

A scenario is a TOML file::

    [scenario]
    duration_s = 600        # length of one pass; the live simulator loops it
    seed = 7                # everything random derives from this
    ecg_rate_hz = 256       # like a Shimmer/Movesense-class chest ECG
    eda_rate_hz = 32        # like a wrist/finger EDA sensor
    chunk_s = 0.1           # push interval, like a Bluetooth device delivering packets

    [[episode]]             # any number, non-overlapping
    start_s = 60
    end_s = 180
    coupling = 0.9          # -1..1; negative = anti-phase
    leader = "therapist"    # who is followed
    lag_s = 2.0             # how long the follower lags, 0..5 s

Outside episodes the two people's arousal is independent (decoupled).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from dsp.exceptions import ConfigError
from dsp.types import FloatArray, Role
from streamer.tomlconfig import Section, read_toml

# Largest lag the live synchrony engine searches by default (+-5 s); a scenario lag beyond
# it would be ground truth nobody can detect.
MAX_LAG_S = 5.0


class GroundTruthState:
    """Labels used by :func:`ground_truth` (and matched by the synchrony engine's states)."""

    COUPLED = "coupled"
    ANTI_PHASE = "anti_phase"
    DECOUPLED = "decoupled"


@dataclass(frozen=True, slots=True, kw_only=True)
class Episode:
    """One scripted stretch in which the follower's arousal copies the leader's."""

    start_s: float
    end_s: float
    coupling: float
    leader: Role
    lag_s: float

    def __post_init__(self) -> None:
        if not self.end_s > self.start_s >= 0:
            raise ConfigError(
                "episode needs 0 <= start_s < end_s, "
                f"got start_s={self.start_s}, end_s={self.end_s}",
                key="episode",
            )
        if not -1.0 <= self.coupling <= 1.0:
            raise ConfigError(f"coupling {self.coupling} not in [-1, 1]", key="episode.coupling")
        if not 0.0 <= self.lag_s <= MAX_LAG_S:
            raise ConfigError(f"lag_s {self.lag_s} not in [0, {MAX_LAG_S}]", key="episode.lag_s")

    @property
    def follower(self) -> Role:
        return Role.CLIENT if self.leader is Role.THERAPIST else Role.THERAPIST

    @property
    def state(self) -> str:
        return GroundTruthState.ANTI_PHASE if self.coupling < 0 else GroundTruthState.COUPLED


@dataclass(frozen=True, slots=True, kw_only=True)
class Scenario:
    """A whole scripted session. Construct directly in tests or load with :func:`load_scenario`."""

    duration_s: float = 600.0
    seed: int = 0
    ecg_rate_hz: float = 256.0
    eda_rate_hz: float = 32.0
    chunk_s: float = 0.1
    episodes: tuple[Episode, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        if self.duration_s <= 0:
            raise ConfigError(
                f"duration_s {self.duration_s} must be > 0", key="scenario.duration_s"
            )
        ordered = sorted(self.episodes, key=lambda e: e.start_s)
        for before, after in itertools.pairwise(ordered):
            if after.start_s < before.end_s:
                raise ConfigError(
                    f"episodes overlap: one ends at {before.end_s} s, the next starts at "
                    f"{after.start_s} s; episodes must not overlap",
                    key="episode",
                )
        if ordered and ordered[-1].end_s > self.duration_s:
            raise ConfigError(
                f"episode ends at {ordered[-1].end_s} s, after duration_s={self.duration_s}",
                key="episode.end_s",
            )
        object.__setattr__(self, "episodes", tuple(ordered))


def load_scenario(path: str | Path) -> Scenario:
    """Read and validate a scenario TOML.

    Errors name the file, the key, the bad value and what is allowed.
    """
    return scenario_from_mapping(read_toml(path), source=str(path))


def scenario_from_mapping(data: dict[str, Any], *, source: str = "<inline>") -> Scenario:
    root = Section(data, source=source, prefix="")
    head = root.table("scenario")
    episodes = []
    for ep in root.tables("episode"):
        try:
            episodes.append(
                Episode(
                    start_s=ep.number("start_s", minimum=0.0),
                    end_s=ep.number("end_s", minimum=0.0),
                    coupling=ep.number("coupling", minimum=-1.0, maximum=1.0),
                    leader=Role(ep.choice("leader", [r.value for r in Role])),
                    lag_s=ep.number("lag_s", default=0.0, minimum=0.0, maximum=MAX_LAG_S),
                )
            )
        except ConfigError as exc:
            if exc.path is not None:
                raise
            raise ep.locate(exc) from None
        ep.reject_unknown()
    try:
        scenario = Scenario(
            duration_s=head.number("duration_s", default=600.0, minimum=1.0),
            seed=head.integer("seed", default=0, minimum=0),
            ecg_rate_hz=head.number("ecg_rate_hz", default=256.0, minimum=100.0, maximum=2000.0),
            eda_rate_hz=head.number("eda_rate_hz", default=32.0, minimum=4.0, maximum=1000.0),
            chunk_s=head.number("chunk_s", default=0.1, minimum=0.01, maximum=1.0),
            episodes=tuple(episodes),
        )
    except ConfigError as exc:
        if exc.path is not None:
            raise
        raise exc.within(path=source) from None
    head.reject_unknown()
    root.reject_unknown()
    return scenario


def ground_truth(scenario: Scenario, t_s: FloatArray) -> tuple[np.ndarray, np.ndarray]:
    """Scripted state and leader at each time in ``t_s`` (seconds from scenario start).

    Returns ``(states, leaders)``: string arrays of :class:`GroundTruthState` labels and
    ``"therapist"``/``"client"`` (empty string outside episodes).
    """
    t = np.asarray(t_s, dtype=np.float64)
    states = np.full(t.shape, GroundTruthState.DECOUPLED, dtype=object)
    leaders = np.full(t.shape, "", dtype=object)
    for ep in scenario.episodes:
        inside = (t >= ep.start_s) & (t < ep.end_s)
        states[inside] = ep.state
        leaders[inside] = ep.leader.value
    return states.astype(str), leaders.astype(str)


def builtin_scenario_path(name: str = "demo") -> Path:
    """Path of a scenario shipped with dyadsync (``streamer/scenarios/<name>.toml``)."""
    return Path(__file__).with_name("scenarios") / f"{name}.toml"

"""Coupling episodes (in-phase above chance, anti-phase, decoupled) and the coregulation summary.

What the clinical literature cares about is not only how much synchrony there is but the
capacity to *enter and exit* synchronous states flexibly (Kleinbub, Talia & Palmieri 2020;
Palmieri et al. 2018). :class:`EpisodeTracker` turns the per-update significance of the
synchrony engine into episodes:

* an update is a *candidate* for "coupled" when the in-phase surrogate z reaches
  ``z_enter`` and the empirical p is <= ``alpha`` (and it beats the anti-phase z), likewise
  for "anti_phase";
* an episode starts once candidates persist for ``min_duration_s`` and lasts while its z
  stays >= ``z_exit`` (hysteresis); it ends once the z stays below for ``min_duration_s``;
* every event carries the decision time ``t_s`` and the estimated ``onset_s`` of the change:
  the center time of the window where the z first crossed ``z_exit`` on the way to the
  decision (a windowed estimate describes its window's center, cf. rMEA's note on aligning
  overlapping windows), so episode boundaries can be compared with what happened.

The summary counts entries/exits, time in each state, mean episode length and who led each
entry.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from enum import StrEnum

from dsp.exceptions import ConfigError
from dsp.validation import require_finite_non_negative

__all__ = [
    "CoregulationSummary",
    "EpisodeConfig",
    "EpisodeEvent",
    "EpisodeKind",
    "EpisodeState",
    "EpisodeTracker",
    "finite_or_none",
]


class EpisodeState(StrEnum):
    """Labels shared with the simulator's ground truth (``streamer.scenario``)."""

    COUPLED = "coupled"
    ANTI_PHASE = "anti_phase"
    DECOUPLED = "decoupled"
    NONE = ""  # no estimate (warming up, gap, bad signal)


class EpisodeKind(StrEnum):
    START = "start"
    END = "end"


def finite_or_none(value: float) -> float | None:
    """JSON-ready float: NaN and inf become None."""
    return float(value) if math.isfinite(value) else None


@dataclass(frozen=True, slots=True, kw_only=True)
class EpisodeConfig:
    """Entry/exit rules (see the module docstring).

    ``z_enter`` (3.0) and ``alpha`` (0.05): an episode needs the observed extreme z to lie
    three null standard deviations above the surrogates' mean (one-sided p ~ 0.001 under a
    normal null) *and* to beat >= 95 % of the surrogates (the empirical p guards against a
    skewed null). Strict because two states are tested at every 1 s update of heavily
    overlapping windows: in simulated sessions without coupling, 2.5 still marked up to 6 %
    of the time as an episode (tests/unit/test_synchrony_scenarios.py checks <= 5 %).
    ``z_exit`` (1.5): hysteresis, an episode lasts while its z stays clearly above the
    null, so it does not flicker at the threshold. ``min_duration_s`` (5 s): shorter
    excursions are not reported as entries/exits (physiological co-regulation unfolds over
    tens of seconds, Palmieri et al. 2018; five 1 s updates of a 30 s window).
    """

    z_enter: float = 3.0
    z_exit: float = 1.5
    alpha: float = 0.05
    min_duration_s: float = 5.0

    def __post_init__(self) -> None:
        if not (math.isfinite(self.z_enter) and math.isfinite(self.z_exit)):
            raise ConfigError(
                f"z_enter and z_exit must be finite, got {self.z_enter!r}, {self.z_exit!r}",
                key="episodes.z_enter",
            )
        if self.z_exit > self.z_enter:
            raise ConfigError(
                f"z_exit ({self.z_exit}) must be <= z_enter ({self.z_enter}) for hysteresis",
                key="episodes.z_exit",
            )
        if not 0.0 < self.alpha <= 1.0:
            raise ConfigError(f"alpha must be in (0, 1], got {self.alpha!r}", key="episodes.alpha")
        require_finite_non_negative(self, ("min_duration_s",), section="episodes")


@dataclass(frozen=True, slots=True, kw_only=True)
class EpisodeEvent:
    """An episode started or ended.

    ``t_s``: when it was decided (LSL clock, the update's time). ``onset_s``: estimated time
    of the change itself (window center, see the module docstring). ``leader``: "therapist",
    "client" or "" (simultaneous / unknown) at entry; an end event repeats its episode's.
    ``reason`` says why an episode ended early ("gap", "bad signal", ...), else "".
    """

    kind: EpisodeKind
    state: EpisodeState
    leader: str
    t_s: float
    onset_s: float
    reason: str = ""

    def to_dict(self) -> dict[str, str | float | None]:
        return {
            "kind": self.kind.value,
            "state": self.state.value,
            "leader": self.leader,
            "t_s": finite_or_none(self.t_s),
            "onset_s": finite_or_none(self.onset_s),
            "reason": self.reason,
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class CoregulationSummary:
    """Session summary of one signal's synchrony.

    ``time_in_state_s`` has keys "coupled", "anti_phase", "decoupled" and "no_estimate"
    (time of updates by their live state). ``mean_episode_s`` averages completed episodes
    (onset to onset). ``therapist_led_fraction``/``client_led_fraction``: share of entries
    whose leader at entry was that person (the rest had no clear leader).
    ``susy_effect_size``: SUSY's ``(mean Z_real - mean Z_pseudo) / SD(Z_pseudo)``;
    ``ssi``: Marci's single session index.
    """

    entries: int
    exits: int
    time_in_state_s: dict[str, float] = field(default_factory=dict)
    mean_episode_s: float = math.nan
    therapist_led_fraction: float = math.nan
    client_led_fraction: float = math.nan
    susy_effect_size: float = math.nan
    ssi: float = math.nan

    def to_dict(self) -> dict[str, object]:
        return {
            "entries": self.entries,
            "exits": self.exits,
            "time_in_state_s": {k: finite_or_none(v) for k, v in self.time_in_state_s.items()},
            "mean_episode_s": finite_or_none(self.mean_episode_s),
            "therapist_led_fraction": finite_or_none(self.therapist_led_fraction),
            "client_led_fraction": finite_or_none(self.client_led_fraction),
            "susy_effect_size": finite_or_none(self.susy_effect_size),
            "ssi": finite_or_none(self.ssi),
        }


_EPISODE_STATES = (EpisodeState.COUPLED, EpisodeState.ANTI_PHASE)
NO_ESTIMATE_KEY = "no_estimate"


class _Streak:
    """Start of a run of consecutive updates satisfying a condition."""

    __slots__ = ("first_t_s", "onset_s")

    def __init__(self) -> None:
        self.first_t_s = math.nan
        self.onset_s = math.nan

    def extend(self, holds: bool, t_s: float, center_s: float) -> None:
        if not holds:
            self.first_t_s = math.nan
            self.onset_s = math.nan
        elif math.isnan(self.first_t_s):
            self.first_t_s = t_s
            self.onset_s = center_s

    def lasted(self, t_s: float, step_s: float) -> float:
        return -math.inf if math.isnan(self.first_t_s) else t_s - self.first_t_s + step_s


class EpisodeTracker:
    """Hysteresis + minimum-duration state machine over significance updates."""

    __slots__ = (
        "_candidate",
        "_config",
        "_durations_s",
        "_entry_leader",
        "_entry_onset_s",
        "_exit",
        "_last_end_onset_s",
        "_leaders",
        "_n_exits",
        "_state",
        "_step_s",
        "_support",
        "_time_in_state_s",
    )

    def __init__(self, config: EpisodeConfig, *, step_s: float) -> None:
        self._config = config
        self._step_s = step_s
        self._state = EpisodeState.NONE
        self._support = {s: _Streak() for s in _EPISODE_STATES}  # z >= z_exit
        self._candidate = {s: _Streak() for s in _EPISODE_STATES}  # z >= z_enter, p <= alpha
        self._exit = _Streak()  # inside an episode: z < z_exit
        self._entry_leader = ""
        self._entry_onset_s = math.nan
        self._last_end_onset_s = -math.inf
        self._leaders: list[str] = []
        self._durations_s: list[float] = []
        self._n_exits = 0
        self._time_in_state_s = {
            EpisodeState.COUPLED.value: 0.0,
            EpisodeState.ANTI_PHASE.value: 0.0,
            EpisodeState.DECOUPLED.value: 0.0,
            NO_ESTIMATE_KEY: 0.0,
        }

    @property
    def state(self) -> EpisodeState:
        return self._state

    def update(
        self,
        *,
        t_s: float,
        center_s: float,
        z: dict[EpisodeState, float],
        p: dict[EpisodeState, float],
        leader: str,
    ) -> tuple[EpisodeEvent, ...]:
        """One update with significance available: in-phase/anti-phase z and p per state."""
        cfg = self._config
        events: list[EpisodeEvent] = []
        if self._state is EpisodeState.NONE:
            self._state = EpisodeState.DECOUPLED
        for state in _EPISODE_STATES:
            other = _other(state)
            z_here = z[state]
            self._support[state].extend(z_here >= cfg.z_exit, t_s, center_s)
            qualifies = z_here >= cfg.z_enter and p[state] <= cfg.alpha and z_here > z[other]
            self._candidate[state].extend(qualifies, t_s, center_s)
        if self._state in _EPISODE_STATES:
            self._exit.extend(z[self._state] < cfg.z_exit, t_s, center_s)
            if self._exit.lasted(t_s, self._step_s) >= cfg.min_duration_s:
                events.append(self._end(t_s, self._exit.onset_s, reason=""))
        if self._state is EpisodeState.DECOUPLED:
            for state in _EPISODE_STATES:
                if self._candidate[state].lasted(t_s, self._step_s) >= cfg.min_duration_s:
                    events.append(self._start(state, t_s, self._support[state].onset_s, leader))
                    break
        self._time_in_state_s[self._state.value] += self._step_s
        return tuple(events)

    def interrupt(self, *, t_s: float, center_s: float, reason: str) -> tuple[EpisodeEvent, ...]:
        """An update without estimate or without significance: any episode ends now."""
        events: tuple[EpisodeEvent, ...] = ()
        if self._state in _EPISODE_STATES:
            events = (self._end(t_s, center_s, reason=reason),)
        for streak in (*self._support.values(), *self._candidate.values(), self._exit):
            streak.extend(False, t_s, center_s)
        self._state = EpisodeState.NONE
        self._time_in_state_s[NO_ESTIMATE_KEY] += self._step_s
        return events

    def _start(self, state: EpisodeState, t_s: float, onset_s: float, leader: str) -> EpisodeEvent:
        # The rise may have begun before the previous episode's estimated end: episodes
        # never overlap.
        onset_s = max(onset_s, self._last_end_onset_s)
        self._state = state
        self._entry_leader = leader
        self._entry_onset_s = onset_s
        self._leaders.append(leader)
        self._exit.extend(False, t_s, onset_s)
        return EpisodeEvent(
            kind=EpisodeKind.START, state=state, leader=leader, t_s=t_s, onset_s=onset_s
        )

    def _end(self, t_s: float, onset_s: float, *, reason: str) -> EpisodeEvent:
        state = self._state
        self._durations_s.append(onset_s - self._entry_onset_s)
        self._last_end_onset_s = onset_s
        self._n_exits += 1
        self._state = EpisodeState.DECOUPLED
        self._exit.extend(False, t_s, onset_s)
        return EpisodeEvent(
            kind=EpisodeKind.END,
            state=state,
            leader=self._entry_leader,
            t_s=t_s,
            onset_s=onset_s,
            reason=reason,
        )

    def summary(self, *, susy_effect_size: float, ssi: float) -> CoregulationSummary:
        n_entries = len(self._leaders)
        led = {who: sum(1 for x in self._leaders if x == who) for who in ("therapist", "client")}
        return CoregulationSummary(
            entries=n_entries,
            exits=self._n_exits,
            time_in_state_s=dict(self._time_in_state_s),
            mean_episode_s=(
                sum(self._durations_s) / len(self._durations_s) if self._durations_s else math.nan
            ),
            therapist_led_fraction=led["therapist"] / n_entries if n_entries else math.nan,
            client_led_fraction=led["client"] / n_entries if n_entries else math.nan,
            susy_effect_size=susy_effect_size,
            ssi=ssi,
        )


def _other(state: EpisodeState) -> EpisodeState:
    return EpisodeState.ANTI_PHASE if state is EpisodeState.COUPLED else EpisodeState.COUPLED

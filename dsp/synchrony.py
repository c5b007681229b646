"""The synchrony engine: one derived signal (HR, SCL or phasic EDA) of one dyad, live.

Inputs are therapist and client samples already paired on the common grid
(``t_s = k / grid_hz``, integer ``k`` strictly increasing; a jump in ``k`` is a gap;
``valid=False`` marks bad signal; an optional per-sample :class:`~dsp.types.SampleStatus`
says more precisely why: missing (a gap the caller knows of), settling after a reconnect, or
bad signal). Every ``step_s`` the engine emits a :class:`SyncUpdate`:

* windowed lagged cross-correlation (Boker et al. 2002) in rMEA's conventions, maintained
  incrementally (:class:`dsp.xcorr.LaggedComoments`, O(lags) per grid sample); the window
  ending at the update covers ``window_s + lag_s`` seconds;
* significance against time-shifted surrogates from the trailing history
  (:mod:`dsp.significance`): surrogate z and empirical p of the in-phase peak and of the
  anti-phase trough over lags;
* the best lag with a bounded rate of change and who leads (:mod:`dsp.leadlag`);
* Marci's concordance index (:mod:`dsp.concordance`);
* the episode state (:mod:`dsp.episodes`), with :class:`EpisodeEvent` on entries and exits.

No estimate is ever made from a window touching a gap or an invalid sample: the update says
``estimate_valid=False`` and why (:class:`Reason`): the cause of the newest unusable sample in
the window, because that is the one the estimate is still waiting for (after a disconnection
the window holds the gap and then the reconnected sensor's settling output; "reconnected"
says the estimate is on its way back, "gap" would suggest the sensor is still away).

Updates are emitted for each received grid sample whose index ``k`` is a multiple of the
step (so HR and SCL updates share timestamps); the output does not depend on how the input
is chunked.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import numpy as np

from dsp.concordance import ConcordanceConfig, StreamingConcordance
from dsp.episodes import (
    CoregulationSummary,
    EpisodeConfig,
    EpisodeEvent,
    EpisodeState,
    EpisodeTracker,
    finite_or_none,
)
from dsp.exceptions import ConfigError, SignalError
from dsp.leadlag import LagLeader, LeadLagConfig, RateLimitedLag, leader_of_lag
from dsp.significance import (
    ShiftedSurrogates,
    SurrogateConfig,
    SusyEffectSize,
    empirical_p,
    surrogate_z,
)
from dsp.sliding_buffer import SlidingBuffer
from dsp.types import (
    BoolArray,
    FloatArray,
    IntArray,
    Role,
    StatusArray,
    checked_status,
)
from dsp.validation import require_finite_positive
from dsp.xcorr import (
    DEFAULT_Z_CAP,
    LaggedComoments,
    fisher_z_capped,
    samples_in,
    usable_values,
)

__all__ = [
    "LAG_CONVENTION",
    "CoregulationSummary",
    "EpisodeEvent",
    "Reason",
    "SyncUpdate",
    "SynchronyConfig",
    "SynchronyEngine",
    "SynchronyOutput",
]

#: The one statement of the lag sign convention (the dashboard quotes it). Inside the engine
#: series a = therapist and b = client, and in rMEA's convention a positive lag means b
#: follows a.
LAG_CONVENTION = (
    "Positive lag: the client follows the therapist (therapist leads). "
    "Negative lag: the therapist follows the client (client leads)."
)

_LEADER_ROLE = {
    LagLeader.A: Role.THERAPIST.value,
    LagLeader.B: Role.CLIENT.value,
    LagLeader.NONE: "",
}

# History rows, indexed by grid index minus the first one received: therapist, client (NaN
# where not usable), status (0 ok, 1 bad, 2 settling after a reconnect, NaN = gap).
_A, _B, _STATUS = 0, 1, 2
_BAD, _SETTLING = 1.0, 2.0
# History status of each SampleStatus code (a missing sample is a gap, as one never received).
_HISTORY_STATUS = np.array([0.0, _BAD, _SETTLING, np.nan])
# t_s * grid_hz must be within this many grid steps of an integer.
_GRID_TOLERANCE = 1e-6


class Reason(StrEnum):
    """Why an update carries no estimate (or no significance)."""

    NONE = ""
    WARMING_UP = "warming up"  # fewer than window + lag seconds of data so far
    GAP = "gap"  # the window touches grid samples that never arrived
    RECONNECTED = "reconnected"  # ... or a restarted sensor's settling output (new segment)
    BAD_SIGNAL = "bad signal"  # ... or samples flagged invalid / not finite
    FLAT_SIGNAL = "flat signal"  # one person's signal is constant in the window
    NULL_WARMING_UP = "null warming up"  # estimate valid, history too short for surrogates
    NULL_UNAVAILABLE = "null unavailable"  # estimate valid, too many surrogates touch gaps


@dataclass(frozen=True, slots=True, kw_only=True)
class SynchronyConfig:
    """Engine settings; nested tables may be given as dicts (from a session TOML).

    ``window_s`` (30 s, the long end of the 15-30 s range of windowed cross-correlation of
    EDA/HR (Boker et al. 2002 discuss the window/lag trade-off): the longest window keeps
    the null narrow for slow autonomic signals), ``lag_s`` (+-5 s: "lags of +-5 seconds have
    been reported by multiple authors", rMEA ``MEAccf`` documentation), ``step_s`` (1 s: the
    dashboard refresh), ``z_cap`` (10, rMEA).
    """

    window_s: float = 30.0
    lag_s: float = 5.0
    step_s: float = 1.0
    z_cap: float = DEFAULT_Z_CAP
    surrogates: SurrogateConfig = field(default_factory=SurrogateConfig)
    episodes: EpisodeConfig = field(default_factory=EpisodeConfig)
    lead_lag: LeadLagConfig = field(default_factory=LeadLagConfig)
    concordance: ConcordanceConfig = field(default_factory=ConcordanceConfig)

    def __post_init__(self) -> None:
        if not (math.isfinite(self.window_s) and 5.0 <= self.window_s <= 300.0):
            raise ConfigError(
                f"window_s must be in [5, 300] s (15-30 s recommended), got {self.window_s!r}",
                key="synchrony.window_s",
            )
        if not (math.isfinite(self.lag_s) and 0.0 <= self.lag_s <= self.window_s / 2):
            raise ConfigError(
                f"lag_s must be in [0, window_s / 2] s, got {self.lag_s!r}", key="synchrony.lag_s"
            )
        if not (math.isfinite(self.step_s) and 0 < self.step_s <= self.window_s):
            raise ConfigError(
                f"step_s must be in (0, window_s] s, got {self.step_s!r}", key="synchrony.step_s"
            )
        require_finite_positive(self, ("z_cap",), section="synchrony")
        for name, kind in (
            ("surrogates", SurrogateConfig),
            ("episodes", EpisodeConfig),
            ("lead_lag", LeadLagConfig),
            ("concordance", ConcordanceConfig),
        ):
            value = getattr(self, name)
            if isinstance(value, dict):
                object.__setattr__(self, name, _sub_config(kind, value, name))
            elif not isinstance(value, kind):
                raise ConfigError(
                    f"{name} must be a {kind.__name__} or a table, got {type(value).__name__}",
                    key=f"synchrony.{name}",
                )


def _sub_config(kind: Any, values: dict[str, Any], name: str) -> Any:
    """Build a nested option table, naming the offending key and what is allowed."""
    fields = {f.name: f for f in dataclasses.fields(kind)}
    for key, value in values.items():
        if key not in fields:
            raise ConfigError(
                f"unknown key; allowed keys here: {', '.join(sorted(fields))}",
                key=f"synchrony.{name}.{key}",
            )
        default = fields[key].default
        wants_number = isinstance(default, int | float) and not isinstance(default, bool)
        if wants_number and (isinstance(value, bool) or not isinstance(value, int | float)):
            raise ConfigError(
                f"value {value!r} is not allowed; allowed: a number",
                key=f"synchrony.{name}.{key}",
            )
    try:
        return kind(**values)
    except ConfigError as exc:
        raise exc.within(key_prefix="synchrony") from None


@dataclass(frozen=True, slots=True, kw_only=True)
class SyncUpdate:
    """One step of one signal's synchrony (see :data:`LAG_CONVENTION` for lag signs).

    ``t_s``: grid time of the newest sample in the window (LSL clock). ``window_center_s``:
    center of the ``window_s + lag_s`` span the estimate describes. Without an estimate
    (``estimate_valid`` False) every number is NaN and ``reason`` says why; with an estimate
    but no significance yet, ``reason`` is "null warming up"/"null unavailable" and the
    surrogate fields are NaN. ``r_lag0``/``z_lag0``: Pearson r and capped Fisher z at lag 0.
    ``peak_z``/``trough_z``: extreme Fisher z over lags. ``best_lag_s``: rate-limited best lag;
    ``raw_best_lag_s``: this window's. ``surrogate_z``/``p_value``: in-phase peak vs the
    surrogate null; ``anti_surrogate_z``/``anti_p_value``: anti-phase trough vs the null.
    ``concordance``: Marci's CI over the trailing index window. ``state``: episode state
    ("" without estimate/significance). ``leader``: "therapist"/"client" during an episode
    when the lag names one, else "".
    """

    t_s: float
    window_center_s: float
    estimate_valid: bool
    reason: str
    r_lag0: float = math.nan
    z_lag0: float = math.nan
    peak_z: float = math.nan
    trough_z: float = math.nan
    best_lag_s: float = math.nan
    raw_best_lag_s: float = math.nan
    leader: str = ""
    surrogate_z: float = math.nan
    p_value: float = math.nan
    anti_surrogate_z: float = math.nan
    anti_p_value: float = math.nan
    concordance: float = math.nan
    state: str = EpisodeState.NONE.value

    def to_dict(self) -> dict[str, str | bool | float | None]:
        """JSON-ready plain values (NaN -> None)."""
        out: dict[str, str | bool | float | None] = {}
        for name in self.__dataclass_fields__:
            value = getattr(self, name)
            out[name] = finite_or_none(value) if isinstance(value, float) else value
        return out


@dataclass(frozen=True, slots=True)
class SynchronyOutput:
    """What one :meth:`SynchronyEngine.push` made final."""

    updates: tuple[SyncUpdate, ...] = ()
    events: tuple[EpisodeEvent, ...] = ()

    def to_dict(self) -> dict[str, list[dict[str, Any]]]:
        """JSON-ready plain values (NaN -> None)."""
        return {
            "updates": [u.to_dict() for u in self.updates],
            "events": [e.to_dict() for e in self.events],
        }


class SynchronyEngine:
    """Live synchrony of one derived signal of a dyad (therapist = a, client = b)."""

    __slots__ = (
        "_comoments",
        "_concordance",
        "_config",
        "_first_k",
        "_grid_hz",
        "_history",
        "_history_n",
        "_lag",
        "_lag_index",
        "_lags_s",
        "_last_k",
        "_span_n",
        "_started",
        "_step_n",
        "_surrogates",
        "_susy",
        "_tracker",
    )

    def __init__(self, grid_hz: float, *, config: SynchronyConfig | None = None) -> None:
        config = config or SynchronyConfig()
        window_n = samples_in(config.window_s, grid_hz, key="synchrony.window_s", minimum=2)
        lag_n = samples_in(config.lag_s, grid_hz, key="synchrony.lag_s")
        self._step_n = samples_in(config.step_s, grid_hz, key="synchrony.step_s", minimum=1)
        self._grid_hz = grid_hz
        self._config = config
        self._span_n = window_n + lag_n
        self._lags_s = np.arange(-lag_n, lag_n + 1) / grid_hz
        self._lag_index = lag_n  # column of lag 0
        self._comoments = LaggedComoments(window_n=window_n, lag_n=lag_n, max_slide_n=self._step_n)
        self._surrogates = ShiftedSurrogates(
            window_n=window_n,
            lag_n=lag_n,
            fs_hz=grid_hz,
            config=config.surrogates,
            z_cap=config.z_cap,
        )
        self._concordance = StreamingConcordance(
            grid_hz, step_s=config.step_s, config=config.concordance
        )
        self._history_n = max(
            self._surrogates.history_n, self._span_n, self._concordance.slope_window_n
        )
        self._history = SlidingBuffer(n_rows=3, keep=self._history_n, max_append=self._step_n)
        self._lag = RateLimitedLag(config.lead_lag)
        self._tracker = EpisodeTracker(config.episodes, step_s=self._step_n / grid_hz)
        self._susy = SusyEffectSize()
        self._started = False
        self._first_k = 0  # first grid index ever received (valid once started)
        self._last_k = 0  # newest grid index received (valid once started)

    @property
    def config(self) -> SynchronyConfig:
        return self._config

    @property
    def lags_s(self) -> FloatArray:
        return self._lags_s.copy()

    def push(
        self,
        *,
        t_s: FloatArray,
        therapist: FloatArray,
        client: FloatArray,
        valid: BoolArray,
        status: StatusArray | None = None,
    ) -> SynchronyOutput:
        """Add grid samples (any count, including 0); return the updates that became final.

        ``status`` (optional, :class:`~dsp.types.SampleStatus` codes) tells why samples are
        unusable: ``MISSING`` counts as a gap (like an index never pushed, but an update is
        still emitted at it), ``SETTLING`` as "reconnected"; other invalid samples are bad
        signal. Raises :class:`SignalError` (and changes nothing) if the arrays differ in
        length, a status code is unknown, a time is not finite or not on the grid, or grid
        indices do not strictly increase (also across calls). NaN/inf (or absurd, > 1e100)
        values are accepted and treated as bad signal.
        """
        k = self._grid_indices(t_s, therapist, client, valid)
        a = np.asarray(therapist, dtype=np.float64)
        b = np.asarray(client, dtype=np.float64)
        ok = np.asarray(valid, dtype=np.bool_) & usable_values(a) & usable_values(b)
        cause = self._history_status(status, ok)
        updates: list[SyncUpdate] = []
        events: list[EpisodeEvent] = []
        pos = 0
        while pos < k.shape[0]:
            first = int(k[pos])
            if not self._started:
                self._started = True
                self._first_k = first  # history index 0 (grid indices may be negative)
            elif first > self._last_k + 1:
                self._skip(first - self._last_k - 1)
            # Contiguous samples up to and including the next update index.
            next_update = -(-first // self._step_n) * self._step_n
            stop = pos + 1
            limit = min(k.shape[0], pos + next_update - first + 1)
            while stop < limit and k[stop] == k[stop - 1] + 1:
                stop += 1
            self._append(a[pos:stop], b[pos:stop], ok[pos:stop], cause[pos:stop])
            self._last_k = int(k[stop - 1])
            pos = stop
            if self._last_k % self._step_n == 0:
                update, new_events = self._update(self._last_k)
                updates.append(update)
                events.extend(new_events)
        return SynchronyOutput(updates=tuple(updates), events=tuple(events))

    def summary(self) -> CoregulationSummary:
        """Coregulation summary of the session so far."""
        return self._tracker.summary(
            susy_effect_size=self._susy.effect_size(), ssi=self._concordance.ssi()
        )

    def _grid_indices(
        self, t_s: FloatArray, therapist: FloatArray, client: FloatArray, valid: BoolArray
    ) -> IntArray:
        t = np.asarray(t_s, dtype=np.float64)
        shapes = {np.shape(t), np.shape(therapist), np.shape(client), np.shape(valid)}
        if t.ndim != 1 or len(shapes) != 1:
            raise SignalError(
                f"t_s, therapist, client and valid must be 1-D of equal length, got shapes "
                f"{sorted(shapes)}"
            )
        if not np.isfinite(t).all():
            raise SignalError("t_s contains NaN or inf; grid times must be finite")
        scaled = t * self._grid_hz
        k = np.rint(scaled)
        off_grid = np.abs(scaled - k) > _GRID_TOLERANCE
        if off_grid.any():
            bad = float(t[np.argmax(off_grid)])
            raise SignalError(
                f"t_s={bad!r} is not on the {self._grid_hz} Hz grid (t = k / grid_hz); align "
                f"samples with dsp.align first"
            )
        indices = k.astype(np.int64)
        steps = np.diff(indices, prepend=self._last_k) if self._started else np.diff(indices)
        if (steps <= 0).any():
            raise SignalError(
                "grid times must strictly increase (also across pushes); got a step of "
                f"{int(steps.min())} grid samples"
            )
        return indices

    def _history_status(self, status: StatusArray | None, ok: BoolArray) -> FloatArray:
        """History status row of each sample: 0 where usable, else its cause."""
        if status is None:
            return np.where(ok, 0.0, _BAD)
        codes = checked_status(status, ok.shape)
        # A sample the caller calls OK can still be unusable (flag or value): bad signal.
        causes = _HISTORY_STATUS[codes.astype(np.intp)]
        return np.where(ok, 0.0, np.where(causes == 0.0, _BAD, causes))

    def _append(self, a: FloatArray, b: FloatArray, ok: BoolArray, cause: FloatArray) -> None:
        self._comoments.append(a, b, ok)
        rows = self._history.extend(a.shape[0])  # written in place: no stacked copy
        rows[_A] = np.where(ok, a, np.nan)
        rows[_B] = np.where(ok, b, np.nan)
        rows[_STATUS] = cause

    def _skip(self, n_missing: int) -> None:
        self._comoments.skip(n_missing)
        self._history.skip_to(self._history.end_index + n_missing)

    def _update(self, k: int) -> tuple[SyncUpdate, tuple[EpisodeEvent, ...]]:
        t_s = k / self._grid_hz
        center_s = (k - (self._span_n - 1) / 2) / self._grid_hz
        concordance = self._concordance.update(*self._padded(k, self._concordance.slope_window_n))
        reason = self._window_reason(k)
        if reason is Reason.NONE:
            r = self._comoments.correlations()
            if np.isfinite(r).all():
                return self._estimate(k, t_s, center_s, r, concordance)
            reason = Reason.FLAT_SIGNAL
        if reason is not Reason.WARMING_UP:
            self._lag.reset()
        events = self._tracker.interrupt(t_s=t_s, center_s=center_s, reason=reason.value)
        update = SyncUpdate(
            t_s=t_s,
            window_center_s=center_s,
            estimate_valid=False,
            reason=reason.value,
            concordance=concordance,
        )
        return update, events

    def _estimate(
        self, k: int, t_s: float, center_s: float, r: FloatArray, concordance: float
    ) -> tuple[SyncUpdate, tuple[EpisodeEvent, ...]]:
        z = fisher_z_capped(r, self._config.z_cap)
        peak_at, trough_at = int(np.argmax(z)), int(np.argmin(z))
        peak, trough = float(z[peak_at]), float(z[trough_at])
        null = self._surrogates.extremes(*self._recent(k, self._history_n))
        in_z, in_p = surrogate_z(peak, null.peaks), empirical_p(peak, null.peaks)
        anti_z, anti_p = surrogate_z(-trough, -null.troughs), empirical_p(-trough, -null.troughs)
        # The lag of whichever extreme stands out more from its null names the leader.
        anti_stronger = math.isfinite(anti_z) and (not math.isfinite(in_z) or anti_z > in_z)
        raw_lag_s = float(self._lags_s[trough_at if anti_stronger else peak_at])
        lag_s = self._lag.update(t_s, raw_lag_s)
        leader = _LEADER_ROLE[leader_of_lag(lag_s, self._config.lead_lag.dead_zone_s)]
        self._susy.add(float(z.mean()), null.means)
        if self._surrogates.enough(null.peaks):
            reason = Reason.NONE
            events = self._tracker.update(
                t_s=t_s,
                center_s=center_s,
                z={EpisodeState.COUPLED: in_z, EpisodeState.ANTI_PHASE: anti_z},
                p={EpisodeState.COUPLED: in_p, EpisodeState.ANTI_PHASE: anti_p},
                leader=leader,
            )
        else:
            warming = k - self._first_k + 1 < self._history_n
            reason = Reason.NULL_WARMING_UP if warming else Reason.NULL_UNAVAILABLE
            events = self._tracker.interrupt(t_s=t_s, center_s=center_s, reason=reason.value)
        state = self._tracker.state
        in_episode = state in (EpisodeState.COUPLED, EpisodeState.ANTI_PHASE)
        update = SyncUpdate(
            t_s=t_s,
            window_center_s=center_s,
            estimate_valid=True,
            reason=reason.value,
            r_lag0=float(r[self._lag_index]),
            z_lag0=float(z[self._lag_index]),
            peak_z=peak,
            trough_z=trough,
            best_lag_s=lag_s,
            raw_best_lag_s=raw_lag_s,
            leader=leader if in_episode else "",
            surrogate_z=in_z,
            p_value=in_p,
            anti_surrogate_z=anti_z,
            anti_p_value=anti_p,
            concordance=concordance,
            state=state.value,
        )
        return update, events

    def _recent(self, k: int, n: int) -> tuple[FloatArray, FloatArray]:
        """The last ``n`` samples of both people ending at grid index ``k``, fewer if the
        session (or the history after a long gap) is shorter; NaN where not usable."""
        stop = k - self._first_k + 1
        start = max(stop - n, self._history.oldest_index)
        return self._history.view(_A, start, stop), self._history.view(_B, start, stop)

    def _padded(self, k: int, n: int) -> tuple[FloatArray, FloatArray]:
        """Exactly ``n`` samples ending at ``k``, NaN-padded in front when not held."""
        a, b = self._recent(k, n)
        missing = n - a.shape[0]
        if missing == 0:
            return a, b
        pad = np.full(missing, np.nan)
        return np.concatenate([pad, a]), np.concatenate([pad, b])

    def _window_reason(self, k: int) -> Reason:
        stop = k - self._first_k + 1
        start = stop - self._span_n
        if start < 0:
            return Reason.WARMING_UP
        status = self._history.view(_STATUS, max(start, self._history.oldest_index), stop)
        unusable = np.flatnonzero(status != 0.0)  # NaN (gap) compares unequal too
        if unusable.size:
            newest = float(status[unusable[-1]])
            if math.isnan(newest):
                return Reason.GAP
            return Reason.RECONNECTED if newest == _SETTLING else Reason.BAD_SIGNAL
        if start < self._history.oldest_index:
            return Reason.GAP  # samples dropped from the history by a long gap
        return Reason.NONE

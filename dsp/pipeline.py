"""One dyad's whole processing chain, pure and incremental.

``Frame`` (raw ECG/EDA chunk of one person) -> per-person processors (heart rate from
ECG, tonic/phasic skin conductance from EDA) -> per derived signal a :class:`GridAligner`
pairing therapist and client by grid index -> a :class:`SynchronyEngine` per derived
signal. Live sessions, replays and offline analysis all push frames through this class,
so they share every line of processing.

A change of ``Frame.segment`` (clock break, reconnect) restarts that person's processor:
nothing is computed across it, and the grid indices it missed reach the synchrony
engine as invalid, which answers "no estimate" for windows touching them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum

import numpy as np

from dsp.align import GridAligner
from dsp.eda import EdaProcessor
from dsp.exceptions import SignalError
from dsp.heart_rate import HeartRateProcessor
from dsp.synchrony import (
    CoregulationSummary,
    EpisodeEvent,
    SynchronyConfig,
    SynchronyEngine,
    SyncUpdate,
)
from dsp.types import Frame, GridSamples, Role, SignalKind


class Derived(StrEnum):
    """Signals derived on the analysis grid (names used on the wire, see docs/protocol.md)."""

    HR = "hr"
    SCL = "scl"
    PHASIC = "phasic"


SOURCE_OF: dict[Derived, SignalKind] = {
    Derived.HR: SignalKind.ECG,
    Derived.SCL: SignalKind.EDA,
    Derived.PHASIC: SignalKind.EDA,
}


@dataclass(frozen=True, slots=True, kw_only=True)
class PipelineConfig:
    """Options of the dyad pipeline.

    ``sync_signals``: derived signals whose synchrony is computed. Heart rate and skin
    conductance are the two used in the psychotherapy literature (Kleinbub et al. 2020;
    Marci et al. 2007); for skin conductance we synchronise the phasic band (> 0.05 Hz):
    the tonic level changes over minutes, so within a 30 s window it is a trend, and
    trend-against-trend correlations are large by chance (and the surrogate test then
    rightly finds nothing).
    ``max_wait_s``: how long the aligner waits for a late person before marking samples
    invalid (longer than any detector delay, shorter than a clinician's patience).
    """

    grid_hz: float = 4.0
    max_wait_s: float = 10.0
    sync_signals: tuple[Derived, ...] = (Derived.HR, Derived.PHASIC)
    synchrony: SynchronyConfig = field(default_factory=SynchronyConfig)


@dataclass(frozen=True, slots=True)
class PipelineOutput:
    """What became final after one pushed frame."""

    physio: tuple[tuple[Role, Derived, GridSamples], ...] = ()
    sync: tuple[tuple[Derived, SyncUpdate], ...] = ()
    episodes: tuple[tuple[Derived, EpisodeEvent], ...] = ()


class DyadPipeline:
    """Frames in, per-person grid series, synchrony updates and episode events out."""

    __slots__ = (
        "_aligners",
        "_config",
        "_engines",
        "_processors",
        "_rates",
        "_segments",
        "_started",
    )

    def __init__(
        self,
        *,
        stream_rates_hz: Mapping[tuple[Role, SignalKind], float],
        config: PipelineConfig | None = None,
    ) -> None:
        self._config = config or PipelineConfig()
        self._rates = dict(stream_rates_hz)
        self._processors: dict[tuple[Role, SignalKind], HeartRateProcessor | EdaProcessor] = {}
        self._segments: dict[tuple[Role, SignalKind], int] = {}
        self._started: set[Derived] = set()
        needed = {SOURCE_OF[d] for d in self._config.sync_signals}
        for role in Role:
            for signal in needed:
                if (role, signal) not in self._rates:
                    raise SignalError(
                        f"no sampling rate given for the {role.value} {signal.value} stream; "
                        f"synchrony of {', '.join(self._config.sync_signals)} needs it"
                    )
        grid_hz = self._config.grid_hz
        self._aligners = {
            d: GridAligner(grid_hz=grid_hz, max_wait_s=self._config.max_wait_s)
            for d in self._config.sync_signals
        }
        self._engines = {
            d: SynchronyEngine(grid_hz, config=self._config.synchrony)
            for d in self._config.sync_signals
        }

    @property
    def config(self) -> PipelineConfig:
        return self._config

    def push(self, frame: Frame) -> PipelineOutput:
        key = (frame.role, frame.signal)
        if key not in self._rates:
            return PipelineOutput()  # a stream this session does not analyse
        if key not in self._processors or self._segments.get(key) != frame.segment:
            self._processors[key] = self._new_processor(frame.signal, self._rates[key])
            self._segments[key] = frame.segment
        derived = self._derive(frame)
        sync: list[tuple[Derived, SyncUpdate]] = []
        episodes: list[tuple[Derived, EpisodeEvent]] = []
        for name, samples in derived:
            if name not in self._aligners or len(samples) == 0:
                continue
            aligned = self._aligners[name].push(frame.role, samples)
            if name not in self._started:
                # Sensors settle (filters, first beats) at different moments: the synchrony
                # history starts at the first sample valid for both people, so the start of a
                # session reads "warming up", not "bad signal".
                first_valid = np.flatnonzero(aligned.valid)
                if first_valid.size == 0:
                    continue
                aligned = aligned[int(first_valid[0]) :]
                self._started.add(name)
            if len(aligned) == 0:
                continue
            out = self._engines[name].push(
                t_s=aligned.t_s,
                therapist=aligned.therapist,
                client=aligned.client,
                valid=aligned.valid,
            )
            sync.extend((name, update) for update in out.updates)
            episodes.extend((name, event) for event in out.events)
        physio = tuple((frame.role, name, s) for name, s in derived if len(s) > 0)
        return PipelineOutput(physio=physio, sync=tuple(sync), episodes=tuple(episodes))

    def summary(self) -> dict[Derived, CoregulationSummary]:
        """Coregulation summary per synchronised signal for the session so far."""
        return {name: engine.summary() for name, engine in self._engines.items()}

    def _new_processor(
        self, signal: SignalKind, rate_hz: float
    ) -> HeartRateProcessor | EdaProcessor:
        if signal is SignalKind.ECG:
            return HeartRateProcessor(rate_hz, grid_hz=self._config.grid_hz)
        return EdaProcessor(rate_hz, grid_hz=self._config.grid_hz)

    def _derive(self, frame: Frame) -> list[tuple[Derived, GridSamples]]:
        processor = self._processors[(frame.role, frame.signal)]
        if isinstance(processor, HeartRateProcessor):
            hr = processor.push(frame.timestamps_s, frame.values)
            return [(Derived.HR, hr.hr)]
        eda = processor.push(frame.timestamps_s, frame.values)
        return [(Derived.SCL, eda.scl), (Derived.PHASIC, eda.phasic)]

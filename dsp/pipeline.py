"""One dyad's whole processing chain, pure and incremental.

``Frame`` (raw ECG/EDA chunk of one person) -> per-person processors (heart rate from
ECG, tonic/phasic skin conductance from EDA) -> per derived signal a :class:`GridAligner`
pairing therapist and client by grid index -> a :class:`SynchronyEngine` per derived
signal. Live sessions, replays and offline analysis all push frames through this class,
so they share every line of processing.

A change of ``Frame.segment`` (clock break, reconnect) restarts that person's processor:
nothing is computed across it. The cause of every unusable grid sample travels with it
(:class:`~dsp.types.SampleStatus`) so "no estimate" says why: indices a person's data never
reached are *missing* ("gap"); the start-up output of a restarted processor (no beats yet,
EDA filters settling) is *settling* ("reconnected"), up to its first sample that is valid or
flagged for another reason; only what a settled processor flags is "bad signal".

Determinism: the aligners release by data time (see :mod:`dsp.align`), so the outputs are the
same for any chunking of any stream and any interleaving of the four streams. The live
service additionally calls :meth:`DyadPipeline.advance` with its clock every loop step so a
silent sensor does not stall the other person's estimates; replays at full speed and offline
analysis call only :meth:`DyadPipeline.flush` at the end of the data.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum

import numpy as np

from dsp.align import DEFAULT_MAX_HOLD_S, AlignedSamples, GridAligner
from dsp.eda import EdaOutput, EdaProcessor
from dsp.eda_quality import EdaQuality
from dsp.exceptions import SignalError
from dsp.heart_rate import HeartRateOutput, HeartRateProcessor, HrReason
from dsp.synchrony import (
    CoregulationSummary,
    EpisodeEvent,
    SynchronyConfig,
    SynchronyEngine,
    SyncUpdate,
)
from dsp.types import Frame, GridSamples, Role, SampleStatus, SignalKind, StatusArray


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
    ``max_wait_s``: how long after its grid time :meth:`DyadPipeline.advance` (live only)
    gives up waiting for a late person and releases a sample with that person missing
    (longer than any detector delay, shorter than a clinician's patience).
    ``max_hold_s``: bound on data the aligners hold without ``advance`` (see
    :class:`~dsp.align.GridAligner`: beyond it the oldest samples are force-released).
    """

    grid_hz: float = 4.0
    max_wait_s: float = 10.0
    max_hold_s: float = DEFAULT_MAX_HOLD_S
    sync_signals: tuple[Derived, ...] = (Derived.HR, Derived.PHASIC)
    synchrony: SynchronyConfig = field(default_factory=SynchronyConfig)


@dataclass(frozen=True, slots=True)
class PipelineOutput:
    """What became final after one :meth:`DyadPipeline.push`, ``advance`` or ``flush``."""

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
        "_settling",
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
        # Processors still in their start-up output (see _status).
        self._settling: set[tuple[Role, SignalKind]] = set()
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
            d: GridAligner(
                grid_hz=grid_hz,
                max_wait_s=self._config.max_wait_s,
                max_hold_s=self._config.max_hold_s,
            )
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
        """Process one frame; return what became final (independent of frame boundaries)."""
        key = (frame.role, frame.signal)
        if key not in self._rates:
            return PipelineOutput()  # a stream this session does not analyse
        if key not in self._processors or self._segments.get(key) != frame.segment:
            self._processors[key] = self._new_processor(frame.signal, self._rates[key])
            self._segments[key] = frame.segment
            self._settling.add(key)
        derived = self._derive(frame)
        sync: list[tuple[Derived, SyncUpdate]] = []
        episodes: list[tuple[Derived, EpisodeEvent]] = []
        for name, samples, status in derived:
            if name in self._aligners and len(samples) > 0:
                aligned = self._aligners[name].push(frame.role, samples, status=status)
                self._synchronise(name, aligned, sync, episodes)
        physio = tuple((frame.role, name, s) for name, s, _ in derived if len(s) > 0)
        return PipelineOutput(physio=physio, sync=tuple(sync), episodes=tuple(episodes))

    def advance(self, *, now_s: float) -> PipelineOutput:
        """Live only, every loop step: release what is older than ``now_s - max_wait_s``
        (``now_s`` on the LSL clock) with absent people missing, so a silent sensor does not
        stall the other person's synchrony. Never call it in a replay or offline analysis:
        it makes the outputs depend on when frames were pushed."""
        return self._release(lambda aligner: aligner.advance(now_s=now_s))

    def flush(self) -> PipelineOutput:
        """End of the data: release everything the aligners hold (absent people missing).
        Later frames are accepted, but samples for released grid times are dropped."""
        return self._release(GridAligner.flush)

    def _release(self, release: Callable[[GridAligner], AlignedSamples]) -> PipelineOutput:
        sync: list[tuple[Derived, SyncUpdate]] = []
        episodes: list[tuple[Derived, EpisodeEvent]] = []
        for name, aligner in self._aligners.items():
            self._synchronise(name, release(aligner), sync, episodes)
        return PipelineOutput(sync=tuple(sync), episodes=tuple(episodes))

    def _synchronise(
        self,
        name: Derived,
        aligned: AlignedSamples,
        sync: list[tuple[Derived, SyncUpdate]],
        episodes: list[tuple[Derived, EpisodeEvent]],
    ) -> None:
        """Feed aligned samples to the signal's engine, appending what became final."""
        if name not in self._started:
            # Sensors settle (filters, first beats) at different moments: the synchrony
            # history starts at the first sample valid for both people, so the start of a
            # session reads "warming up", not "bad signal".
            first_valid = np.flatnonzero(aligned.valid)
            if first_valid.size == 0:
                return
            aligned = aligned[int(first_valid[0]) :]
            self._started.add(name)
        if len(aligned) == 0:
            return
        out = self._engines[name].push(
            t_s=aligned.t_s,
            therapist=aligned.therapist,
            client=aligned.client,
            valid=aligned.valid,
            status=aligned.status,
        )
        sync.extend((name, update) for update in out.updates)
        episodes.extend((name, event) for event in out.events)

    def summary(self) -> dict[Derived, CoregulationSummary]:
        """Coregulation summary per synchronised signal for the session so far."""
        return {name: engine.summary() for name, engine in self._engines.items()}

    def _new_processor(
        self, signal: SignalKind, rate_hz: float
    ) -> HeartRateProcessor | EdaProcessor:
        if signal is SignalKind.ECG:
            return HeartRateProcessor(rate_hz, grid_hz=self._config.grid_hz)
        return EdaProcessor(rate_hz, grid_hz=self._config.grid_hz)

    def _derive(self, frame: Frame) -> list[tuple[Derived, GridSamples, StatusArray]]:
        key = (frame.role, frame.signal)
        processor = self._processors[key]
        if isinstance(processor, HeartRateProcessor):
            hr = processor.push(frame.timestamps_s, frame.values)
            return [(Derived.HR, hr.hr, self._status(key, hr))]
        eda = processor.push(frame.timestamps_s, frame.values)
        status = self._status(key, eda)
        return [(Derived.SCL, eda.scl, status), (Derived.PHASIC, eda.phasic, status)]

    def _status(
        self, key: tuple[Role, SignalKind], out: HeartRateOutput | EdaOutput
    ) -> StatusArray:
        """The :class:`SampleStatus` of each new grid sample of one processor.

        A fresh processor first emits start-up output (HR: no beats yet; EDA: filters
        settling), invalid by construction: that is ``SETTLING`` until its first sample that
        is valid or invalid for another reason. From then on the processor is settled and its
        flags are signal quality (``BAD_SIGNAL``), except where raw samples never arrived
        (``MISSING``).
        """
        if isinstance(out, HeartRateOutput):
            valid = out.hr.valid
            missing = np.array([r is HrReason.GAP for r in out.reasons], dtype=np.bool_)
            start_up = np.array([r is HrReason.NO_BEATS for r in out.reasons], dtype=np.bool_)
        else:
            valid = out.scl.valid
            missing = out.quality == EdaQuality.GAP
            start_up = out.quality == EdaQuality.SETTLING
        status = np.where(
            valid, SampleStatus.OK, np.where(missing, SampleStatus.MISSING, SampleStatus.BAD_SIGNAL)
        ).astype(np.int8)
        if key in self._settling and status.size:
            settled_at = np.flatnonzero(~start_up)
            end = int(settled_at[0]) if settled_at.size else status.size
            status[:end] = SampleStatus.SETTLING
            if settled_at.size:
                self._settling.discard(key)
        return status

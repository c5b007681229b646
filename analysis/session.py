"""One recorded session analysed offline, by the live code path.

:func:`analyze_recording` replays a recording at maximum speed through exactly what a
live session runs (:func:`server.rooms.assemble_session`: the same pipeline, service and
message factory) and keeps every message the service publishes. Offline and live numbers
therefore agree by construction, and re-analysis with other settings (window, lag, step,
grid, surrogate count) is the same replay with a changed ``[synchrony]`` table.

What a :class:`SessionAnalysis` holds is the protocol's vocabulary (``physio``, ``sync``,
``episode``, ``status`` messages, see docs/protocol.md), plus accessors that turn it into
arrays: a person's derived series on the grid, one signal's synchrony updates, episodes.
"""

from __future__ import annotations

import asyncio
import dataclasses
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from dsp.episodes import CoregulationSummary
from dsp.pipeline import Derived, PipelineConfig
from dsp.types import Role
from server.protocol import Message
from server.rooms import assemble_session
from server.service import RunSummary, ServiceConfig
from streamer.player import open_replay
from streamer.session import SessionConfig

# Replay chunk of an offline analysis (the live default is 0.1 s).
OFFLINE_CHUNK_S = 5.0

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]

# The session's [synchrony] table (docs/configuration.md): re-analysis may change any of
# it; the tables among them (surrogates = the null, episodes, lead_lag, concordance) are
# merged key by key.
SYNCHRONY_KEYS = frozenset(
    {"window_s", "lag_s", "step_s", "grid_hz", "z_cap", "surrogates", "episodes", "lead_lag",
     "concordance"}
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class Series:
    """One person's derived signal on the grid: time stamps (recording clock, s), values
    (NaN where not valid) and validity."""

    t_s: FloatArray
    values: FloatArray
    valid: BoolArray


@dataclass(frozen=True, slots=True, kw_only=True)
class SessionAnalysis:
    """Everything the live service would have published for this recording."""

    source: Path
    session: SessionConfig
    pipeline: PipelineConfig
    messages: Sequence[Message]
    run: RunSummary
    coregulation: Mapping[Derived, CoregulationSummary]

    @property
    def hello(self) -> Message:
        return next(m for m in self.messages if m["type"] == "hello")

    def of_type(self, msg_type: str) -> list[Message]:
        return [m for m in self.messages if m["type"] == msg_type]

    def series(self, role: Role, signal: Derived) -> Series:
        """``role``'s ``signal`` (hr, scl, phasic) over the whole session."""
        batches = [
            m
            for m in self.of_type("physio")
            if m["role"] == role.value and m["signal"] == signal.value
        ]
        if not batches:
            empty = np.empty(0)
            return Series(t_s=empty, values=empty, valid=np.empty(0, dtype=bool))
        t_s = np.concatenate([np.asarray(m["t_s"], dtype=float) for m in batches])
        values = np.concatenate([_floats(m["values"]) for m in batches])
        valid = np.concatenate([np.asarray(m["valid"], dtype=bool) for m in batches])
        return Series(t_s=t_s, values=values, valid=valid)

    def sync(self, signal: Derived) -> list[Message]:
        """The ``sync`` updates of one synchronised signal, in order."""
        return [m for m in self.of_type("sync") if m["signal"] == signal.value]

    def episodes(self) -> list[Message]:
        return self.of_type("episode")

    @property
    def started_t(self) -> float:
        """The session start (LSL clock): the origin of session time, as on the dashboard."""
        hello = self.hello
        return float(hello["started_t"] if hello.get("started_t") is not None else hello["t"])

    @property
    def duration_s(self) -> float:
        stamps = [float(m["t"]) for m in self.messages if m["type"] in ("physio", "sync")]
        return max(stamps) - min(stamps) if stamps else 0.0


def _floats(values: Sequence[Any]) -> FloatArray:
    # Messages carry NaN as None (JSON has no NaN).
    return np.array([math.nan if v is None else float(v) for v in values], dtype=float)


def with_synchrony(session: SessionConfig, overrides: Mapping[str, Any]) -> SessionConfig:
    """``session`` with some ``[synchrony]`` settings replaced (validated as when loaded)."""
    from dsp.exceptions import ConfigError
    from streamer.session import synchrony_config

    unknown = sorted(set(overrides) - SYNCHRONY_KEYS)
    if unknown:
        raise ConfigError(
            f"cannot re-analyse with {unknown[0]!r}; settings: {', '.join(sorted(SYNCHRONY_KEYS))}"
        )
    table: dict[str, Any] = dict(session.synchrony)
    for key, value in overrides.items():
        before = table.get(key)
        merge = isinstance(value, Mapping) and isinstance(before, Mapping)
        table[key] = {**before, **value} if merge else value  # type: ignore[dict-item]
    synchrony_config(table)  # raises ConfigError naming the bad value
    return dataclasses.replace(session, synchrony=table)


def analyze_recording(
    path: str | Path,
    *,
    session: SessionConfig | None = None,
    synchrony: Mapping[str, Any] | None = None,
    progress: Callable[[float, float], None] | None = None,
) -> SessionAnalysis:
    """Replay ``path`` (a dyadsync recording, or another tool's XDF mapped by ``session``)
    through the live pipeline at maximum speed and keep what it publishes.

    ``synchrony`` replaces settings of the session's ``[synchrony]`` table (see
    :data:`SYNCHRONY_KEYS`); ``progress(done_s, total_s)`` is called as the replay
    advances (recording seconds). Raises :class:`~streamer.errors.RecordingError` for a
    file that cannot be read, :class:`~dsp.exceptions.ConfigError` for bad settings.
    """
    # Long chunks: offline there is no one to show a chunk to early, and the DSP gives the
    # same output whatever the chunking (bench/offline.py checks it and times the choice).
    replay = open_replay(path, session=session, speed=math.inf, chunk_s=OFFLINE_CHUNK_S)
    analysed = replay.session if not synchrony else with_synchrony(replay.session, synchrony)
    parts = assemble_session(
        analysed,
        sources=replay.sources,
        mode="replay",
        clock=replay.now_s,
        service_config=ServiceConfig(poll_interval_s=0.0),
    )
    # Unbounded on purpose: offline, every message is kept (a live consumer is bounded).
    consumer = parts.hub.subscribe("analysis", max_droppable=2**62, max_events=2**62)
    messages: list[Message] = [parts.service.hello()]
    total_s = replay.duration_s

    start_s = replay.now_s()

    def finished() -> bool:
        if progress is not None:
            progress(replay.now_s() - start_s, total_s)
        return replay.finished

    async def run() -> RunSummary:
        summary = await parts.service.run(until=finished)
        while len(consumer):
            messages.append((await consumer.get()).message)
        return summary

    summary = asyncio.run(run())
    return SessionAnalysis(
        source=Path(path),
        session=analysed,
        pipeline=parts.pipeline.config,
        messages=messages,
        run=summary,
        coregulation=parts.pipeline.summary(),
    )

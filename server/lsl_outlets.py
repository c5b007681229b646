"""LSL outlets of a session's derived results, for LabRecorder and any other LSL tool.

One hub consumer turns the protocol messages (docs/protocol.md) into samples of these
outlets (docs/lsl_outputs.md), all created when :class:`DerivedOutlets` is built, so a
recorder started before the session already sees every stream:

- per person and derived signal (``therapist``/``client`` x ``hr``/``scl``/``phasic``, as
  far as the session's sensors provide them): one float32 channel on the analysis grid,
  NaN where the sample is not valid (bad signal, gap). One outlet each rather than one
  per person: heart rate and skin conductance come from different sensors and become
  final at different moments, and an LSL sample needs all its channels at once;
- per synchronised signal: the ``sync`` message's numbers, the same channels and codes as
  the session recording (:data:`server.recorder.SYNC_CHANNELS`), one sample per update;
- one string stream of events: ``status`` and ``episode`` messages as their protocol JSON.

Every sample is stamped with the time the message gives it on the session clock (the LSL
clock live; the recording's own time in a replay): a grid sample with its grid time, a
synchrony update with the newest sample of its window, an event with its ``t``. The
stamps are therefore in the (recent) past when pushed, on the same clock as the raw
streams' samples of the moment they describe.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

import numpy as np
import numpy.typing as npt
import pylsl

from dsp.pipeline import SOURCE_OF, Derived, PipelineConfig
from dsp.synchrony import LAG_CONVENTION
from dsp.types import Role
from server.closing import ClosedOnExit
from server.hub import ConsumerQueue, Hub, Published
from server.protocol import PROTOCOL_VERSION
from server.recorder import LEADER_CODES, STATE_CODES, SYNC_CHANNELS, sync_row
from server.service import SERVER_VERSION
from streamer.errors import StreamError
from streamer.session import SessionConfig

MANUFACTURER: Final = "dyadsync"
EVENTS_KEY: Final = "events"

# Message types published on the events outlet, as their protocol JSON. A new event type
# (the clinician's ``marker``) is one more entry. ``recording`` is left out on purpose:
# its detail names the recording's folder, which may name a person, and LSL streams are
# visible to the whole network.
EVENT_TYPES: Final = frozenset({"status", "episode"})


@dataclass(frozen=True, slots=True)
class _PhysioSpec:
    stream_type: str
    unit: str


_PHYSIO: Final[Mapping[Derived, _PhysioSpec]] = {
    Derived.HR: _PhysioSpec(stream_type="HeartRate", unit="bpm"),
    Derived.SCL: _PhysioSpec(stream_type="SkinConductanceLevel", unit="uS"),
    Derived.PHASIC: _PhysioSpec(stream_type="PhasicSkinConductance", unit="uS"),
}

# Units of the sync channels (a channel added to the recording's layout without a unit
# here fails at import, not silently in a header).
_SYNC_UNITS: Final[Mapping[str, str]] = {
    "estimate": "boolean",
    "r": "pearson_r",
    "z": "fisher_z",
    "z_lag0": "fisher_z",
    "trough_z": "fisher_z",
    "best_lag_s": "s",
    "null_z": "sd_of_null",
    "p": "probability",
    "anti_null_z": "sd_of_null",
    "anti_p": "probability",
    "concordance": "ln_ratio",
    "window_center_s": "s_lsl_clock",
    "state": "code",
    "leader": "code",
}
_SYNC_CHANNEL_UNITS: Final = tuple((name, _SYNC_UNITS[name]) for name in SYNC_CHANNELS)


def physio_key(role: str, signal: str) -> str:
    """The key (in :attr:`DerivedOutlets.source_ids` and the stats) of a person's series."""
    return f"{role}-{signal}"


def sync_key(signal: str) -> str:
    """The key of a signal's synchrony outlet."""
    return f"sync-{signal}"


def derived_source_id(room: str, key: str) -> str:
    """The outlet's ``source_id``: the same for the same room and stream whenever the
    service runs, so LabRecorder and inlets recognise a restarted service's outlets."""
    return f"dyadsync-out/{room}/{key}"


@dataclass(frozen=True, slots=True, kw_only=True)
class OutletStats:
    """What the outlets did so far (for health and metrics).

    ``samples_pushed``: per outlet key. ``dropped_messages``: messages the hub dropped
    because this consumer fell behind (their samples are missing from the outlets).
    ``unrouted_messages``: derived messages of a stream this session declared no outlet
    for (a bug: counted, not hidden).
    """

    samples_pushed: Mapping[str, int]
    dropped_messages: int
    unrouted_messages: int


class _Outlet:
    """One LSL outlet and its sample count (kept after the outlet is closed)."""

    __slots__ = ("_lsl", "pushed", "source_id")

    def __init__(self, info: pylsl.StreamInfo) -> None:
        self.source_id = info.source_id()
        try:
            self._lsl: pylsl.StreamOutlet | None = pylsl.StreamOutlet(info)
        except RuntimeError as exc:
            raise StreamError(
                f"cannot open the LSL outlet {self.source_id!r}: {exc}; check that liblsl "
                "can open a network port on this machine"
            ) from None
        self.pushed = 0

    def push(self, samples: npt.ArrayLike, stamps_s: list[float]) -> None:
        if self._lsl is None:
            raise StreamError(f"the LSL outlet {self.source_id!r} is closed")
        self._lsl.push_chunk(samples, stamps_s)
        self.pushed += len(stamps_s)

    def close(self) -> None:
        # Dropping the pylsl object destroys the outlet in liblsl (pylsl's __del__).
        self._lsl = None


class DerivedOutlets(ClosedOnExit):
    """Publishes a session's derived results as LSL outlets.

    Built before the session runs (the outlets exist from then on). Run :meth:`run` as a
    task while the session runs; when it has ended, await :meth:`drain` (what the session
    published last is still queued), cancel the task and :meth:`close` (or use the object
    as a context manager). Samples pushed before an inlet connects are not delivered to
    it, as with any LSL outlet: start recorders first.

    ``pipeline`` is the running pipeline's configuration (``SessionParts.pipeline.config``):
    it names the synchronised signals, the grid rate and the synchrony settings put into
    the headers. ``max_droppable`` and ``max_events`` bound this consumer's hub queue.
    Raises :class:`~streamer.errors.StreamError` if liblsl cannot open an outlet.
    """

    __slots__ = ("_closed", "_hub", "_outlets", "_queue", "_unrouted")

    def __init__(
        self,
        *,
        hub: Hub,
        session: SessionConfig,
        pipeline: PipelineConfig,
        max_droppable: int = 4096,
        max_events: int = 4096,
    ) -> None:
        headers = _Headers(session=session, pipeline=pipeline)
        infos = {
            physio_key(role.value, signal.value): headers.physio(role, signal)
            for role in Role
            for signal in Derived
            if SOURCE_OF[signal] in session.signals
        }
        infos.update({sync_key(s.value): headers.sync(s) for s in pipeline.sync_signals})
        infos[EVENTS_KEY] = headers.events()
        self._outlets: dict[str, _Outlet] = {}
        try:
            for key, info in infos.items():
                self._outlets[key] = _Outlet(info)
        except BaseException:
            self._close_outlets()
            raise
        self._hub = hub
        self._queue: ConsumerQueue = hub.subscribe(
            f"lsl-out-{session.room}", max_droppable=max_droppable, max_events=max_events
        )
        self._unrouted = 0
        self._closed = False

    @property
    def source_ids(self) -> dict[str, str]:
        """``source_id`` of every outlet by key (``therapist-hr``, ``sync-hr``, ``events``)."""
        return {key: outlet.source_id for key, outlet in self._outlets.items()}

    @property
    def stats(self) -> OutletStats:
        return OutletStats(
            samples_pushed={key: outlet.pushed for key, outlet in self._outlets.items()},
            dropped_messages=self._queue.dropped,
            unrouted_messages=self._unrouted,
        )

    async def run(self) -> None:
        """Forward the hub's messages to the outlets until cancelled."""
        while True:
            self._forward(await self._queue.get())

    async def drain(self) -> None:
        """Forward what is queued now, then return (call it once the session ended)."""
        while len(self._queue):
            self._forward(await self._queue.get())

    def _forward(self, published: Published) -> None:
        """Push one protocol message's samples; other message types are not published."""
        message = published.message
        kind = message["type"]
        if kind == "physio":
            outlet = self._outlets.get(physio_key(message["role"], message["signal"]))
            # None (not valid) becomes NaN.
            samples: npt.ArrayLike = np.array(message["values"], dtype=np.float32)[:, None]
            stamps = [float(t) for t in message["t_s"]]
        elif kind == "sync":
            outlet = self._outlets.get(sync_key(message["signal"]))
            samples, stamps = np.array([sync_row(message)]), [float(message["t"])]
        elif kind in EVENT_TYPES:
            # The JSON text the hub encodes once for every consumer (websocket clients too).
            outlet = self._outlets[EVENTS_KEY]
            samples, stamps = [[published.text]], [float(message["t"])]
        else:
            return
        if outlet is None:
            self._unrouted += 1
            return
        outlet.push(samples, stamps)

    def close(self) -> None:
        """Leave the hub and destroy the outlets (idempotent; :attr:`stats` stay)."""
        if self._closed:
            return
        self._closed = True
        self._hub.unsubscribe(self._queue)
        self._close_outlets()

    def _close_outlets(self) -> None:
        for outlet in self._outlets.values():
            outlet.close()


class _Headers:
    """The ``StreamInfo`` of every outlet of one session (docs/lsl_outputs.md)."""

    __slots__ = ("_pipeline", "_room")

    def __init__(self, *, session: SessionConfig, pipeline: PipelineConfig) -> None:
        self._room = session.room
        self._pipeline = pipeline

    def physio(self, role: Role, signal: Derived) -> pylsl.StreamInfo:
        spec = _PHYSIO[signal]
        key = physio_key(role.value, signal.value)
        info = self._info(
            key=key,
            stream_type=spec.stream_type,
            channel_count=1,
            rate_hz=self._pipeline.grid_hz,
            channel_format=pylsl.cf_float32,
        )
        desc = info.desc()
        _channels(desc, [(key, spec.unit, spec.stream_type)])
        ours = self._ours(desc, kind="physio")
        ours.append_child_value("role", role.value)
        ours.append_child_value("signal", signal.value)
        ours.append_child_value("source_signal", SOURCE_OF[signal].value)
        ours.append_child_value("invalid", "NaN")
        return info

    def sync(self, signal: Derived) -> pylsl.StreamInfo:
        # double64, unlike the physio series: window_center_s is an LSL clock time, which
        # float32 would round to 1/16 s after a few days of uptime; and the rows are then
        # bit for bit those of the session recording.
        info = self._info(
            key=sync_key(signal.value),
            stream_type="Synchrony",
            channel_count=len(SYNC_CHANNELS),
            rate_hz=1.0 / self._pipeline.synchrony.step_s,
            channel_format=pylsl.cf_double64,
        )
        desc = info.desc()
        _channels(desc, [(name, unit, "Synchrony") for name, unit in _SYNC_CHANNEL_UNITS])
        ours = self._ours(desc, kind="sync")
        ours.append_child_value("signal", signal.value)
        ours.append_child_value("invalid", "NaN")
        codes = ours.append_child("codes")
        for channel, table in (("state", STATE_CODES), ("leader", LEADER_CODES)):
            element = codes.append_child(channel)
            for name, code in table.items():
                element.append_child_value(name or "none", f"{code:g}")
        return info

    def events(self) -> pylsl.StreamInfo:
        info = self._info(
            key=EVENTS_KEY,
            stream_type="Markers",
            channel_count=1,
            rate_hz=pylsl.IRREGULAR_RATE,
            channel_format=pylsl.cf_string,
        )
        desc = info.desc()
        _channels(desc, [("event", "json", "Markers")])
        ours = self._ours(desc, kind="derived_events")
        ours.append_child_value("message_types", ",".join(sorted(EVENT_TYPES)))
        return info

    def _info(
        self, *, key: str, stream_type: str, channel_count: int, rate_hz: float, channel_format: int
    ) -> pylsl.StreamInfo:
        info = pylsl.StreamInfo(
            name=f"dyadsync-{self._room}-{key}",
            type=stream_type,
            channel_count=channel_count,
            nominal_srate=rate_hz,
            channel_format=channel_format,
            source_id=derived_source_id(self._room, key),
        )
        acquisition = info.desc().append_child("acquisition")
        acquisition.append_child_value("manufacturer", MANUFACTURER)
        acquisition.append_child_value("model", "derived")
        acquisition.append_child_value("software", f"dyadsync {SERVER_VERSION}")
        return info

    def _ours(self, desc: pylsl.XMLElement, *, kind: str) -> pylsl.XMLElement:
        """The ``<dyadsync>`` element: what the stream is and the settings behind it.

        Its ``kind`` is never "raw" or "events": ``dyadsync replay`` of a LabRecorder
        file reads streams of those kinds as a dyadsync recording's own.
        """
        sync = self._pipeline.synchrony
        ours = desc.append_child("dyadsync")
        ours.append_child_value("kind", kind)
        ours.append_child_value("room", self._room)
        ours.append_child_value("protocol_version", str(PROTOCOL_VERSION))
        ours.append_child_value("grid_hz", f"{self._pipeline.grid_hz:g}")
        settings = ours.append_child("synchrony")
        settings.append_child_value(
            "signals", ",".join(d.value for d in self._pipeline.sync_signals)
        )
        settings.append_child_value("window_s", f"{sync.window_s:g}")
        settings.append_child_value("lag_s", f"{sync.lag_s:g}")
        settings.append_child_value("step_s", f"{sync.step_s:g}")
        settings.append_child_value("z_enter", f"{sync.episodes.z_enter:g}")
        settings.append_child_value("z_exit", f"{sync.episodes.z_exit:g}")
        settings.append_child_value("lag_convention", LAG_CONVENTION)
        return ours


def _channels(desc: pylsl.XMLElement, channels: list[tuple[str, str, str]]) -> None:
    element = desc.append_child("channels")
    for label, unit, kind in channels:
        channel = element.append_child("channel")
        channel.append_child_value("label", label)
        channel.append_child_value("unit", unit)
        channel.append_child_value("type", kind)

"""The live dyad simulator: four LSL outlets (therapist/client x ECG/EDA) playing a scenario.

Stream layout (matched by ``device_configs/dyadsync_simulator.toml``): name
``dyadsync-sim-<role>-<signal>``, type ``ECG``/``EDA``, two float64 channels — the signal
(mV or uS) and a per-stream sample counter, so end-to-end tests can prove no sample was
lost or duplicated. Role and signal are also written to the stream's ``desc`` so the
streamer can recognise them without a session file.

Samples are stamped on the LSL clock at their nominal sampling instants and pushed in
chunks every ``scenario.chunk_s`` like a Bluetooth device delivering packets.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pylsl

from dsp.types import FloatArray, Role, SignalKind
from streamer.devices import CANONICAL_UNIT
from streamer.scenario import Scenario
from streamer.session import SIMULATOR_SOURCE_PREFIX, simulator_source_id
from streamer.synth import synthesize

log = logging.getLogger(__name__)


def _stream_info(prefix: str, role: Role, signal: SignalKind, rate_hz: float) -> pylsl.StreamInfo:
    info = pylsl.StreamInfo(
        name=f"dyadsync-sim-{role.value}-{signal.value}",
        type=signal.value.upper(),
        channel_count=2,
        nominal_srate=rate_hz,
        channel_format=pylsl.cf_double64,
        source_id=simulator_source_id(prefix, role, signal),
    )
    desc = info.desc()
    acquisition = desc.append_child("acquisition")
    acquisition.append_child_value("manufacturer", "dyadsync")
    acquisition.append_child_value("model", "simulator")
    channels = desc.append_child("channels")
    for label, unit, kind in (
        (signal.value.upper(), CANONICAL_UNIT[signal], signal.value.upper()),
        ("counter", "count", "counter"),
    ):
        channel = channels.append_child("channel")
        channel.append_child_value("label", label)
        channel.append_child_value("unit", unit)
        channel.append_child_value("type", kind)
    ours = desc.append_child("dyadsync")
    ours.append_child_value("role", role.value)
    ours.append_child_value("signal", signal.value)
    return info


@dataclass(slots=True)
class _Channel:
    """One outlet and the position of its next sample in the endless (looped) scenario."""

    role: Role
    signal: SignalKind
    rate_hz: float
    outlet: pylsl.StreamOutlet
    sent: int = 0


class DyadSimulator:
    """Publishes a scenario as four LSL outlets from a background thread.

    ``start()`` opens the outlets and begins publishing; ``stop()`` ends the thread and
    closes the outlets (call it, or use the simulator as a context manager, so tests do
    not see each other's streams). ``samples_sent`` reports per-stream counts.
    """

    def __init__(
        self,
        scenario: Scenario,
        *,
        source_prefix: str = SIMULATOR_SOURCE_PREFIX,
        signals: tuple[SignalKind, ...] = (SignalKind.ECG, SignalKind.EDA),
        loop: bool = True,
        clock: Callable[[], float] = pylsl.local_clock,
    ) -> None:
        self._scenario = scenario
        self._prefix = source_prefix
        self._signals = signals
        self._loop = loop
        self._clock = clock
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._channels: list[_Channel] = []
        self._passes: dict[int, dict[tuple[Role, SignalKind], FloatArray]] = {}
        self.start_time_s = 0.0
        self.error: BaseException | None = None

    def __enter__(self) -> DyadSimulator:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def samples_sent(self) -> dict[str, int]:
        return {f"{c.role.value}-{c.signal.value}": c.sent for c in self._channels}

    def start(self) -> None:
        rates = {
            SignalKind.ECG: self._scenario.ecg_rate_hz,
            SignalKind.EDA: self._scenario.eda_rate_hz,
        }
        for role in Role:
            for signal in self._signals:
                info = _stream_info(self._prefix, role, signal, rates[signal])
                outlet = pylsl.StreamOutlet(info, chunk_size=0, max_buffered=360)
                self._channels.append(_Channel(role, signal, rates[signal], outlet))
        self.start_time_s = self._clock()
        self._thread = threading.Thread(target=self._run, name="dyadsync-simulator", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5.0)
        self._channels_close()

    def _channels_close(self) -> None:
        # Dropping the outlet objects closes them in liblsl (pylsl destroys on __del__).
        for channel in self._channels:
            del channel.outlet
        self._channels.clear()

    def _samples(self, pass_index: int, role: Role, signal: SignalKind) -> FloatArray:
        if pass_index not in self._passes:
            signals = synthesize(self._scenario, pass_index=pass_index)
            self._passes = {
                pass_index: {(r, SignalKind.ECG): signals.ecg_mv[r] for r in Role}
                | {(r, SignalKind.EDA): signals.eda_us[r] for r in Role}
            }
        return self._passes[pass_index][(role, signal)]

    def _run(self) -> None:
        try:
            while not self._stop.wait(self._scenario.chunk_s):
                if not self._publish_due(self._clock() - self.start_time_s):
                    return
        except Exception as exc:  # surfaced to the owner via .error, never swallowed
            log.exception("simulator stopped by an error")
            self.error = exc

    def _publish_due(self, elapsed_s: float) -> bool:
        """Push every sample whose nominal time has come; False once a non-looping run ends."""
        more = True
        for channel in self._channels:
            due = int(np.floor(elapsed_s * channel.rate_hz)) + 1
            per_pass = int(round(self._scenario.duration_s * channel.rate_hz))
            if not self._loop and due >= per_pass:
                due, more = per_pass, False
            while channel.sent < due:
                pass_index, offset = divmod(channel.sent, per_pass)
                values = self._samples(pass_index, channel.role, channel.signal)
                stop = min(offset + due - channel.sent, per_pass)
                counter = np.arange(channel.sent, channel.sent + stop - offset, dtype=np.float64)
                chunk = np.column_stack([values[offset:stop], counter])
                last_t = self.start_time_s + (channel.sent + chunk.shape[0] - 1) / channel.rate_hz
                channel.outlet.push_chunk(chunk, timestamp=last_t)
                channel.sent += chunk.shape[0]
        return more

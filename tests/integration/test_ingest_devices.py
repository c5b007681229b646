"""Every built-in device config, exercised over real LSL: a stream shaped like that device
(name, type, channel layout, labels, units, rate, packet size, raw units) is published from
a separate process, and the values must arrive converted to mV / uS.

The expected values are computed here from the manufacturers' formulas, written out
independently of the conversion code under test.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest

from dsp.types import Role, SignalKind, StatusKind
from streamer.devices import builtin_device_configs
from streamer.inlet import SensorInlet
from tests.integration.lsl_outlet_proc import InletWatch, OutletProcess, unique_source_id

pytestmark = [pytest.mark.integration, pytest.mark.timeout(90)]

ECG, EDA = SignalKind.ECG, SignalKind.EDA


@dataclass(frozen=True)
class DeviceStream:
    """One device-shaped outlet and, per signal it carries, the expected conversion."""

    config: str
    outlet: dict[str, Any]
    expected: dict[SignalKind, Callable[[np.ndarray], np.ndarray]]
    raw: tuple[float, float, int] = (1.0, 0.01, 100)  # base, step, period of raw values
    counter: bool = False
    extra: dict[str, Any] = field(default_factory=dict)


def _bitalino_ecg_mv(adc: np.ndarray) -> np.ndarray:
    return (adc / 2**10 - 0.5) * 3.3 / 1100 * 1000


def _bitalino_eda_us(adc: np.ndarray) -> np.ndarray:
    return adc / 2**10 * 3.3 / 0.132


def _plux_ecg_mv(adc: np.ndarray) -> np.ndarray:
    return (adc / 2**16 - 0.5) * 3.0 / 1019 * 1000


def _plux_eda_us(adc: np.ndarray) -> np.ndarray:
    return adc / 2**16 * 3.0 / 0.12


def _same(x: np.ndarray) -> np.ndarray:
    return x


SIM_DESC = ["acquisition/manufacturer=dyadsync", "acquisition/model=simulator"]

STREAMS = [
    DeviceStream(
        "polar_h10",
        dict(name="Polar H10 7E37D222", type="ECG", channels=1, rate=130, chunk=73,
             counter_channel=-1, units="microvolts", format="int32"),
        {ECG: lambda uv: uv / 1000.0},
        raw=(-400.0, 10.0, 100),
    ),
    DeviceStream(
        "empatica_e4",
        dict(name="E4_Gsr", type="GSR", channels=1, rate=4, chunk=1, counter_channel=-1),
        {EDA: _same},
        raw=(0.05, 0.001, 50),
    ),
    DeviceStream(
        "shimmer3_gsr",
        dict(name="Shimmer_5E3A", type="GSR", channels=3, rate=128, chunk=16,
             counter_channel=-1, signal_channels="1",
             labels="Timestamp_CAL,GSR_Skin_Resistance_CAL,Battery_CAL",
             units="mSecs,kOhms,mV"),
        {EDA: lambda kohm: 1000.0 / kohm},
        raw=(150.0, 1.0, 100),
    ),
    DeviceStream(
        "shimmer3_ecg",
        dict(name="Shimmer_8A21", type="ExG", channels=3, rate=512, chunk=32,
             counter_channel=-1, signal_channels="1",
             labels="Timestamp_CAL,ECG_LL-RA_24BIT_CAL,ECG_LA-RA_24BIT_CAL",
             units="mSecs,mV,mV"),
        {ECG: _same},
        raw=(-0.5, 0.02, 100),
    ),
    DeviceStream(
        "emotibit",
        dict(name="EmotiBit_EDA", type="EDA", channels=1, rate=15, chunk=2, counter_channel=-1,
             units="uS"),
        {EDA: _same},
        raw=(2.0, 0.01, 60),
    ),
    DeviceStream(
        "bitalino_opensignals",
        dict(name="OpenSignals", type="OpenSignals", channels=3, rate=1000, chunk=100,
             counter_channel=0, signal_channels="1,2", labels="nSeq,A1,A2", format="float32"),
        {ECG: _bitalino_ecg_mv, EDA: _bitalino_eda_us},
        raw=(400.0, 2.0, 100),
        counter=True,
    ),
    DeviceStream(
        "biosignalsplux_opensignals",
        dict(name="OpenSignals", type="OpenSignals", channels=3, rate=1000, chunk=100,
             counter_channel=0, signal_channels="1,2", labels="nSeq,CH1,CH2", format="float32"),
        {ECG: _plux_ecg_mv, EDA: _plux_eda_us},
        raw=(30000.0, 100.0, 100),
        counter=True,
    ),
    DeviceStream(
        "movesense_ecg",
        dict(name="Movesense 174630000192", type="ECG", channels=1, rate=128, chunk=16,
             counter_channel=-1, format="int32"),
        {ECG: lambda uv: uv / 1000.0},
        raw=(-300.0, 7.0, 100),
    ),
    DeviceStream(
        "biopac_lsl",
        dict(name="AcqKnowledge MP160", type="Biopac", channels=2, rate=500, chunk=50,
             counter_channel=-1, signal_channels="0,1", labels="ECG100C,EDA100C",
             units="mV,microsiemens"),
        {ECG: _same, EDA: _same},
        raw=(0.5, 0.05, 100),
    ),
    DeviceStream(
        "generic",
        dict(name="my-ecg", type="ECG", channels=1, rate=250, chunk=25, counter_channel=-1),
        {ECG: _same},
    ),
    DeviceStream(
        "generic",
        dict(name="my-eda", type="EDA", channels=1, rate=20, chunk=2, counter_channel=-1),
        {EDA: _same},
        raw=(5.0, 0.02, 40),
    ),
    DeviceStream(
        "dyadsync_simulator",
        dict(name="dyadsync-sim-therapist-ecg", type="ECG", channels=2, rate=256, chunk=26,
             counter_channel=1, labels="ECG,counter", units="mV,count",
             desc=[*SIM_DESC, "dyadsync/role=therapist", "dyadsync/signal=ecg"]),
        {ECG: _same},
        counter=True,
    ),
    DeviceStream(
        "dyadsync_simulator",
        dict(name="dyadsync-sim-client-eda", type="EDA", channels=2, rate=32, chunk=4,
             counter_channel=1, labels="EDA,counter", units="uS,count",
             desc=[*SIM_DESC, "dyadsync/role=client", "dyadsync/signal=eda"]),
        {EDA: _same},
        raw=(3.0, 0.01, 64),
        counter=True,
    ),
]  # fmt: skip


def test_every_builtin_config_is_exercised() -> None:
    covered = {stream.config for stream in STREAMS}
    assert covered == set(builtin_device_configs())
    for name, config in builtin_device_configs().items():
        carried = {kind for s in STREAMS if s.config == name for kind in s.expected}
        assert carried == set(config.signals), name


@pytest.fixture(scope="module")
def delivered() -> Iterator[list[tuple[DeviceStream, SignalKind, InletWatch]]]:
    """All device outlets at once (in parallel, to keep the suite short), one inlet per
    signal, polled until each has delivered a few packets."""
    configs = builtin_device_configs()
    outlets: list[OutletProcess] = []
    inlets: list[SensorInlet] = []
    results = []
    try:
        for stream in STREAMS:
            base, step, period = stream.raw
            source_id = unique_source_id(stream.config)
            outlets.append(
                OutletProcess(
                    source_id, raw_base=base, raw_step=step, raw_period=period, **stream.outlet
                )
            )
            for kind in stream.expected:
                inlet = SensorInlet(
                    role=Role.THERAPIST, signal=kind, device=configs[stream.config],
                    source_id=source_id,
                )  # fmt: skip
                inlets.append(inlet)
                results.append((stream, kind, InletWatch(inlet)))
        _poll_until_ready([watch for _, _, watch in results], timeout_s=30.0)
        yield results
    finally:
        for inlet in inlets:
            inlet.close()
        for outlet in outlets:
            outlet.close()


def _poll_until_ready(watches: list[InletWatch], *, timeout_s: float) -> None:
    """Poll every inlet until each has delivered at least 3 device packets (and 8 samples)."""

    def ready(watch: InletWatch) -> bool:
        inlet = watch.inlets[0]
        packet = inlet.device.spec(inlet.signal).chunk_samples
        return watch.samples() >= max(3 * packet, 8)

    deadline = time.monotonic() + timeout_s
    while not all(ready(watch) for watch in watches):
        assert time.monotonic() < deadline, [w.inlets[0].device.name for w in watches
                                             if not ready(w)]  # fmt: skip
        for watch in watches:
            watch.poll()
        time.sleep(0.02)


@pytest.mark.parametrize(
    "index", range(sum(len(s.expected) for s in STREAMS)),
    ids=[f"{s.config}-{k.value}-{s.outlet['name']}" for s in STREAMS for k in s.expected],
)  # fmt: skip
def test_device_values_arrive_converted(delivered, index: int) -> None:
    stream, kind, watch = delivered[index]
    connected = [e for _, e in watch.events if e.kind is StatusKind.CONNECTED]
    assert len(connected) == 1
    assert not [e for _, e in watch.events if e.kind is StatusKind.MISMATCH]

    values = np.concatenate([f.values for f in watch.frames])
    base, step, period = stream.raw
    table = stream.expected[kind](base + np.arange(period) * step)
    # The inlet joins mid-stream: find where in the raw cycle the first sample was, then
    # every following sample must be the next raw value, converted.
    start = int(np.argmin(np.abs(table - values[0])))
    expected = table[(start + np.arange(values.shape[0])) % period]
    np.testing.assert_allclose(values, expected, rtol=1e-5, atol=1e-9)

    times = np.concatenate([f.timestamps_s for f in watch.frames])
    assert np.all(np.diff(times) > 0)
    rate_hz = stream.outlet["rate"]
    span_s = times[-1] - times[0]
    assert span_s == pytest.approx((times.shape[0] - 1) / rate_hz, rel=0.05, abs=0.05)
    if stream.counter:
        counters = np.concatenate([f.counters for f in watch.frames])
        assert np.all(np.diff(counters) == 1)
    else:
        assert all(f.counters is None for f in watch.frames)

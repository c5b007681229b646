"""Pure rules of the inlet: which stream serves a sensor, why one cannot, stall timing."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from dsp.exceptions import ConfigError
from dsp.types import Role, SignalKind
from streamer.devices import StreamMeta, builtin_device_configs
from streamer.inlet import InletConfig, check_stream
from streamer.session import SensorSource

CONFIGS = builtin_device_configs()
SIM = CONFIGS["dyadsync_simulator"]


def _sim_meta(role: str = "therapist", **changes: Any) -> StreamMeta:
    base = StreamMeta(
        name=f"dyadsync-sim-{role}-ecg", type="ECG", source_id=f"p-{role}-ecg", uid="u1",
        channel_count=2, nominal_srate_hz=256.0, channel_format="double64",
        desc={"acquisition/manufacturer": "dyadsync", "acquisition/model": "simulator",
              "dyadsync/role": role},
        channel_labels=("ECG", "counter"), channel_units=("mV", "count"), has_desc=True,
    )  # fmt: skip
    return replace(base, **changes)


def _wanted(meta: StreamMeta, *, role=Role.THERAPIST, source_id=None, name_pattern=None):
    sensor = SensorSource(
        role=role, signal=SignalKind.ECG, device=SIM, source_id=source_id,
        name_pattern=name_pattern,
    )  # fmt: skip
    return sensor.accepts(meta)


def test_sensor_accepts_by_source_id_name_or_declared_role() -> None:
    meta = _sim_meta()
    assert _wanted(meta, source_id="p-therapist-ecg")
    assert not _wanted(meta, source_id="p-client-ecg")
    assert _wanted(meta, name_pattern="DYADSYNC-sim-therapist-*")  # case-insensitive glob
    assert not _wanted(meta, name_pattern="other*")
    assert _wanted(meta)  # device match + declared role
    assert not _wanted(meta, role=Role.CLIENT)  # declares another role
    assert not _wanted(_sim_meta(type="EDA"))  # ECG inlet, EDA stream
    no_desc = _sim_meta(desc={}, has_desc=False)
    assert not _wanted(no_desc)  # the simulator config requires its desc fields


def test_check_stream_explains_what_is_wrong() -> None:
    ok = _sim_meta()
    assert check_stream(ok, SIM, SignalKind.ECG) is None
    assert "3 channels, expected 2" in (
        check_stream(_sim_meta(channel_count=3), SIM, SignalKind.ECG) or ""
    )
    assert "declares 512 Hz, expected 256 Hz" in (
        check_stream(_sim_meta(nominal_srate_hz=512.0), SIM, SignalKind.ECG,
                     expected_rate_hz=256.0) or ""
    )  # fmt: skip
    assert "format 'string'" in (
        check_stream(_sim_meta(channel_format="string"), SIM, SignalKind.ECG) or ""
    )
    assert "does not match device config 'dyadsync_simulator'" in (
        check_stream(_sim_meta(type="EEG"), SIM, SignalKind.ECG) or ""
    )
    assert "declares unit 'uV'" in (
        check_stream(_sim_meta(channel_units=("microvolts", "count")), SIM, SignalKind.ECG) or ""
    )
    shimmer = CONFIGS["shimmer3_gsr"]
    unlabelled = StreamMeta(name="Shimmer_1", type="GSR", source_id="s", channel_count=2,
                            channel_format="float32", nominal_srate_hz=128.0)  # fmt: skip
    assert "no channel matching 'GSR*Resistance*'" in (
        check_stream(unlabelled, shimmer, SignalKind.EDA) or ""
    )


@pytest.mark.parametrize(
    ("rate_hz", "chunk", "expected_s"),
    [
        (4.0, 1, 1.25),  # E4: 5 intervals
        (15.0, 2, 5 / 15),  # EmotiBit: 5 intervals
        (130.0, 73, 2 * 73 / 130),  # Polar H10: two packets (0.56 s each)
        (256.0, 26, 0.25),  # simulator: floor
        (1.0, 1, 2.0),  # slow stream: capped at 2 s
        (0.0, 1, 2.0),  # irregular: the cap
    ],
)
def test_stall_threshold(rate_hz: float, chunk: int, expected_s: float) -> None:
    assert InletConfig().stall_after_s(rate_hz, chunk) == pytest.approx(expected_s)


def test_inlet_config_validation_names_the_key() -> None:
    with pytest.raises(ConfigError, match=r"\[max_stall_s\].*0.0.*allowed: > 0"):
        InletConfig(max_stall_s=0.0)
    with pytest.raises(ConfigError, match=r"\[max_queue_chunks\]"):
        InletConfig(max_queue_chunks=0)

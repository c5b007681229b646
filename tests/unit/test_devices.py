"""Device configs: loading, conversions to mV/uS, stream matching, and clear errors."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pylsl
import pytest

from dsp.exceptions import ConfigError
from dsp.types import SignalKind
from streamer.devices import (
    StreamMeta,
    builtin_device_configs,
    device_config_by_name,
    load_device_config,
    parse_device_config,
    stream_meta,
)

ECG, EDA = SignalKind.ECG, SignalKind.EDA


def _config(signals: dict[str, Any], match: dict[str, Any] | None = None):
    data: dict[str, Any] = {"device": {"manufacturer": "m", "model": "x"}, "signals": signals}
    if match is not None:
        data["match"] = match
    return parse_device_config(data, source="dev.toml", default_name="dev")


def _meta(**fields: Any) -> StreamMeta:
    base: dict[str, Any] = {"name": "s", "type": "ECG", "source_id": "id", "channel_count": 1}
    base.update(fields)
    return StreamMeta(**base)


def test_builtin_configs_load_and_cover_the_required_devices() -> None:
    configs = builtin_device_configs()
    required = {
        "empatica_e4", "shimmer3_gsr", "shimmer3_ecg", "polar_h10", "emotibit",
        "bitalino_opensignals", "biosignalsplux_opensignals", "movesense_ecg", "biopac_lsl",
        "generic", "dyadsync_simulator",
    }  # fmt: skip
    assert required <= set(configs)
    assert configs["polar_h10"].spec(ECG).nominal_rate_hz == 130.0
    assert configs["empatica_e4"].spec(EDA).nominal_rate_hz == 4.0
    assert configs["emotibit"].spec(EDA).nominal_rate_hz == 15.0
    sim = configs["dyadsync_simulator"]
    assert sim.spec(ECG).counter_channel_index == 1 and sim.spec(EDA).channel_index == 0


@pytest.mark.parametrize(
    ("signal", "unit", "conversion", "raw", "expected"),
    [
        ("ecg", "mV", None, [1.5, -2.0], [1.5, -2.0]),
        ("ecg", "uV", None, [1500.0, -20.0], [1.5, -0.02]),
        ("ecg", "V", None, [0.0015], [1.5]),
        ("eda", "uS", None, [3.0], [3.0]),
        ("eda", "nS", None, [3000.0], [3.0]),
        ("eda", "kOhm", None, [200.0, 0.0, -5.0], [5.0, np.nan, np.nan]),
        ("eda", "Ohm", None, [250000.0], [4.0]),
        ("eda", "MOhm", None, [0.5], [2.0]),
        # BITalino EDA: uS = ADC / 2^10 * 3.3 / 0.132
        ("eda", "adc", {"adc_bits": 10, "vcc_v": 3.3, "gain": 0.132}, [512.0], [12.5]),
        # BITalino ECG: mV = (ADC / 2^10 - 0.5) * 3.3 / 1100 * 1000
        ("ecg", "adc", {"adc_bits": 10, "vcc_v": 3.3, "gain": 1100, "centre": 0.5,
                        "output_scale": 1000.0}, [768.0, 512.0], [0.75, 0.0]),
        ("ecg", "scaled", {"scale": 0.5, "offset": -1.0}, [4.0], [1.0]),
    ],
)  # fmt: skip
def test_unit_conversions(signal, unit, conversion, raw, expected) -> None:
    spec: dict[str, Any] = {"channel_index": 0, "unit": unit}
    if conversion is not None:
        spec["conversion"] = conversion
    config = _config({signal: spec})
    out = config.convert(SignalKind(signal), np.array(raw))
    np.testing.assert_allclose(out, expected, rtol=1e-12)


def test_matching_globs_alternatives_case_desc_rate_and_channels() -> None:
    config = _config(
        {"eda": {"stream_type": "GSR|EDA", "channel_index": 0, "channel_count": 1,
                 "unit": "uS", "nominal_rate_hz": 4}},
        match={"name": "*e4*", "desc": {"acquisition/manufacturer": "Empatica*"}},
    )  # fmt: skip
    good = _meta(
        name="My_E4_Gsr",
        type="gsr",
        nominal_srate_hz=4.0,
        desc={"acquisition/manufacturer": "Empatica Inc"},
        has_desc=True,
    )
    assert config.matches(good) and config.matches(good, signal=EDA)
    assert not config.matches(good, signal=ECG)
    assert config.signals_in(good) == (EDA,)
    wrongs: tuple[dict[str, Any], ...] = (
        {"name": "Polar"},
        {"type": "ECG"},
        {"channel_count": 2},
        {"nominal_srate_hz": 64.0},
        {"desc": {"acquisition/manufacturer": "Shimmer"}},
        {"desc": {}},
    )
    for wrong in wrongs:
        assert not config.matches(replace(good, **wrong)), wrong
    # A declared rate within 1 % still matches (bridges that declare a measured rate).
    assert config.matches(
        _meta(
            name="E4",
            type="EDA",
            nominal_srate_hz=4.03,
            desc={"acquisition/manufacturer": "Empatica"},
            has_desc=True,
        )
    )


def test_channel_by_label_and_unit_conflict() -> None:
    config = _config({"eda": {"channel_label": "GSR*Resistance*", "unit": "kOhm"}})
    meta = _meta(
        type="GSR", channel_count=3, has_desc=True,
        channel_labels=("Timestamp", "GSR_Skin_Resistance_CAL", "x"),
        channel_units=("ms", "kOhms", ""),
    )  # fmt: skip
    spec = config.spec(EDA)
    assert spec.find_channel(meta) == 1
    assert spec.unit_conflict(meta, 1) is None
    said_us = StreamMeta(
        name="s",
        type="GSR",
        source_id="i",
        channel_count=3,
        has_desc=True,
        channel_labels=meta.channel_labels,
        channel_units=("ms", "uS", ""),
    )
    assert "declares unit 'uS'" in (spec.unit_conflict(said_us, 1) or "")
    no_label = StreamMeta(
        name="s", type="GSR", source_id="i", channel_count=1, has_desc=True, channel_labels=("EDA",)
    )
    assert spec.find_channel(no_label) is None and not config.matches(no_label)


def test_stream_meta_reads_a_pylsl_info_with_desc() -> None:
    info = pylsl.StreamInfo("dev-1", "ECG", 2, 130.0, pylsl.cf_float32, "src-1")
    channels = info.desc().append_child("channels")
    for label, unit in (("ECG", "uV"), ("counter", "count")):
        channel = channels.append_child("channel")
        channel.append_child_value("label", label)
        channel.append_child_value("unit", unit)
    info.desc().append_child("acquisition").append_child_value("manufacturer", "Polar")
    meta = stream_meta(info)
    assert (meta.name, meta.type, meta.source_id) == ("dev-1", "ECG", "src-1")
    assert (meta.channel_count, meta.nominal_srate_hz, meta.channel_format) == (2, 130.0, "float32")
    assert meta.channel_labels == ("ECG", "counter") and meta.channel_units == ("uV", "count")
    assert meta.desc["acquisition/manufacturer"] == "Polar" and meta.has_desc
    assert stream_meta(meta) is meta


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "mydevice.toml"
    path.write_text(text, encoding="utf-8")
    return path


GOOD_HEAD = '[device]\nmanufacturer = "m"\nmodel = "x"\n'


@pytest.mark.parametrize(
    ("body", "key", "fragments"),
    [
        ('[signals.ecg]\nchannel_index = 0\nunit = "mv"\n', "signals.ecg.unit",
         ["'mv'", "allowed: mV, uV, V, adc, scaled"]),
        ('[signals.eda]\nchannel_index = 0\nunit = "mV"\n', "signals.eda.unit",
         ["'mV'", "allowed: uS, nS, Ohm, kOhm, MOhm, adc, scaled"]),
        ('[signals.eeg]\nchannel_index = 0\nunit = "uV"\n', "signals.eeg",
         ["'eeg'", "allowed: ecg, eda"]),
        ('[signals.ecg]\nunit = "mV"\n', "signals.ecg.channel_index",
         ["exactly one of channel_index", "channel_label"]),
        ('[signals.ecg]\nchannel_index = 2\nchannel_count = 2\nunit = "mV"\n',
         "signals.ecg.channel_index", ["value 2", "allowed: 0..1"]),
        ('[signals.ecg]\nchannel_index = 0\ncounter_channel_index = 0\nunit = "mV"\n',
         "signals.ecg.counter_channel_index", ["is the signal channel"]),
        ('[signals.ecg]\nchannel_index = 0\nunit = "mV"\nnominal_rate_hz = -130\n',
         "signals.ecg.nominal_rate_hz", ["-130", "allowed: (0.0, inf]"]),
        ('[signals.ecg]\nchannel_index = 0\nunit = "adc"\n', "signals.ecg.conversion.adc_bits",
         ["required"]),
        ('[signals.ecg]\nchannel_index = 0\nunit = "adc"\n[signals.ecg.conversion]\n'
         'adc_bits = 10\nvcc_v = 3.3\ngain = 0\n', "signals.ecg.conversion.gain",
         ["value 0", "allowed: (0.0, inf]"]),
        ('[signals.ecg]\nchannel_index = 0\nunit = "mV"\nchanel_count = 2\n',
         "signals.ecg.chanel_count", ["unknown key", "channel_count"]),
        ('[match]\nname = 3\n[signals.ecg]\nchannel_index = 0\nunit = "mV"\n', "match.name",
         ["non-empty string", "3"]),
        ("", "signals", ["at least one of [signals.ecg] or [signals.eda]"]),
        ('[signals.ecg]\nchannel_index = 0\nunit = "uV"\n[signals.ecg.conversion]\nscale = 2\n',
         "signals.ecg.conversion.scale", ["unknown key", "(none)"]),
        ('[match]\nnmae = "x"\n[signals.ecg]\nchannel_index = 0\nunit = "mV"\n', "match.nmae",
         ["unknown key", "name, type, source_id, desc"]),
    ],
)  # fmt: skip
def test_malformed_device_config_names_file_key_value_allowed(tmp_path, body, key, fragments):
    path = _write(tmp_path, GOOD_HEAD + body)
    with pytest.raises(ConfigError) as caught:
        load_device_config(path)
    message = str(caught.value)
    assert str(path) in message and f"[{key}]" in message
    for fragment in fragments:
        assert fragment in message
    assert caught.value.path == str(path) and caught.value.key == key


def test_not_toml_and_missing_file(tmp_path) -> None:
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_device_config(_write(tmp_path, "[device\n"))
    with pytest.raises(ConfigError, match="does not exist"):
        load_device_config(tmp_path / "nope.toml")


def test_device_by_name_or_relative_path(tmp_path) -> None:
    assert device_config_by_name("polar_h10").name == "polar_h10"
    _write(tmp_path, GOOD_HEAD + '[signals.ecg]\nchannel_index = 0\nunit = "uV"\n')
    assert device_config_by_name("mydevice.toml", base_dir=tmp_path).name == "mydevice"
    with pytest.raises(ConfigError) as caught:
        device_config_by_name("polar_h9")
    assert "'polar_h9'" in str(caught.value) and "polar_h10" in str(caught.value)


def test_device_without_the_signal_says_what_it_has() -> None:
    with pytest.raises(ConfigError, match="has no ecg signal; it provides: eda"):
        builtin_device_configs()["empatica_e4"].spec(ECG)

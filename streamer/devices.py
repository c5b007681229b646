"""Device configs: how to recognise a wearable's LSL stream and turn its samples into mV / uS.

One TOML file per wearable model lives in the package folder ``device_configs/`` (see
``docs/configuration.md`` for the full reference). A config says

* how to recognise the device's streams (``[match]``: glob patterns on the stream's name,
  type, source_id and ``desc`` fields; case-insensitive),
* for each signal it carries (``[signals.ecg]``, ``[signals.eda]``): which stream type,
  which channel (by index or by the ``desc`` channel label), the unit the device sends,
  the nominal rate, the typical chunk size and the sample-counter channel, if any.

Units are converted to dyadsync's canonical units (ECG mV, EDA uS) by a conversion derived
from the declared unit, so a config cannot state a unit and a contradicting factor:

* physical units (``mV``, ``uV``, ``V``; ``uS``, ``nS``) are scaled,
* resistances (``Ohm``, ``kOhm``, ``MOhm``) become conductance ``uS = 1e6 / Ohm``,
* ``adc`` is a raw converter count with the manufacturer's transfer function
  ``value = (raw / 2**adc_bits - centre) * vcc_v / gain * output_scale``
  (PLUX/BITalino datasheets; see the configs for the cited constants),
* ``scaled`` is a documented linear ``value = raw * scale + offset`` for anything else.

This module does not import pylsl: :func:`stream_meta` reads any object with an
``as_xml()`` method (a ``pylsl.StreamInfo``) into a plain :class:`StreamMeta`.
"""

from __future__ import annotations

import fnmatch
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from types import MappingProxyType
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from dsp.exceptions import ConfigError
from dsp.types import FloatArray, SignalKind
from streamer.tomlconfig import Section, read_toml

# Canonical unit per signal (dsp.types: ECG millivolts, EDA microsiemens).
CANONICAL_UNIT: Mapping[SignalKind, str] = {SignalKind.ECG: "mV", SignalKind.EDA: "uS"}

# Multiplicative factor from a declared physical unit to the canonical unit.
_SCALE_UNITS: Mapping[SignalKind, Mapping[str, float]] = {
    SignalKind.ECG: {"mV": 1.0, "uV": 1e-3, "V": 1e3},
    SignalKind.EDA: {"uS": 1.0, "nS": 1e-3},
}
# Ohms per declared resistance unit (EDA only): conductance uS = 1e6 / resistance_ohm.
_RESISTANCE_UNITS: Mapping[str, float] = {"Ohm": 1.0, "kOhm": 1e3, "MOhm": 1e6}
_SPECIAL_UNITS = ("adc", "scaled")

# Spellings devices write into desc/channels/channel/unit, normalised for the unit check.
_UNIT_ALIASES: Mapping[str, str] = {
    "mv": "mV", "millivolt": "mV", "millivolts": "mV",
    "uv": "uV", "µv": "uV", "μv": "uV", "microvolt": "uV", "microvolts": "uV",
    "v": "V", "volt": "V", "volts": "V",
    "us": "uS", "µs": "uS", "μs": "uS", "microsiemens": "uS", "micro siemens": "uS",
    "ns": "nS", "nanosiemens": "nS",
    "ohm": "Ohm", "ohms": "Ohm", "kohm": "kOhm", "kohms": "kOhm", "kω": "kOhm",
    "mohm": "MOhm", "megaohm": "MOhm", "megaohms": "MOhm",
}  # fmt: skip


def normalise_unit(text: str) -> str | None:
    """The canonical spelling of a unit string written by a device, or None if unknown."""
    return _UNIT_ALIASES.get(text.strip().lower())


class _HasXml(Protocol):
    def as_xml(self) -> str: ...


@dataclass(frozen=True, kw_only=True, slots=True)
class StreamMeta:
    """A plain, pylsl-free view of an LSL stream's metadata (``StreamInfo``).

    ``desc`` maps slash-separated paths of leaf elements (``acquisition/manufacturer``) to
    their text, first occurrence wins. ``has_desc`` is False for the short info a resolve
    returns (liblsl sends ``desc`` only to a connected inlet).
    """

    name: str
    type: str
    source_id: str
    uid: str = ""
    hostname: str = ""
    channel_count: int = 1
    nominal_srate_hz: float = 0.0
    channel_format: str = "float32"
    desc: Mapping[str, str] = field(default_factory=dict)
    channel_labels: tuple[str, ...] = ()
    channel_units: tuple[str, ...] = ()
    has_desc: bool = False
    # The stream's full header as liblsl gave it (the recorder copies it into the file).
    header_xml: str = field(default="", repr=False, compare=False)


def stream_meta(info: _HasXml | StreamMeta) -> StreamMeta:
    """Read a ``pylsl.StreamInfo`` (anything with ``as_xml()``) into a :class:`StreamMeta`."""
    if isinstance(info, StreamMeta):
        return info
    header_xml = info.as_xml()
    root = ET.fromstring(header_xml)

    def text(tag: str) -> str:
        return (root.findtext(tag) or "").strip()

    desc_el = root.find("desc")
    desc: dict[str, str] = {}
    labels: list[str] = []
    units: list[str] = []
    if desc_el is not None:
        _flatten(desc_el, "", desc)
        for channel in desc_el.findall("channels/channel"):
            labels.append((channel.findtext("label") or "").strip())
            units.append((channel.findtext("unit") or "").strip())
    try:
        channel_count = int(text("channel_count") or "1")
        srate = float(text("nominal_srate") or "0")
    except ValueError:
        channel_count, srate = 0, 0.0
    return StreamMeta(
        name=text("name"),
        type=text("type"),
        source_id=text("source_id"),
        uid=text("uid"),
        hostname=text("hostname"),
        channel_count=channel_count,
        nominal_srate_hz=srate,
        channel_format=text("channel_format"),
        desc=desc,
        channel_labels=tuple(labels),
        channel_units=tuple(units),
        has_desc=desc_el is not None and len(desc_el) > 0,
        header_xml=header_xml,
    )


def _flatten(element: ET.Element, prefix: str, out: dict[str, str]) -> None:
    for child in element:
        path = f"{prefix}{child.tag}"
        if len(child) == 0:
            out.setdefault(path, (child.text or "").strip())
        else:
            _flatten(child, f"{path}/", out)


def glob_match(pattern: str | None, value: str) -> bool:
    """Case-insensitive shell-style match; ``|`` separates alternatives (``GSR|EDA``); no
    pattern matches anything."""
    if pattern is None:
        return True
    value = value.lower()
    return any(fnmatch.fnmatchcase(value, alt.strip().lower()) for alt in pattern.split("|"))


@dataclass(frozen=True, kw_only=True, slots=True)
class StreamMatch:
    """Glob patterns a stream must satisfy (all given ones; omitted ones match anything).

    ``desc`` maps ``desc`` paths (``acquisition/manufacturer``) to glob patterns.
    """

    name: str | None = None
    type: str | None = None
    source_id: str | None = None
    desc: Mapping[str, str] = field(default_factory=dict)

    def matches(self, meta: StreamMeta) -> bool:
        if not (
            glob_match(self.name, meta.name)
            and glob_match(self.type, meta.type)
            and glob_match(self.source_id, meta.source_id)
        ):
            return False
        return all(
            path in meta.desc and glob_match(pattern, meta.desc[path])
            for path, pattern in self.desc.items()
        )


@dataclass(frozen=True, kw_only=True, slots=True)
class UnitConversion:
    """Turns raw channel values in ``unit`` into the canonical unit of ``signal``.

    Built from the declared unit by :func:`conversion_for`; see the module docstring for
    the formulas. Non-finite results (e.g. a zero resistance) come out as NaN so the inlet
    masks and counts them instead of passing an absurd number on.
    """

    unit: str
    scale: float = 1.0
    offset: float = 0.0
    reciprocal: bool = False

    def apply(self, raw: FloatArray) -> FloatArray:
        raw = np.asarray(raw, dtype=np.float64)
        if self.reciprocal:
            with np.errstate(divide="ignore", invalid="ignore"):
                out = self.scale / raw
            # A resistance must be positive; zero/negative means a disconnected electrode.
            out[~(raw > 0)] = np.nan
            return out
        return raw * self.scale + self.offset


@dataclass(frozen=True, kw_only=True, slots=True)
class SignalSpec:
    """Where one signal lives in a device's stream and how to read it.

    ``channel_index`` or ``channel_label`` (a glob on ``desc/channels/channel/label``)
    selects the channel; ``nominal_rate_hz`` None means "as the stream declares";
    ``chunk_samples`` is how many samples the device typically delivers at once (a
    Bluetooth packet), which bounds how quickly a stall can honestly be called.
    """

    signal: SignalKind
    unit: str
    conversion: UnitConversion
    stream_type: str | None = None
    stream_name: str | None = None
    channel_index: int | None = None
    channel_label: str | None = None
    channel_count: int | None = None
    nominal_rate_hz: float | None = None
    counter_channel_index: int | None = None
    chunk_samples: int = 1

    def matches(self, meta: StreamMeta) -> bool:
        """True if ``meta`` looks like this signal's stream (type, name, channel layout)."""
        if not glob_match(self.stream_type, meta.type):
            return False
        if not glob_match(self.stream_name, meta.name):
            return False
        if self.channel_count is not None and meta.channel_count != self.channel_count:
            return False
        declared = meta.nominal_srate_hz
        # 1 % tolerance: some bridges declare a measured, not the nominal, rate.
        if (
            self.nominal_rate_hz is not None
            and declared > 0
            and abs(declared - self.nominal_rate_hz) > 0.01 * self.nominal_rate_hz
        ):
            return False
        if self.channel_label is not None and meta.has_desc:
            return self.find_channel(meta) is not None
        return True

    def find_channel(self, meta: StreamMeta) -> int | None:
        """Index of the signal channel in ``meta``'s stream, or None if it has no such channel."""
        if self.channel_index is not None:
            return self.channel_index if self.channel_index < meta.channel_count else None
        for index, label in enumerate(meta.channel_labels):
            if glob_match(self.channel_label, label) and index < meta.channel_count:
                return index
        return None

    def rate_hz(self, meta: StreamMeta) -> float:
        """The nominal rate to judge the stream by (config first, else what it declares; 0 =
        irregular)."""
        return self.nominal_rate_hz if self.nominal_rate_hz is not None else meta.nominal_srate_hz

    def unit_conflict(self, meta: StreamMeta, channel: int) -> str | None:
        """A message if the stream declares a different physical unit for the channel.

        A config that says uV for a stream that says mV would show numbers 1000x off:
        never wrong silently. Unknown or absent unit strings are not judged.
        """
        if channel >= len(meta.channel_units) or self.unit in _SPECIAL_UNITS:
            return None
        declared = normalise_unit(meta.channel_units[channel])
        if declared is None or declared == self.unit:
            return None
        return f"stream declares unit {declared!r} for channel {channel}, config says {self.unit!r}"


@dataclass(frozen=True, kw_only=True, slots=True)
class DeviceConfig:
    """One wearable model: how to recognise its streams and read each signal."""

    name: str
    manufacturer: str
    model: str
    match: StreamMatch
    signals: Mapping[SignalKind, SignalSpec]
    notes: str = ""
    source: str = "<inline>"

    def spec(self, signal: SignalKind) -> SignalSpec:
        """The :class:`SignalSpec` for ``signal``; ``ConfigError`` if the device lacks it."""
        try:
            return self.signals[signal]
        except KeyError:
            have = ", ".join(s.value for s in self.signals)
            raise ConfigError(
                f"device {self.name!r} has no {signal.value} signal; it provides: {have}",
                path=self.source,
                key="signals",
            ) from None

    def matches(self, info: _HasXml | StreamMeta, *, signal: SignalKind | None = None) -> bool:
        """True if the stream is this device's (carrying ``signal``, or any of its signals)."""
        return bool(self.signals_in(info)) if signal is None else signal in self.signals_in(info)

    def signals_in(self, info: _HasXml | StreamMeta) -> tuple[SignalKind, ...]:
        """The signals of this device that the stream carries (empty: not this device)."""
        meta = stream_meta(info)
        if not self.match.matches(meta):
            return ()
        return tuple(kind for kind, spec in self.signals.items() if spec.matches(meta))

    def convert(self, signal: SignalKind, raw: FloatArray) -> FloatArray:
        """Raw channel values -> canonical unit (ECG mV, EDA uS)."""
        return self.spec(signal).conversion.apply(raw)


def conversion_for(
    section: Section, raw_conversion: Any, signal: SignalKind, unit: str
) -> UnitConversion:
    """Build the conversion implied by ``unit`` (reading ``[conversion]`` for adc/scaled;
    physical units imply their conversion, so the table is not allowed for them)."""
    scale_units = _SCALE_UNITS[signal]
    conv = section.table("conversion")
    if unit in scale_units:
        conversion = UnitConversion(unit=unit, scale=scale_units[unit])
    elif unit in _RESISTANCE_UNITS and signal is SignalKind.EDA:
        conversion = UnitConversion(unit=unit, scale=1e6 / _RESISTANCE_UNITS[unit], reciprocal=True)
    elif unit == "adc":
        bits = conv.integer("adc_bits", minimum=1)
        vcc_v = conv.number("vcc_v", minimum=0.0, exclusive_minimum=True)
        centre = conv.number("centre", default=0.0, minimum=0.0, maximum=1.0)
        gain = conv.number("gain", minimum=0.0, exclusive_minimum=True)
        output_scale = conv.number("output_scale", default=1.0)
        factor = vcc_v / gain * output_scale / 2.0**bits
        conversion = UnitConversion(
            unit=unit, scale=factor, offset=-centre * vcc_v / gain * output_scale
        )
    elif unit == "scaled":
        conversion = UnitConversion(
            unit=unit, scale=conv.number("scale"), offset=conv.number("offset", default=0.0)
        )
    else:
        resistance = _RESISTANCE_UNITS if signal is SignalKind.EDA else {}
        allowed = ", ".join([*scale_units, *resistance, *_SPECIAL_UNITS])
        raise section.error(
            "unit", f"value {unit!r} is not allowed for {signal.value}; allowed: {allowed}"
        )
    reject_unknown_keys(conv, raw_conversion, _CONVERSION_KEYS.get(unit, ()))
    return conversion


_SIGNAL_KEYS = (
    "stream_type", "stream_name", "channel_index", "channel_label", "channel_count", "unit",
    "conversion", "nominal_rate_hz", "counter_channel_index", "chunk_samples",
)  # fmt: skip
_CONVERSION_KEYS: Mapping[str, tuple[str, ...]] = {
    "adc": ("adc_bits", "vcc_v", "centre", "gain", "output_scale"),
    "scaled": ("scale", "offset"),
}


def reject_unknown_keys(section: Section, raw: Any, allowed: tuple[str, ...]) -> None:
    """Typos must not be ignored silently; the message lists every allowed key."""
    for key in raw if isinstance(raw, Mapping) else ():
        if key not in allowed:
            listed = ", ".join(allowed) if allowed else "(none)"
            raise section.error(key, f"unknown key; allowed keys here: {listed}")


def _optional_string(section: Section, raw: Mapping[str, Any], name: str) -> str | None:
    return section.string(name) if name in raw else None


def _optional_int(section: Section, raw: Mapping[str, Any], name: str, minimum: int) -> int | None:
    return section.integer(name, minimum=minimum) if name in raw else None


def _signal_spec(section: Section, raw: Mapping[str, Any], signal: SignalKind) -> SignalSpec:
    reject_unknown_keys(section, raw, _SIGNAL_KEYS)
    unit = section.string("unit")
    conversion = conversion_for(section, raw.get("conversion", {}), signal, unit)
    channel_index = _optional_int(section, raw, "channel_index", 0)
    channel_label = _optional_string(section, raw, "channel_label")
    if (channel_index is None) == (channel_label is None):
        raise section.error(
            "channel_index",
            "give exactly one of channel_index (0-based) or channel_label (glob on desc label)",
        )
    channel_count = _optional_int(section, raw, "channel_count", 1)
    counter = _optional_int(section, raw, "counter_channel_index", 0)
    for key, index in (("channel_index", channel_index), ("counter_channel_index", counter)):
        if index is not None and channel_count is not None and index >= channel_count:
            raise section.error(
                key, f"value {index} is out of range; allowed: 0..{channel_count - 1}"
            )
    if counter is not None and counter == channel_index:
        raise section.error("counter_channel_index", f"value {counter} is the signal channel")
    rate = (
        section.number("nominal_rate_hz", minimum=0.0, exclusive_minimum=True)
        if "nominal_rate_hz" in raw
        else None
    )
    spec = SignalSpec(
        signal=signal,
        unit=unit,
        conversion=conversion,
        stream_type=_optional_string(section, raw, "stream_type"),
        stream_name=_optional_string(section, raw, "stream_name"),
        channel_index=channel_index,
        channel_label=channel_label,
        channel_count=channel_count,
        nominal_rate_hz=rate,
        counter_channel_index=counter,
        chunk_samples=section.integer("chunk_samples", default=1, minimum=1),
    )
    return spec


def parse_device_config(data: Mapping[str, Any], *, source: str, default_name: str) -> DeviceConfig:
    """Validate parsed TOML into a :class:`DeviceConfig` (``ConfigError`` names file and key)."""
    top = Section(data, source=source, prefix="")
    reject_unknown_keys(top, data, ("device", "match", "signals"))
    device = top.table("device")
    device_raw = data.get("device", {})
    reject_unknown_keys(device, device_raw, ("name", "manufacturer", "model", "notes"))
    name = device.string("name") if "name" in device_raw else default_name
    manufacturer = device.string("manufacturer")
    model = device.string("model")
    notes = device.string("notes") if "notes" in device_raw else ""

    match_raw = data.get("match", {})
    match = top.table("match")
    reject_unknown_keys(match, match_raw, ("name", "type", "source_id", "desc"))
    desc_section = match.table("desc")
    desc_raw = match_raw.get("desc", {}) if isinstance(match_raw, Mapping) else {}
    desc = {path: desc_section.string(path) for path in desc_raw}
    stream_match = StreamMatch(
        name=_optional_string(match, match_raw, "name"),
        type=_optional_string(match, match_raw, "type"),
        source_id=_optional_string(match, match_raw, "source_id"),
        desc=MappingProxyType(desc),
    )

    signals_raw = data.get("signals", {})
    signals_section = top.table("signals")
    signals: dict[SignalKind, SignalSpec] = {}
    allowed_signals = [kind.value for kind in SignalKind]
    for key, raw in signals_raw.items() if isinstance(signals_raw, Mapping) else ():
        if key not in allowed_signals:
            raise signals_section.error(
                key, f"unknown signal {key!r}; allowed: {', '.join(allowed_signals)}"
            )
        kind = SignalKind(key)
        spec_section = signals_section.table(key)
        signals[kind] = _signal_spec(spec_section, raw, kind)
    if not signals:
        raise top.error("signals", "at least one of [signals.ecg] or [signals.eda] is required")
    return DeviceConfig(
        name=name,
        manufacturer=manufacturer,
        model=model,
        match=stream_match,
        signals=MappingProxyType(signals),
        notes=notes,
        source=source,
    )


def load_device_config(path: str | Path) -> DeviceConfig:
    """Load and validate one device config TOML file."""
    path = Path(path)
    return parse_device_config(read_toml(path), source=str(path), default_name=path.stem)


def builtin_device_configs() -> dict[str, DeviceConfig]:
    """Every config shipped in the ``device_configs`` package, keyed by device name."""
    configs: dict[str, DeviceConfig] = {}
    folder = resources.files("device_configs")
    for entry in sorted(folder.iterdir(), key=lambda item: item.name):
        if not entry.name.endswith(".toml"):
            continue
        with resources.as_file(entry) as path:
            config = load_device_config(path)
        if config.name in configs:
            raise ConfigError(
                f"device name {config.name!r} is also used by {configs[config.name].source}",
                path=config.source,
                key="device.name",
            )
        configs[config.name] = config
    return configs


def device_config_by_name(name_or_path: str, *, base_dir: Path | None = None) -> DeviceConfig:
    """A built-in config by name, or a config file (path ending in .toml, relative to
    ``base_dir``). ``ConfigError`` lists the built-in names when ``name_or_path`` is unknown."""
    if name_or_path.endswith(".toml"):
        path = Path(name_or_path)
        if base_dir is not None and not path.is_absolute():
            path = base_dir / path
        return load_device_config(path)
    configs = builtin_device_configs()
    if name_or_path not in configs:
        raise ConfigError(
            f"unknown device {name_or_path!r}; allowed: {', '.join(sorted(configs))} "
            "or a path to a .toml device config"
        )
    return configs[name_or_path]


def sample_counters(column: npt.ArrayLike) -> npt.NDArray[np.int64]:
    """A stream's sample-counter channel as integers; -1 where a sample carries none (NaN)."""
    values = np.asarray(column, dtype=np.float64)
    return np.where(np.isfinite(values), values, -1).astype(np.int64)

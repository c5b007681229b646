"""Session config: which device sits on which chair, which signals to use, synchrony settings.

A session TOML (reference in ``docs/configuration.md``)::

    [session]
    room = "room-2"
    signals = ["ecg", "eda"]

    [therapist.ecg]
    device = "polar_h10"          # built-in device config name, or a .toml path
    source_id = "polar-A1B2C3"    # exact LSL source_id (see `dyadsync streams`) ...
    [therapist.eda]
    device = "empatica_e4"
    name = "E4_Gsr_A01*"          # ... or a glob on the stream name
    # [client.ecg], [client.eda] likewise

    [synchrony]                   # dsp.synchrony.SynchronyConfig (+ grid_hz); all validated here
    window_s = 30.0
    lag_s = 5.0
    step_s = 1.0
    grid_hz = 4.0

Everything is validated before anything starts, so a bad file never starts half a session:
every :class:`ConfigError` names the file, the key, the bad value and what is allowed.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from dsp.exceptions import ConfigError
from dsp.synchrony import SynchronyConfig
from dsp.types import Role, SignalKind
from streamer.devices import (
    DeviceConfig,
    StreamMeta,
    builtin_device_configs,
    device_config_by_name,
    glob_match,
    reject_unknown_keys,
)
from streamer.tomlconfig import Section, read_toml

# Defaults for live synchrony: window 30 s, lag +-5 s, step 1 s are the typical live EDA/HR
# settings (Boker et al. 2002 windowed cross-correlation; rMEA defaults, Kleinbub &
# Ramseyer 2021); 4 Hz is the conventional HR/EDA resampling grid (Task Force of the ESC &
# NASPE 1996 recommends >= 4 Hz for resampled RR series).
DEFAULT_SYNCHRONY: Mapping[str, float] = MappingProxyType(
    {"window_s": 30.0, "lag_s": 5.0, "step_s": 1.0, "grid_hz": 4.0}
)
SIMULATOR_DEVICE = "dyadsync_simulator"
SIMULATOR_SOURCE_PREFIX = "dyadsync-sim"


def simulator_source_id(prefix: str, role: Role, signal: SignalKind) -> str:
    """The source_id the simulator (:mod:`streamer.simulate`) gives ``role``/``signal``."""
    return f"{prefix}-{role.value}-{signal.value}"


@dataclass(frozen=True, kw_only=True, slots=True)
class SensorSource:
    """Where one person's signal comes from: a device config plus how to find the stream.

    ``source_id`` (exact) wins over ``name_pattern`` (glob on the stream name); with
    neither, any stream of the device that declares this role in ``desc/dyadsync/role``
    (the simulator does) is accepted.
    """

    role: Role
    signal: SignalKind
    device: DeviceConfig
    source_id: str | None = None
    name_pattern: str | None = None

    def describe(self) -> str:
        """How the stream is searched for, for messages (no physiological data)."""
        if self.source_id is not None:
            how = f"source_id={self.source_id!r}"
        elif self.name_pattern is not None:
            how = f"name matching {self.name_pattern!r}"
        else:
            how = f"desc role {self.role.value!r}"
        return f"{self.role.value} {self.signal.value}: device {self.device.name!r}, {how}"

    def accepts(self, meta: StreamMeta) -> bool:
        """Is ``meta`` the stream searched for (before judging its shape with
        :func:`streamer.inlet.check_stream`)? By exact ``source_id`` if given; otherwise it
        must match the device config, ``name_pattern`` if given, and must not declare
        another role."""
        if self.source_id is not None:
            return meta.source_id == self.source_id
        if self.name_pattern is not None and not glob_match(self.name_pattern, meta.name):
            return False
        declared_role = meta.desc.get("dyadsync/role")
        if declared_role is not None and declared_role != self.role.value:
            return False
        return self.device.matches(meta, signal=self.signal)


@dataclass(frozen=True, kw_only=True, slots=True)
class SessionConfig:
    """A validated session: room, signals, one :class:`SensorSource` per role and signal."""

    room: str
    signals: tuple[SignalKind, ...]
    sensors: tuple[SensorSource, ...]
    synchrony: Mapping[str, Any] = field(default_factory=lambda: DEFAULT_SYNCHRONY)
    source: str = "<inline>"
    # [recording]: the folder sessions are recorded into (None: not recorded unless the
    # command line says ``--record``); a relative folder is relative to the session file.
    recording_dir: Path | None = None

    def sensor(self, role: Role, signal: SignalKind) -> SensorSource:
        for sensor in self.sensors:
            if sensor.role is role and sensor.signal is signal:
                return sensor
        raise KeyError(f"session has no {role.value} {signal.value} sensor")


def _synchrony(section: Section, raw: Mapping[str, Any]) -> Mapping[str, Any]:
    window_s = section.number(
        "window_s", default=DEFAULT_SYNCHRONY["window_s"], minimum=0.0, exclusive_minimum=True
    )
    lag_s = section.number("lag_s", default=DEFAULT_SYNCHRONY["lag_s"], minimum=0.0)
    if lag_s >= window_s:
        raise section.error(
            "lag_s", f"value {lag_s!r} must be smaller than window_s = {window_s!r}"
        )
    values: dict[str, Any] = {
        "window_s": window_s,
        "lag_s": lag_s,
        "step_s": section.number(
            "step_s", default=DEFAULT_SYNCHRONY["step_s"], minimum=0.0, exclusive_minimum=True
        ),
        "grid_hz": section.number(
            "grid_hz", default=DEFAULT_SYNCHRONY["grid_hz"], minimum=0.0, exclusive_minimum=True
        ),
    }
    # Further settings configure the synchrony engine (z_cap and the nested [synchrony.*]
    # tables); they are validated now, so a typo stops the session before it starts.
    if "z_cap" in raw:
        values["z_cap"] = section.number("z_cap", minimum=0.0, exclusive_minimum=True)
    allowed = {f.name for f in dataclasses.fields(SynchronyConfig)} | set(values)
    for key, value in raw.items():
        if key in values:
            continue
        if key not in allowed:
            raise section.error(
                key, f"unknown key; allowed keys here: {', '.join(sorted(allowed))}"
            )
        if not isinstance(value, Mapping):
            raise section.error(key, f"value {value!r} is not allowed; allowed: a table")
        values[key] = MappingProxyType(dict(value))
    frozen = MappingProxyType(values)
    try:
        synchrony_config(frozen)
    except ConfigError as exc:
        raise exc.within(path=section.source) from None
    return frozen


def synchrony_config(settings: Mapping[str, Any]) -> SynchronyConfig:
    """The engine configuration of a session's ``[synchrony]`` table (``grid_hz`` aside)."""
    engine: dict[str, Any] = {
        key: dict(value) if isinstance(value, Mapping) else value
        for key, value in settings.items()
        if key != "grid_hz"
    }
    return SynchronyConfig(**engine)


def _sensor(
    section: Section, raw: Mapping[str, Any], role: Role, signal: SignalKind, base_dir: Path | None
) -> SensorSource:
    reject_unknown_keys(section, raw, ("device", "source_id", "name"))
    device_ref = section.string("device")
    try:
        device = device_config_by_name(device_ref, base_dir=base_dir)
        device.spec(signal)
    except ConfigError as exc:
        raise section.error("device", str(exc)) from None
    source_id = section.string("source_id") if "source_id" in raw else None
    name_pattern = section.string("name") if "name" in raw else None
    return SensorSource(
        role=role, signal=signal, device=device, source_id=source_id, name_pattern=name_pattern
    )


def parse_session(
    data: Mapping[str, Any], *, source: str = "<inline>", base_dir: Path | None = None
) -> SessionConfig:
    """Validate parsed TOML into a :class:`SessionConfig`; device paths resolve against
    ``base_dir``."""
    top = Section(data, source=source, prefix="")
    reject_unknown_keys(
        top, data, ("session", *(role.value for role in Role), "synchrony", "recording")
    )
    head = top.table("session")
    head_raw = data.get("session", {})
    room = head.string("room", default="room")
    signal_names = (
        head_raw.get("signals", [kind.value for kind in SignalKind])
        if isinstance(head_raw, Mapping)
        else None
    )
    allowed = [kind.value for kind in SignalKind]
    if (
        not isinstance(signal_names, list)
        or not signal_names
        or any(name not in allowed for name in signal_names)
        or len(set(signal_names)) != len(signal_names)
    ):
        raise head.error(
            "signals",
            f"value {signal_names!r} is not allowed; allowed: a non-empty list of distinct "
            f"values from {', '.join(allowed)}",
        )
    reject_unknown_keys(head, head_raw, ("room", "signals"))
    signals = tuple(SignalKind(name) for name in signal_names)

    sensors: list[SensorSource] = []
    for role in Role:
        role_raw = data.get(role.value, {})
        role_section = top.table(role.value)
        reject_unknown_keys(role_section, role_raw, tuple(kind.value for kind in SignalKind))
        for signal in SignalKind:
            present = isinstance(role_raw, Mapping) and signal.value in role_raw
            if signal in signals and not present:
                raise role_section.error(
                    signal.value,
                    f"is required because session.signals includes {signal.value!r}: add "
                    f"[{role.value}.{signal.value}] with device and source_id or name",
                )
            if present and signal not in signals:
                raise role_section.error(
                    signal.value,
                    f"is configured but session.signals = {signal_names!r} does not include "
                    f"{signal.value!r}; add it there or remove this table",
                )
            if present:
                sensor_raw = role_raw[signal.value]
                sensors.append(
                    _sensor(role_section.table(signal.value), sensor_raw, role, signal, base_dir)
                )

    _reject_shared_source_ids(sensors, source)
    synchrony = _synchrony(top.table("synchrony"), data.get("synchrony", {}))
    return SessionConfig(
        room=room,
        signals=signals,
        sensors=tuple(sensors),
        synchrony=synchrony,
        source=source,
        recording_dir=_recording_dir(top.table("recording"), data.get("recording", {}), base_dir),
    )


def _recording_dir(section: Section, raw: Any, base_dir: Path | None) -> Path | None:
    """``[recording] directory = "..."`` (and ``enabled``, default true)."""
    if not raw:
        return None
    reject_unknown_keys(section, raw, ("directory", "enabled"))
    directory = Path(section.string("directory"))
    if not section.boolean("enabled", default=True):
        return None
    return directory if directory.is_absolute() or base_dir is None else base_dir / directory


def _reject_shared_source_ids(sensors: list[SensorSource], source: str) -> None:
    """One stream cannot sit on both chairs (it may carry two signals of one person)."""
    owner: dict[str, SensorSource] = {}
    for sensor in sensors:
        if sensor.source_id is None:
            continue
        first = owner.setdefault(sensor.source_id, sensor)
        if first.role is not sensor.role:
            raise ConfigError(
                f"value {sensor.source_id!r} is also the source_id of "
                f"{first.role.value}.{first.signal.value}; allowed: one stream per person",
                path=source,
                key=f"{sensor.role.value}.{sensor.signal.value}.source_id",
            )


def load_session(path: str | Path) -> SessionConfig:
    """Load and validate a session TOML file (device configs included)."""
    path = Path(path)
    return parse_session(read_toml(path), source=str(path), base_dir=path.parent)


def simulator_session(prefix: str = SIMULATOR_SOURCE_PREFIX) -> SessionConfig:
    """The session of ``dyadsync demo``: the simulator's four streams (source_id
    ``<prefix>-<role>-<signal>``) with default synchrony settings."""
    device = builtin_device_configs()[SIMULATOR_DEVICE]
    sensors = tuple(
        SensorSource(
            role=role,
            signal=signal,
            device=device,
            source_id=simulator_source_id(prefix, role, signal),
        )
        for role in Role
        for signal in SignalKind
    )
    return SessionConfig(
        room="demo",
        signals=tuple(SignalKind),
        sensors=sensors,
        synchrony=DEFAULT_SYNCHRONY,
        source="<simulator>",
    )

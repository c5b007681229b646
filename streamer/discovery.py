"""What ``dyadsync streams`` prints: the LSL streams visible now, the device config and
session role each matches, and what a session still lacks.

:func:`describe_streams` resolves and fetches metadata (blocking, for the CLI);
:func:`format_streams` is the pure formatting, unit-tested without a network.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import pylsl

from streamer.devices import DeviceConfig, StreamMeta, builtin_device_configs, stream_meta
from streamer.inlet import check_stream, full_stream_meta
from streamer.session import SensorSource, SessionConfig

_GENERIC = "generic"


def device_matches(meta: StreamMeta, configs: Mapping[str, DeviceConfig]) -> list[str]:
    """``config:signal`` for every config that recognises the stream; the catch-all
    ``generic`` config only when no specific one does."""
    found = [
        f"{name}:{signal.value}"
        for name, config in sorted(configs.items())
        for signal in config.signals_in(meta)
    ]
    specific = [entry for entry in found if not entry.startswith(f"{_GENERIC}:")]
    return specific or found


def _sensor_label(sensor: SensorSource) -> str:
    return f"{sensor.role.value} {sensor.signal.value}"


@dataclass(frozen=True, slots=True)
class StreamsReport:
    """What ``dyadsync streams`` prints, and whether the session (if any) can start."""

    text: str
    session_ready: bool


def format_streams(
    metas: Sequence[StreamMeta],
    session: SessionConfig | None,
    *,
    configs: Mapping[str, DeviceConfig] | None = None,
) -> str:
    """A table of ``metas`` and, with a session, which sensor each serves and what is
    missing, unusable or ambiguous. Contains no sample values."""
    return report_streams(metas, session, configs=configs).text


def report_streams(
    metas: Sequence[StreamMeta],
    session: SessionConfig | None,
    *,
    configs: Mapping[str, DeviceConfig] | None = None,
) -> StreamsReport:
    """:func:`format_streams` plus whether every sensor of ``session`` has a usable stream."""
    configs = builtin_device_configs() if configs is None else configs
    headers = ("name", "type", "source_id", "host", "ch", "rate_hz", "device config", "role")
    rows = []
    for meta in sorted(metas, key=lambda m: (m.name, m.source_id)):
        if session is not None:
            roles = [_sensor_label(s) for s in session.sensors if s.accepts(meta)]
        else:  # without a session only a stream that declares its role has one
            declared = meta.desc.get("dyadsync/role")
            roles = [f"{declared} (declared)"] if declared else []
        rows.append(
            (
                meta.name,
                meta.type,
                meta.source_id or "-",
                meta.hostname or "-",
                str(meta.channel_count),
                f"{meta.nominal_srate_hz:g}",
                ", ".join(device_matches(meta, configs)) or "(no config matches)",
                ", ".join(roles) or "-",
            )
        )
    lines = [f"{len(metas)} LSL stream(s) visible:"]
    if rows:
        widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
        for row in (headers, *rows):
            lines.append(
                "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True))
            )
    problems = 0
    if session is not None:
        lines.append("")
        session_lines, problems = _session_report(metas, session)
        lines.extend(session_lines)
    text = "\n".join(line.rstrip() for line in lines)
    return StreamsReport(text=text, session_ready=problems == 0)


def _session_report(metas: Sequence[StreamMeta], session: SessionConfig) -> tuple[list[str], int]:
    lines = [f"session {session.source} (room {session.room!r}):"]
    problems = 0
    for sensor in session.sensors:
        serving = [meta for meta in metas if sensor.accepts(meta)]
        label = _sensor_label(sensor)
        if not serving:
            problems += 1
            lines.append(f"  MISSING    {sensor.describe()}")
        elif len(serving) > 1:
            problems += 1
            lines.append(
                f"  AMBIGUOUS  {label}: {len(serving)} streams match "
                f"({', '.join(sorted(m.name for m in serving))}); give a source_id"
            )
        else:
            why = check_stream(serving[0], sensor.device, sensor.signal)
            if why is not None:
                problems += 1
                lines.append(f"  UNUSABLE   {label}: {why}")
            else:
                lines.append(f"  ok         {label}: {serving[0].name!r}")
    if problems:
        lines.append(
            "Start or fix the streams above (to try without hardware: `dyadsync simulate`)."
        )
    else:
        lines.append("All streams of the session are present.")
    return lines, problems


def describe_streams(session: SessionConfig | None, *, timeout_s: float = 2.0) -> StreamsReport:
    """Resolve the network for ``timeout_s`` and describe what is there (blocking)."""
    metas = []
    for info in pylsl.resolve_streams(wait_time=timeout_s):
        meta = full_stream_meta(info, timeout_s=timeout_s)
        metas.append(meta if meta is not None else stream_meta(info))
    return report_streams(metas, session)

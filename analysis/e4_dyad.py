"""Two Empatica E4 exports (therapist's and client's) as one dyadsync recording.

``analyze --e4`` analyses E4 sessions by first writing their EDA as a recording in
dyadsync's own XDF format (docs/recording.md: one raw stream per person, with the
``<dyadsync>`` desc naming role, signal and device config), then analysing that file like
any other. The file stays in the output folder, so the numbers can be reproduced from it
and it replays on the dashboard. Only EDA is used: the E4's BVP is a pulse wave, not an
ECG.

Both exports are stamped in Unix seconds by their own devices, which E4 connect sets from
the phone's clock; the two people are aligned on those stamps.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from dsp.types import Role, SignalKind
from streamer.devices import CANONICAL_UNIT
from streamer.e4 import read_e4_export
from streamer.xdf_writer import XdfWriter

__all__ = ["E4_DEVICE_CONFIG", "write_e4_recording"]

E4_DEVICE_CONFIG = "empatica_e4"


def write_e4_recording(therapist_dir: Path, client_dir: Path, path: Path) -> Path:
    """Write the two exports' EDA to a new recording at ``path`` (never overwritten).

    Raises :class:`~streamer.errors.RecordingError` for a folder that is not an E4 export
    (or a malformed file in it) and for a file that exists already.
    """
    exports = {
        Role.THERAPIST: read_e4_export(therapist_dir),
        Role.CLIENT: read_e4_export(client_dir),
    }
    end_s = 0.0
    with XdfWriter.open(path) as writer:
        for role, export in exports.items():
            eda = export.channels["EDA"]
            stream = writer.add_stream(
                name=f"{role.value}-eda",
                type="EDA",
                channel_count=2,
                nominal_srate=eda.rate_hz,
                channel_format="double64",
                source_id=f"e4-{role.value}-eda",
                dyadsync={
                    "kind": "raw",
                    "role": role.value,
                    "signal": SignalKind.EDA.value,
                    "device_config": E4_DEVICE_CONFIG,
                    "value_channel": "0",
                    "counter_channel": "1",
                    "unit": CANONICAL_UNIT[SignalKind.EDA],
                },
            )
            counters = np.arange(eda.values.shape[0], dtype=float)
            writer.push(stream, eda.timestamps_s, np.column_stack([eda.values, counters]))
            if eda.timestamps_s.size:
                end_s = max(end_s, float(eda.timestamps_s[-1]))
        writer.tick(end_s)
    return path

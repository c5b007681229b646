"""Dyad recordings for the offline tests, in dyadsync's own XDF format.

:func:`write_dyad_recording` writes any per-person ECG/EDA arrays as the four raw streams
a live session records (value + sample counter, with the ``<dyadsync>`` desc the player
reads). The signals come from generators we did not write or from real people:

- :func:`neurokit_person`: NeuroKit2's ECG and EDA simulators (breathing-modulated heart
  rate, noise, SCRs), seeded;
- :func:`real_person`: the NeuroKit2 example recordings of real people in
  ``../shared/data/biosignals`` (ECG + EDA at 100 Hz), cut to a length.
"""

from __future__ import annotations

import csv
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from dsp.types import Role, SignalKind
from streamer.xdf_writer import XdfWriter
from tests.paths import testdata

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True, slots=True)
class Person:
    """One person's raw signals: ECG (mV) and EDA (uS) with their sampling rates."""

    ecg_rate_hz: float
    ecg_mv: FloatArray
    eda_rate_hz: float
    eda_us: FloatArray


def neurokit_person(*, duration_s: float, seed: int, heart_rate_bpm: float = 70.0) -> Person:
    """NeuroKit2's simulators: ECG at 256 Hz (with noise) and EDA at 32 Hz with SCRs."""
    import neurokit2 as nk

    ecg = nk.ecg_simulate(
        duration=int(duration_s), sampling_rate=256, heart_rate=heart_rate_bpm,
        heart_rate_std=3.0, noise=0.02, random_state=seed,
    )  # fmt: skip
    eda = nk.eda_simulate(
        duration=int(duration_s), sampling_rate=32, scr_number=max(1, int(duration_s / 20)),
        noise=0.005, drift=-0.001, random_state=seed,
    )  # fmt: skip
    return Person(256.0, np.asarray(ecg, float), 32.0, np.asarray(eda, float) + 2.0)


def follower_dyad(*, duration_s: float, seed: int, delay_s: float = 2.0) -> dict[Role, Person]:
    """A truly coupled dyad: the client is the therapist's own NeuroKit2 signals
    ``delay_s`` later (the client follows), plus independent sensor noise."""
    source = neurokit_person(duration_s=duration_s + delay_s, seed=seed)
    rng = np.random.default_rng(seed)
    ecg_shift = int(delay_s * source.ecg_rate_hz)
    eda_shift = int(delay_s * source.eda_rate_hz)
    therapist = Person(
        source.ecg_rate_hz, source.ecg_mv[ecg_shift:], source.eda_rate_hz, source.eda_us[eda_shift:]
    )
    ecg, eda = source.ecg_mv[:-ecg_shift], source.eda_us[:-eda_shift]
    client = Person(
        source.ecg_rate_hz,
        ecg + rng.normal(0.0, 0.03, ecg.shape),
        source.eda_rate_hz,
        eda + rng.normal(0.0, 0.003, eda.shape),
    )
    return {Role.THERAPIST: therapist, Role.CLIENT: client}


def real_person(name: str, *, duration_s: float) -> Person:
    """A real person's ECG and EDA (100 Hz) from ``biosignals/<name>.csv``, cut to
    ``duration_s`` (at most the recording's length)."""
    with (testdata("biosignals") / f"{name}.csv").open() as file:
        rows = list(csv.DictReader(file))
    n = min(len(rows), int(duration_s * 100))
    ecg = np.array([float(row["ECG"]) for row in rows[:n]])
    eda = np.array([float(row["EDA"]) for row in rows[:n]])
    return Person(100.0, ecg, 100.0, eda)


def add_raw_stream(
    writer: XdfWriter,
    *,
    role: Role,
    signal: SignalKind,
    rate_hz: float,
    source_prefix: str = "test",
    device: str = "dyadsync_simulator",
) -> int:
    """A raw stream as our recorder declares it: signal value + sample counter channels."""
    return writer.add_stream(
        name=f"{role.value}-{signal.value}",
        type=signal.value.upper(),
        channel_count=2,
        nominal_srate=rate_hz,
        channel_format="double64",
        source_id=f"{source_prefix}-{role.value}-{signal.value}",
        dyadsync={
            "kind": "raw",
            "role": role.value,
            "signal": signal.value,
            "device_config": device,
            "value_channel": "0",
            "counter_channel": "1",
            "unit": "mV" if signal is SignalKind.ECG else "uS",
        },
    )


def write_dyad_recording(
    path: Path, people: Mapping[Role, Person], *, t0_s: float = 1000.0
) -> Path:
    """``people`` as dyadsync's four raw streams (device config: generic units)."""
    with XdfWriter.open(path) as writer:
        for role, person in people.items():
            for signal, rate, values in (
                (SignalKind.ECG, person.ecg_rate_hz, person.ecg_mv),
                (SignalKind.EDA, person.eda_rate_hz, person.eda_us),
            ):
                stream = add_raw_stream(writer, role=role, signal=signal, rate_hz=rate)
                t_s = t0_s + np.arange(values.shape[0]) / rate
                # One-second chunks, as a live recorder writes them.
                for start in range(0, values.shape[0], int(rate)):
                    stop = start + int(rate)
                    counters = np.arange(start, min(stop, values.shape[0]), dtype=float)
                    writer.push(
                        stream, t_s[start:stop], np.column_stack([values[start:stop], counters])
                    )
        writer.tick(t0_s + max(p.ecg_mv.shape[0] / p.ecg_rate_hz for p in people.values()))
    return path

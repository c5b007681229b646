"""The inlet adds the clock offset after dejittering, so a backward step of the offset's
running median would place samples before ones already handed on, which the DSP refuses.
Times must still increase strictly, within the offset step's size and in one segment."""

from __future__ import annotations

import numpy as np

from dsp.types import Role, SignalKind
from streamer.devices import StreamMeta, device_config_by_name
from streamer.inlet import SensorInlet, _Chunk, _Connected, _Offset

RATE_HZ = 256.0
CHUNK = 32
STEP_BACK_S = 0.05  # below the clock-reset threshold (0.1 s): no new segment


def test_a_backward_offset_step_keeps_times_increasing_in_one_segment() -> None:
    inlet = SensorInlet(
        role=Role.THERAPIST,
        signal=SignalKind.ECG,
        device=device_config_by_name("dyadsync_simulator"),
        source_id="offset-steps",
        clock=lambda: 0.0,
    )
    meta = StreamMeta(
        name="ecg", type="ECG", source_id="offset-steps", channel_count=2, nominal_srate_hz=RATE_HZ
    )
    events: list = []
    inlet._handle(_Connected(meta, 0.0), events)
    raw_s = 100.0 + np.arange(40 * CHUNK) / RATE_HZ
    for index in range(40):
        if index == 20:
            for _ in range(5):  # enough estimates to move the running median
                inlet._handle(_Offset(-STEP_BACK_S), events)
        stamps = raw_s[index * CHUNK : (index + 1) * CHUNK]
        # The simulator's second channel is its sample counter.
        data = np.column_stack([np.zeros(CHUNK), index * CHUNK + np.arange(CHUNK)])
        inlet._handle(_Chunk(float(stamps[-1]), stamps, data), events)
    times_s = np.concatenate([frame.timestamps_s for frame in inlet._pieces])
    assert {frame.segment for frame in inlet._pieces} == {0}
    assert np.all(np.diff(times_s) > 0)
    assert 0 < inlet.retimed_samples <= STEP_BACK_S * RATE_HZ + 1
    # Every sample stays within the step of its true (offset-corrected) time.
    assert np.all(np.abs(times_s - raw_s) <= STEP_BACK_S + 1e-9)
    assert not [e for e in events if e.kind.value == "clock_break"]

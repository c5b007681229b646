"""A polled :class:`~streamer.inlet.SensorInlet` in its own process, so a test can freeze
the whole receiving process (SIGSTOP) the way an overloaded machine does.

``python -m tests.integration.inlet_proc --source-id X`` prints ``READY`` once connected,
then one line per status event (``<kind>``) and, on stdin EOF, ``SAMPLES <n> <lost>``.
"""

from __future__ import annotations

import argparse
import select
import sys
import time

import numpy as np

from dsp.counters import SampleCounterCheck
from dsp.types import Role, SignalKind, StatusKind
from streamer.devices import parse_device_config
from streamer.inlet import SensorInlet

COUNTER_ECG = {
    "device": {"manufacturer": "test", "model": "counter-ecg"},
    "signals": {
        "ecg": {"channel_index": 0, "counter_channel_index": 1, "unit": "mV", "chunk_samples": 5}
    },
}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--source-id", required=True)
    args = parser.parse_args()
    device = parse_device_config(COUNTER_ECG, source="<test>", default_name="counter_ecg")
    inlet = SensorInlet(
        role=Role.CLIENT, signal=SignalKind.ECG, device=device, source_id=args.source_id
    )
    counters = SampleCounterCheck()
    try:
        while not select.select([sys.stdin], [], [], 0)[0]:
            frames, events = inlet.poll()
            for frame in frames:
                if frame.counters is not None:
                    counters.push(np.asarray(frame.counters))
            for event in events:
                print(
                    "READY" if event.kind is StatusKind.CONNECTED else event.kind.value, flush=True
                )
            time.sleep(0.02)
    finally:
        print(f"SAMPLES {counters.received} {counters.lost}", flush=True)
        inlet.close()


if __name__ == "__main__":
    main()

"""The skeleton path: the simulator's four streams found by `simulator_session` and read by
`open_session_inlets` with clocks corrected, units canonical and no sample lost."""

from __future__ import annotations

import numpy as np
import pylsl
import pytest

from dsp.types import SignalKind, StatusKind
from streamer.inlet import open_session_inlets
from streamer.scenario import Scenario
from streamer.session import simulator_session
from streamer.simulate import DyadSimulator
from tests.integration.lsl_outlet_proc import InletWatch, unique_source_id

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]


def test_simulator_streams_arrive_complete_and_in_canonical_units() -> None:
    prefix = unique_source_id("sim")
    with DyadSimulator(Scenario(duration_s=60.0), source_prefix=prefix):
        inlets = open_session_inlets(simulator_session(prefix), timeout_s=15.0)
        rates = {inlet.signal: inlet.rate_hz for inlet in inlets}
        assert rates == {SignalKind.ECG: 256.0, SignalKind.EDA: 32.0}
        watch = InletWatch(*inlets)
        try:
            watch.run(3.0)
        finally:
            for inlet in inlets:
                inlet.close()

    assert watch.max_poll_s < 0.05  # poll() never blocks the server's loop
    for inlet in inlets:
        mine = [f for f in watch.frames if (f.role, f.signal) == (inlet.role, inlet.signal)]
        kinds = [
            e.kind for _, e in watch.events if (e.role, e.signal) == (inlet.role, inlet.signal)
        ]
        assert kinds[0] is StatusKind.CONNECTED
        assert StatusKind.MISMATCH not in kinds and StatusKind.CLOCK_BREAK not in kinds
        counters = np.concatenate([f.counters for f in mine if f.counters is not None])
        values = np.concatenate([f.values for f in mine])
        times = np.concatenate([f.timestamps_s for f in mine])
        assert np.all(np.diff(counters) == 1), f"{inlet.role} {inlet.signal}: lost samples"
        assert np.all(np.diff(times) > 0) and np.all(np.isfinite(values))
        rate = 256.0 if inlet.signal is SignalKind.ECG else 32.0
        assert counters.shape[0] >= 2.0 * rate
        assert np.median(np.diff(times)) == pytest.approx(1 / rate, rel=0.01)
        # Corrected timestamps are on this machine's LSL clock, close to "now".
        assert abs(times[-1] - pylsl.local_clock()) < 2.0
        if inlet.signal is SignalKind.ECG:
            assert 0.5 < np.ptp(values) < 10.0  # mV-scale QRS, not uV or V
        else:
            assert 0.1 < np.median(values) < 60.0  # uS-scale skin conductance

"""Issue 5 acceptance: dropouts, reconnection, shape changes, duplicates, clock jumps, NaN
bursts — real pylsl outlets in separate processes, a real SensorInlet polled like the server.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from dsp.types import Role, SignalKind, StatusKind
from streamer.devices import DeviceConfig, parse_device_config
from streamer.errors import StreamNotFoundError
from streamer.inlet import SensorInlet, open_session_inlets
from streamer.session import parse_session
from tests.integration.lsl_outlet_proc import InletWatch, OutletProcess, unique_source_id

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

RATE_HZ = 100.0
CHUNK = 5


@pytest.fixture
def device() -> DeviceConfig:
    """A 2-channel mV ECG device with a sample counter in channel 1."""
    return parse_device_config(
        {
            "device": {"manufacturer": "test", "model": "counter-ecg"},
            "signals": {
                "ecg": {
                    "channel_index": 0,
                    "counter_channel_index": 1,
                    "unit": "mV",
                    "chunk_samples": CHUNK,
                }
            },
        },
        source="<test>",
        default_name="counter_ecg",
    )


@pytest.fixture
def outlets() -> Iterator[list[OutletProcess]]:
    started: list[OutletProcess] = []
    yield started
    for outlet in started:
        outlet.close()


@pytest.fixture
def inlets() -> Iterator[list[SensorInlet]]:
    opened: list[SensorInlet] = []
    yield opened
    for inlet in opened:
        inlet.close()


def _start(outlets: list[OutletProcess], source_id: str, **options: Any) -> OutletProcess:
    outlet = OutletProcess(source_id, **{"rate": RATE_HZ, "chunk": CHUNK, **options})
    outlets.append(outlet)
    return outlet


def _inlet(inlets: list[SensorInlet], device: DeviceConfig, source_id: str) -> SensorInlet:
    inlet = SensorInlet(role=Role.CLIENT, signal=SignalKind.ECG, device=device, source_id=source_id)
    inlets.append(inlet)
    return inlet


def _streaming(
    outlets: list[OutletProcess],
    inlets: list[SensorInlet],
    device: DeviceConfig,
    label: str,
    *,
    samples: int,
) -> tuple[str, OutletProcess, InletWatch]:
    """A fresh source_id, its outlet and a watched inlet, once ``samples`` have arrived."""
    sid = unique_source_id(label)
    outlet = _start(outlets, sid)
    watch = InletWatch(_inlet(inlets, device, sid))
    watch.until(lambda: watch.samples() > samples, timeout_s=15)
    return sid, outlet, watch


def _seconds_until(watch: InletWatch, kind: StatusKind, *, timeout_s: float) -> float:
    """Seconds from now (just after the test disturbed the stream) to the first ``kind``."""
    now = watch.until(lambda: True, timeout_s=1)
    found_at = watch.until(lambda: watch.first(kind) is not None, timeout_s=timeout_s)
    return found_at - now


def _counters(watch: InletWatch, segment: int | None = None) -> np.ndarray:
    parts = [f.counters for f in watch.frames if segment is None or f.segment == segment]
    return np.concatenate([p for p in parts if p is not None]) if parts else np.empty(0, np.int64)


def test_sigkill_and_restart_reconnects_by_itself(outlets, inlets, device) -> None:
    sid, outlet, watch = _streaming(outlets, inlets, device, "kill", samples=50)

    outlet.kill()
    assert _seconds_until(watch, StatusKind.STALLED, timeout_s=5) <= 2.0

    restart = _start(outlets, sid)
    restarted_at = watch.until(lambda: True, timeout_s=1)
    resumed_at = watch.until(lambda: watch.samples(segment=1) > 0, timeout_s=10)
    assert resumed_at - restarted_at <= 5.0
    recovered = watch.first(StatusKind.RECOVERED)
    assert recovered is not None and "gap" in recovered[1].detail
    # The restarted outlet counts from 0 again: the new data is in its own segment.
    before, after = _counters(watch, 0), _counters(watch, 1)
    assert np.all(np.diff(before) == 1) and np.all(np.diff(after) == 1)
    assert max(w.max_poll_s for w in [watch]) < 0.05
    restart.close()


def test_sigstop_sigcont_stalls_then_resumes_without_loss(outlets, inlets, device) -> None:
    _, outlet, watch = _streaming(outlets, inlets, device, "stop", samples=50)

    outlet.pause()
    assert _seconds_until(watch, StatusKind.STALLED, timeout_s=5) <= 2.0
    watch.run(1.0)
    outlet.resume()
    watch.until(lambda: watch.first(StatusKind.RECOVERED) is not None, timeout_s=5)
    watch.run(0.5)

    counters = _counters(watch)
    assert np.all(np.diff(counters) == 1), "a sample was lost or duplicated across the stall"
    assert {f.segment for f in watch.frames} == {0}
    times = np.concatenate([f.timestamps_s for f in watch.frames])
    assert np.all(np.diff(times) > 0)
    # The catch-up burst keeps its sampling times: ~1/rate apart, no compression.
    assert np.median(np.diff(times)) == pytest.approx(1 / RATE_HZ, rel=0.02)


@pytest.mark.parametrize(
    ("change", "reported"), [({"channels": 3}, "3 channels"), ({"rate": 250.0}, "250 Hz")]
)
def test_restart_with_other_shape_is_reported(outlets, inlets, device, change, reported) -> None:
    sid, outlet, watch = _streaming(outlets, inlets, device, "shape", samples=20)
    outlet.kill()
    _start(outlets, sid, **change)
    assert _seconds_until(watch, StatusKind.MISMATCH, timeout_s=10) <= 5.0
    mismatch = watch.first(StatusKind.MISMATCH)
    assert mismatch is not None and reported in mismatch[1].detail
    assert watch.samples(segment=1) == 0  # never connected to the wrongly shaped stream


def test_two_outlets_with_one_source_id_are_reported(outlets, inlets, device) -> None:
    sid, _, watch = _streaming(outlets, inlets, device, "dup", samples=20)
    _start(outlets, sid)
    assert _seconds_until(watch, StatusKind.MISMATCH, timeout_s=10) <= 5.0
    mismatch = watch.first(StatusKind.MISMATCH)
    assert mismatch is not None and "2 streams claim" in mismatch[1].detail
    # Still delivering from the first outlet meanwhile (no silent hang).
    count = watch.samples()
    watch.run(0.5)
    assert watch.samples() > count


@pytest.mark.parametrize("jump_s", [10.0, -1.0])
def test_timestamp_jump_starts_a_new_segment(outlets, inlets, device, jump_s) -> None:
    sid = unique_source_id("jump")
    jump_at = 300  # far enough in that the inlet is connected before the jump
    _start(outlets, sid, jump_at=jump_at, jump_by_s=jump_s)
    watch = InletWatch(_inlet(inlets, device, sid))
    watch.until(lambda: watch.samples(segment=1) > 30, timeout_s=20)

    breaks = [e for _, e in watch.events if e.kind is StatusKind.CLOCK_BREAK]
    assert len(breaks) == 1
    before, after = _counters(watch, 0), _counters(watch, 1)
    assert before.max() == jump_at - 1 and after.min() == jump_at
    for segment in (0, 1):
        times = np.concatenate([f.timestamps_s for f in watch.frames if f.segment == segment])
        assert np.all(np.diff(times) > 0)
    last_before = max(f.timestamps_s[-1] for f in watch.frames if f.segment == 0)
    first_after = min(f.timestamps_s[0] for f in watch.frames if f.segment == 1)
    assert first_after - last_before == pytest.approx(jump_s + 1 / RATE_HZ, abs=0.05)


def test_nan_values_are_masked_and_untimed_samples_dropped(outlets, inlets, device) -> None:
    sid = unique_source_id("nan")
    _start(outlets, sid, nan_at=300, nan_count=25, nan_time_at=350, nan_time_count=5)
    inlet = _inlet(inlets, device, sid)
    watch = InletWatch(inlet)
    watch.until(lambda: bool(_counters(watch).size) and _counters(watch).max() > 450, 20)
    watch.run(1.1)  # bad-sample reports are rate limited to one per second

    counters = _counters(watch)
    values = np.concatenate([f.values for f in watch.frames])
    times = np.concatenate([f.timestamps_s for f in watch.frames])
    in_burst = (counters >= 300) & (counters < 325)
    assert np.all(np.isnan(values[in_burst]))
    assert np.all(np.isfinite(values[~in_burst]))
    # Samples 350..354 had NaN timestamps: dropped, the rest timed and in order.
    assert not np.any((counters >= 350) & (counters < 355))
    assert np.all(np.isfinite(times)) and np.all(np.diff(times) > 0)
    assert {f.segment for f in watch.frames} == {0}
    assert inlet.bad_samples == 30
    # The first bad sample is reported at once, later ones aggregated (at most 1 event/s).
    reported = [e.detail for _, e in watch.events if e.kind is StatusKind.BAD_SAMPLES]
    assert sum(int(detail.split()[0]) for detail in reported) == 30
    assert reported[-1].endswith("(30 in total)")


def test_missing_streams_are_named_with_how_to_start_the_simulator() -> None:
    sid = unique_source_id("absent")
    session = parse_session(
        {
            "session": {"signals": ["eda"]},
            "therapist": {"eda": {"device": "empatica_e4", "source_id": sid + "-t"}},
            "client": {"eda": {"device": "empatica_e4", "name": "E4_nobody_*"}},
        },
        source="absent.toml",
    )
    with pytest.raises(StreamNotFoundError) as caught:
        open_session_inlets(session, timeout_s=1.0)
    message = str(caught.value)
    assert "therapist eda" in message and sid + "-t" in message
    assert "client eda" in message and "E4_nobody_*" in message
    assert "dyadsync simulate" in message


def test_unusable_stream_is_explained_when_the_session_cannot_start(outlets) -> None:
    sid = unique_source_id("shape2")
    _start(outlets, sid, name="E4_Gsr", type="GSR", rate=4.0, chunk=1)  # 2 channels, E4 has 1
    session = parse_session(
        {
            "session": {"signals": ["eda"]},
            "therapist": {"eda": {"device": "empatica_e4", "source_id": sid}},
            "client": {"eda": {"device": "empatica_e4", "source_id": sid + "-c"}},
        },
        source="unusable.toml",
    )
    with pytest.raises(StreamNotFoundError) as caught:
        open_session_inlets(session, timeout_s=3.0)
    lines = str(caught.value).splitlines()
    therapist = next(line for line in lines if "therapist eda" in line)
    assert "found but is unusable: stream has 2 channels, expected 1" in therapist
    client = next(line for line in lines if "client eda" in line)
    assert "found but" not in client


def test_poll_after_a_long_caller_pause_is_bounded_and_loses_nothing(outlets, inlets, device):
    sid = unique_source_id("backlog")
    _start(outlets, sid, rate=1000.0, chunk=5)  # 200 packets per second
    inlet = _inlet(inlets, device, sid)
    watch = InletWatch(inlet)
    watch.until(lambda: watch.samples() > 100, timeout_s=15)
    time.sleep(3.0)  # the server's loop was busy: ~600 packets queue up
    started = time.perf_counter()
    frames, _ = inlet.poll()
    first_poll_s = time.perf_counter() - started
    watch.frames.extend(frames)
    watch.run(1.0)
    assert first_poll_s < 0.05
    counters = _counters(watch)
    assert np.all(np.diff(counters) == 1)
    assert counters.shape[0] > 3500  # all of the 3 s pause and the second after


def test_a_silent_sensor_is_still_reported_while_the_process_is_busy(
    outlets, inlets, device
) -> None:
    """The starvation guard must not hide a real dropout that happens during heavy (but
    not starving) load: numpy work releases the GIL, the puller keeps listening."""
    _, outlet, watch = _streaming(outlets, inlets, device, "busy-stop", samples=50)
    outlet.pause()
    paused_at = time.monotonic()
    rng = np.random.default_rng(0)
    while time.monotonic() - paused_at < 1.5:
        np.linalg.svd(rng.normal(size=(200, 200)))  # releases the GIL inside LAPACK
        watch.poll()
    found = watch.until(lambda: watch.first(StatusKind.STALLED) is not None, timeout_s=5)
    # The 2 s stall rule, plus the puller's wake-ups on a machine this loaded.
    assert found - paused_at <= 2.5
    outlet.resume()

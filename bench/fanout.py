"""Sample-to-screen latency through the service with 1, 10 and 50 websocket clients.

A simulated dyad is pushed into real LSL outlets (the demo scenario, 0.1 s chunks, as the
simulator does; this process records when each chunk was pushed). The service reads it
with its real inlets, pipeline, hub and websocket endpoint; N clients in a separate
process (so their work does not load the server's loop) record when each message arrives,
on the same LSL clock.

- **processing latency** of an update: arrival at a client minus the push of the chunk
  that produced it. That chunk is the last push before the update's earliest arrival at
  any client. This attribution is exact while processing takes less than the 0.1 s
  between pushes; the table says how many updates came later than 50 ms after their push
  (where it would begin to be ambiguous).
- **inherent delay**: that push minus the data time of the newest sample the update
  covers (``sync.t``): the analysis itself (the heart-rate detector must see the next beat,
  the grid step must complete), whatever the server does.

Baseline in the same run: the service as it was before it reacted to data (its sources'
wake-ups hidden, so it polls every 50 ms), with 50 clients.

    python bench/fanout.py [--seconds 40] [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import statistics
import sys
import time
import uuid
from bisect import bisect_right
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pylsl

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from dsp.types import Frame, Role, SignalKind, StatusEvent  # noqa: E402
from server.rooms import assemble_session  # noqa: E402
from server.service import FrameSource  # noqa: E402
from server.ws import RoomChannel, WebsocketConfig, WebsocketEndpoint  # noqa: E402
from streamer.inlet import close_inlets, open_session_inlets  # noqa: E402
from streamer.scenario import builtin_scenario_path, load_scenario  # noqa: E402
from streamer.session import simulator_session  # noqa: E402
from streamer.simulate import DyadSimulator  # noqa: E402
from tests.integration.fixed_rooms import FixedRooms  # noqa: E402


class _TimedSimulator(DyadSimulator):
    """The simulator, noting (LSL clock) when each round of chunks was pushed."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.pushes_s: list[float] = []

    def _publish_due(self, elapsed_s: float) -> bool:
        more = super()._publish_due(elapsed_s)
        self.pushes_s.append(pylsl.local_clock())
        return more


class _PollingOnly:
    """A source without its data wake-up: the service falls back to polling (baseline)."""

    def __init__(self, source: FrameSource) -> None:
        self._source = source
        self.role: Role = source.role
        self.signal: SignalKind = source.signal
        self.rate_hz: float = source.rate_hz

    def poll(self) -> tuple[list[Frame], list[StatusEvent]]:
        return self._source.poll()

    def close(self) -> None:
        self._source.close()


def _clients_main(url: str, clients: int, seconds: float) -> None:
    """Client process: ``clients`` connections; prints arrival times of sync messages."""
    from websockets.asyncio.client import connect

    async def one() -> list[tuple[float, float, str]]:
        got = []
        async with connect(url, max_size=2**22) as ws:
            end = time.monotonic() + seconds
            while (left := end - time.monotonic()) > 0:
                try:
                    raw = await asyncio.wait_for(ws.recv(), left)
                except TimeoutError:
                    break
                arrived = pylsl.local_clock()
                if '"type":"sync"' in raw:
                    message = json.loads(raw)
                    got.append((arrived, float(message["t"]), str(message["signal"])))
        return got

    async def main() -> None:
        results = await asyncio.gather(*(one() for _ in range(clients)))
        print(json.dumps(results))

    asyncio.run(main())


def _run(*, clients: int, seconds: float, polling: bool) -> dict[str, object]:
    prefix = f"bench-fanout-{uuid.uuid4().hex[:6]}"
    session = dataclasses.replace(
        simulator_session(prefix),
        synchrony={"window_s": 10.0, "lag_s": 2.0, "step_s": 1.0, "grid_hz": 4.0},
    )
    scenario = load_scenario(builtin_scenario_path())
    simulator = _TimedSimulator(scenario, source_prefix=prefix)
    with simulator:
        inlets = open_session_inlets(session, timeout_s=10.0)
        sources: Sequence[FrameSource] = (
            [_PollingOnly(inlet) for inlet in inlets] if polling else inlets
        )
        try:
            results = asyncio.run(_serve(session, sources, clients=clients, seconds=seconds))
        finally:
            close_inlets(inlets)
        pushes = list(simulator.pushes_s)
    return _latencies(results, pushes)


async def _serve(
    session: object, sources: Sequence[FrameSource], *, clients: int, seconds: float
) -> list[list[tuple[float, float, str]]]:
    parts = assemble_session(session, sources=sources)  # type: ignore[arg-type]
    channel = RoomChannel(hub=parts.hub, messages=parts.messages, hello=parts.service.hello)
    endpoint = WebsocketEndpoint(
        rooms=FixedRooms({"bench": channel}), config=WebsocketConfig(port=0)
    )
    await endpoint.start()
    try:
        process = await asyncio.create_subprocess_exec(
            sys.executable, __file__, "--clients-of", endpoint.url, "--clients", str(clients),
            "--seconds", str(seconds),
            stdout=asyncio.subprocess.PIPE, env={**os.environ, "PYTHONPATH": str(ROOT)},
        )  # fmt: skip
        serving = asyncio.create_task(parts.service.run(duration_s=seconds + 3.0))
        out, _ = await process.communicate()
        parts.service.request_stop()
        await serving
    finally:
        await endpoint.stop()
    return json.loads(out)


def _latencies(
    results: list[list[tuple[float, float, str]]], pushes_s: list[float]
) -> dict[str, object]:
    first: dict[tuple[float, str], float] = {}
    for client in results:
        for arrived, t, signal in client:
            key = (t, signal)
            first[key] = min(first.get(key, arrived), arrived)
    processing, inherent, late = [], [], 0
    for client in results:
        for arrived, t, signal in client:
            index = bisect_right(pushes_s, first[(t, signal)]) - 1
            if index < 0:
                continue
            push = pushes_s[index]
            processing.append(arrived - push)
            inherent.append(push - t)
            late += arrived - push > 0.05
    return {"processing_s": processing, "inherent_s": inherent, "late": late}


def _pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) * 1000.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=40.0)
    parser.add_argument("--quick", action="store_true", help="15 s per configuration")
    parser.add_argument("--clients", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--clients-of", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.clients_of is not None:
        _clients_main(args.clients_of, args.clients, args.seconds)
        return
    seconds = 15.0 if args.quick else args.seconds
    rows: list[tuple[str, dict[str, object]]] = []
    runs: list[tuple[str, Callable[[], dict[str, object]]]] = [
        (f"{n} clients", lambda n=n: _run(clients=n, seconds=seconds, polling=False))  # type: ignore[misc]
        for n in (1, 10, 50)
    ]
    runs.append(
        (
            "50 clients, 50 ms polling (before)",
            lambda: _run(clients=50, seconds=seconds, polling=True),
        )
    )
    for name, run in runs:
        rows.append((name, run()))
    print(f"sync updates, {seconds:g} s per row; load average {os.getloadavg()[0]:.2f} (2 cores)")
    head = f"{'processing p50':>14s} {'p95':>7s} {'p99':>7s}   {'inherent p50':>12s} {'p99':>7s}"
    print(f"{'':36s} {head}  late>50ms")
    for name, row in rows:
        p, i = row["processing_s"], row["inherent_s"]
        assert isinstance(p, list) and isinstance(i, list)
        print(
            f"{name:36s} {_pct(p, 50):11.1f} ms {_pct(p, 95):7.1f} {_pct(p, 99):7.1f}   "
            f"{_pct(i, 50):9.0f} ms {_pct(i, 99):7.0f}  {row['late']}/{len(p)}"
        )
    fifty = rows[2][1]["processing_s"]
    assert isinstance(fifty, list)
    verdict = "met" if _pct(fifty, 99) <= 20.0 else "NOT met"
    print(f"target processing p99 <= 20 ms with 50 clients: {verdict}")
    print(f"(median of all processing latencies: {statistics.median(fifty) * 1000:.1f} ms)")


if __name__ == "__main__":
    main()

"""Probe run inside a loopback-only namespace (see :mod:`tests.integration.netns`).

``python -m tests.integration.offline_probe --tries N [--no-source-id]`` starts
``dyadsync simulate`` as a separate process (as a user would), then opens the session's
four inlets ``N`` times, each with a 5 s deadline, and prints one JSON object: how many
opens found every stream and how long each took (the first one timed from the moment
the simulator started publishing).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from streamer.errors import StreamNotFoundError
from streamer.inlet import close_inlets, open_session_inlets
from streamer.session import SIMULATOR_DEVICE, SessionConfig, parse_session, simulator_session

DYADSYNC = str(Path(sys.executable).with_name("dyadsync"))
DEADLINE_S = 5.0


def _session(prefix: str, *, with_source_id: bool) -> SessionConfig:
    if with_source_id:
        return simulator_session(prefix)
    # The simulator's streams declare their role, so device + role is enough to find them.
    chair = {"ecg": {"device": SIMULATOR_DEVICE}, "eda": {"device": SIMULATOR_DEVICE}}
    return parse_session(
        {"session": {"room": "offline", "signals": ["ecg", "eda"]}, "therapist": chair,
         "client": chair},
        source="offline-probe.toml",
    )  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tries", type=int, default=20)
    parser.add_argument("--no-source-id", action="store_true")
    args = parser.parse_args()
    prefix = f"offline-probe-{os.getpid()}"
    simulator = subprocess.Popen(
        [DYADSYNC, "simulate", "--source-prefix", prefix, "--duration", "600"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    found, seconds, errors = 0, [], []
    try:
        assert simulator.stdout is not None
        simulator.stdout.readline()  # "Publishing 4 LSL streams ...": the outlets exist
        started = time.monotonic()
        session = _session(prefix, with_source_id=not args.no_source_id)
        for _ in range(args.tries):
            try:
                inlets = open_session_inlets(session, timeout_s=DEADLINE_S)
            except StreamNotFoundError as exc:
                errors.append(str(exc).splitlines()[0])
            else:
                found += 1
                close_inlets(inlets)
            seconds.append(time.monotonic() - started)
            started = time.monotonic()
    finally:
        simulator.terminate()
        simulator.wait(timeout=10)
    print(json.dumps({"tries": args.tries, "found": found, "seconds": seconds, "errors": errors}))
    return 0


if __name__ == "__main__":
    sys.exit(main())

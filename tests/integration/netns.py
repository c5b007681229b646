"""Run a command in a private network namespace that has only a loopback interface.

That is an offline therapy-room machine as liblsl sees it: no network card, and (unless
asked for) no multicast route, so liblsl's multicast discovery cannot work and only its
unicast fallback can. Needs root (``unshare -n``); CI runs as root.
"""

from __future__ import annotations

import shlex
import shutil
import subprocess
from collections.abc import Mapping, Sequence

import pytest

# liblsl sends its discovery queries to 224.0.0.0/4 (and 239.255.x.x); this route is what
# a machine with a network card has and a loopback-only one lacks.
_MULTICAST_ROUTE = "ip route add 224.0.0.0/4 dev lo"


def run_offline(
    argv: Sequence[str],
    *,
    multicast_route: bool,
    timeout_s: float,
    env: Mapping[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run ``argv`` in a fresh loopback-only namespace; stdout/stderr captured as text."""
    for tool in ("unshare", "ip"):
        if shutil.which(tool) is None:
            raise RuntimeError(
                f"{tool!r} is needed for the offline-network tests (util-linux, iproute2)"
            )
    setup = ["ip link set lo up"]
    if multicast_route:
        setup.append(_MULTICAST_ROUTE)
    script = " && ".join([*setup, "exec " + shlex.join(argv)])
    return subprocess.run(
        ["unshare", "-n", "bash", "-c", script],
        capture_output=True,
        text=True,
        timeout=timeout_s,
        env=None if env is None else dict(env),
        check=False,
    )


def has_multicast_route() -> bool:
    """Whether this machine can send to liblsl's multicast group (an offline loopback-only
    machine cannot)."""
    done = subprocess.run(
        ["ip", "route", "get", "239.255.172.215"], capture_output=True, text=True, check=False
    )
    return done.returncode == 0


# LabRecorderCLI resolves streams once, by multicast: without a multicast route it finds
# none, whatever the liblsl configuration (checked with the shipped lsl_api.cfg in the
# working folder and in LSLAPICFG). dyadsync itself records there (its own writer); only
# the comparison with LabRecorder cannot run on such a machine.
NEEDS_MULTICAST_FOR_LABRECORDER = pytest.mark.skipif(
    not has_multicast_route(),
    reason="LabRecorderCLI cannot discover LSL streams without a multicast route",
)

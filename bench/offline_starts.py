"""How reliably sessions start on a machine with no network: `demo` and `run`, 20 times each.

Runs the real command lines in private loopback-only network namespaces (``unshare -n``,
root only), once without and once with a multicast route on loopback (an offline
therapy-room machine, and one whose loopback carries liblsl's multicast discovery):

- ``dyadsync demo --duration 1`` started ``--tries`` times; timed from launch to the
  printed dashboard URL (the demo creates its streams itself, so this includes them);
- ``dyadsync run SESSION --duration 1`` against one ``dyadsync simulate`` process started
  first, ``--tries`` times with the shipped example session (streams found by
  ``source_id``) and ``--tries`` times with a session that names only device and role;
  timed from launch (the streams already exist) to the printed dashboard URL.

A start counts only if the URL was printed and the command exited 0. Baseline in the same
run: the time to launch ``dyadsync --version`` (Python start-up, no discovery), so the
discovery share of a start can be read off. Prints one table; ``--json`` the raw figures.

    sudo python bench/offline_starts.py [--tries 20]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.integration.netns import run_offline  # noqa: E402

DYADSYNC = str(Path(sys.executable).with_name("dyadsync"))
SERVE = ["--duration", "1", "--no-browser", "--ws-port", "0", "--dashboard-port", "0"]
ROLE_ONLY_SESSION = """\
[session]
room = "offline-bench"
signals = ["ecg", "eda"]
[therapist.ecg]
device = "dyadsync_simulator"
[therapist.eda]
device = "dyadsync_simulator"
[client.ecg]
device = "dyadsync_simulator"
[client.eda]
device = "dyadsync_simulator"
"""


def _timed_start(argv: list[str]) -> tuple[bool, float]:
    """Launch ``argv``; (printed a dashboard URL and exited 0, seconds to that URL)."""
    started = time.monotonic()
    process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    assert process.stdout is not None
    url_after_s: float | None = None
    for line in process.stdout:
        if line.startswith("Dashboard:") and url_after_s is None:
            url_after_s = time.monotonic() - started
    exited_ok = process.wait(timeout=60) == 0
    if url_after_s is None:
        return False, float("nan")
    return exited_ok, url_after_s


def _series(argv: list[str], tries: int) -> dict[str, object]:
    results = [_timed_start(argv) for _ in range(tries)]
    seconds = [s for ok, s in results if ok]
    return {"tries": tries, "started": len(seconds), "seconds": seconds}


def _inside(tries: int) -> dict[str, object]:
    """The measurements, run inside one namespace."""
    version = []
    for _ in range(5):
        started = time.monotonic()
        subprocess.run([DYADSYNC, "--version"], capture_output=True, check=True)
        version.append(time.monotonic() - started)
    out: dict[str, object] = {
        "version_s": version,
        "demo": _series([DYADSYNC, "demo", *SERVE], tries),
    }
    example = subprocess.run(
        [DYADSYNC, "run", "--example-session"], capture_output=True, text=True, check=True
    ).stdout.strip()
    simulator = subprocess.Popen(
        [DYADSYNC, "simulate", "--duration", "3600"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert simulator.stdout is not None
        simulator.stdout.readline()  # "Publishing 4 LSL streams ...": the outlets exist
        with tempfile.TemporaryDirectory() as folder:
            role_only = Path(folder) / "role-only.toml"
            role_only.write_text(ROLE_ONLY_SESSION)
            out["run_source_id"] = _series([DYADSYNC, "run", example, *SERVE], tries)
            out["run_role_only"] = _series([DYADSYNC, "run", str(role_only), *SERVE], tries)
    finally:
        simulator.terminate()
        simulator.wait(timeout=10)
    return out


def _summary(series: dict[str, object]) -> str:
    seconds = list(series["seconds"])  # type: ignore[call-overload]
    if not seconds:
        return f"{series['started']}/{series['tries']} started"
    return (
        f"{series['started']}/{series['tries']} started; URL after "
        f"median {statistics.median(seconds):.2f} s, max {max(seconds):.2f} s"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tries", type=int, default=20)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--inside", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.inside:
        print(json.dumps(_inside(args.tries)))
        return 0
    if os.geteuid() != 0:
        print("offline_starts: network namespaces need root", file=sys.stderr)
        return 2
    env = {
        **os.environ,
        "LSLAPICFG": str(ROOT / "streamer" / "lsl_api.cfg"),
        "PYTHONPATH": str(ROOT),
    }
    figures = {}
    for multicast in (False, True):
        done = run_offline(
            [sys.executable, __file__, "--inside", "--tries", str(args.tries)],
            multicast_route=multicast,
            timeout_s=60 * args.tries,
            env=env,
        )
        if done.returncode != 0:
            print(done.stderr[-3000:], file=sys.stderr)
            return 1
        figures["multicast" if multicast else "no-multicast"] = json.loads(
            done.stdout.strip().splitlines()[-1]
        )
    if args.json:
        print(json.dumps(figures, indent=2))
        return 0
    print(f"load average at end: {os.getloadavg()[0]:.2f} (1-minute; a shared machine)")
    for name, inside in figures.items():
        print(f"namespace: loopback only, {name} route")
        version_s = statistics.median(inside["version_s"])
        print(f"  baseline `dyadsync --version`: median {version_s:.2f} s")
        for key in ("demo", "run_source_id", "run_role_only"):
            print(f"  {key:14s} {_summary(inside[key])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

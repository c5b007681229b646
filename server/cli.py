"""The ``dyadsync`` command line.

Every subcommand turns a :class:`DyadsyncError` into one clear line on stderr and a
non-zero exit status (2 for configuration errors, 1 otherwise), never a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.metadata
import logging
import math
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from dsp.exceptions import ConfigError, DyadsyncError

if TYPE_CHECKING:
    from server.app import ServeOptions
    from streamer.scenario import Scenario

log = logging.getLogger("dyadsync")


def _seconds(text: str) -> float:
    """argparse type: a duration in seconds, finite and > 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"{text!r} must be a number of seconds > 0")
    return value


def _port(text: str) -> int:
    """argparse type: a TCP port, 0 meaning "pick a free one"."""
    if not text.isdigit() or not 0 <= int(text) <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number (0-65535; 0 = any free)")
    return int(text)


def _add_server_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1)")
    parser.add_argument(
        "--ws-port", type=_port, default=8765, help="websocket port (default 8765; 0 = any free)"
    )
    parser.add_argument(
        "--dashboard-port",
        type=_port,
        default=5006,
        help="dashboard port (default 5006; 0 = any free)",
    )
    parser.add_argument(
        "--token",
        default=os.environ.get("DYADSYNC_TOKEN"),
        help="access token, required when --host is not localhost (env DYADSYNC_TOKEN)",
    )
    parser.add_argument(
        "--allow-origin",
        action="append",
        default=[],
        metavar="ORIGIN",
        help="browser origin allowed to open the dashboard when exposed (repeatable)",
    )
    parser.add_argument(
        "--duration", type=_seconds, default=None, help="stop after this many seconds"
    )
    parser.add_argument(
        "--no-browser", action="store_true", help="do not open a browser; print the URL only"
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dyadsync",
        description="Live interpersonal physiological synchrony (ECG/EDA) over LSL.",
    )
    parser.add_argument(
        "--version", action="version", version=f"dyadsync {importlib.metadata.version('dyadsync')}"
    )
    # -v is accepted before or after the subcommand (``dyadsync demo -v``).
    verbosity = argparse.ArgumentParser(add_help=False)
    verbosity.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        default=argparse.SUPPRESS,  # do not reset a -v given before the subcommand
        help="log progress to stderr",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress to stderr")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    demo = commands.add_parser(
        "demo",
        parents=[verbosity],
        help="simulated dyad + pipeline + server + dashboard, no hardware needed",
    )
    demo.add_argument("--scenario", type=Path, default=None, help="scenario TOML (default: demo)")
    demo.add_argument(
        "--source-prefix",
        default=None,
        help="source_id prefix of the simulated streams (default: unique per run)",
    )
    _add_server_options(demo)

    simulate = commands.add_parser(
        "simulate", parents=[verbosity], help="publish a scripted dyad as LSL streams"
    )
    simulate.add_argument("--scenario", type=Path, default=None, help="scenario TOML")
    simulate.add_argument("--source-prefix", default="dyadsync-sim", help="source_id prefix")
    simulate.add_argument("--duration", type=_seconds, default=None, help="stop after N seconds")

    streams = commands.add_parser(
        "streams",
        parents=[verbosity],
        help="list visible LSL streams and the device config / role each matches",
    )
    streams.add_argument("--session", type=Path, default=None, help="session TOML to check")
    streams.add_argument(
        "--timeout", type=_seconds, default=2.0, help="resolve time in seconds (default 2)"
    )

    run = commands.add_parser(
        "run", parents=[verbosity], help="run a live session from a session TOML"
    )
    run.add_argument("session", type=Path, help="session TOML (see docs/configuration.md)")
    run.add_argument(
        "--wait",
        type=_seconds,
        default=10.0,
        help="seconds to wait for the session's streams (default 10)",
    )
    _add_server_options(run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # Must happen before pylsl loads liblsl (the subcommands import it lazily).
    os.environ.setdefault("LSLAPICFG", str(Path(__file__).parents[1] / "streamer" / "lsl_api.cfg"))
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        if args.command == "demo":
            return _demo(args)
        if args.command == "simulate":
            return _simulate(args)
        if args.command == "streams":
            return _streams(args)
        return _run(args)
    except ConfigError as exc:
        print(f"dyadsync: configuration error: {exc}", file=sys.stderr)
        return 2
    except DyadsyncError as exc:
        print(f"dyadsync: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("dyadsync: interrupted", file=sys.stderr)
        return 130


def _scenario(path: Path | None) -> Scenario:
    from streamer.scenario import builtin_scenario_path, load_scenario

    return load_scenario(path if path is not None else builtin_scenario_path())


def _simulate(args: argparse.Namespace) -> int:
    from streamer.simulate import DyadSimulator

    scenario = _scenario(args.scenario)
    stop_at = None if args.duration is None else time.monotonic() + args.duration
    with DyadSimulator(scenario, source_prefix=args.source_prefix) as simulator:
        print(
            f"Publishing 4 LSL streams with source_id prefix {args.source_prefix!r} "
            "(Ctrl-C to stop)",
            flush=True,
        )
        try:
            while stop_at is None or time.monotonic() < stop_at:
                time.sleep(0.2)
                if simulator.error is not None:
                    raise simulator.error
        except KeyboardInterrupt:
            pass
        sent = ", ".join(f"{name} {count}" for name, count in simulator.samples_sent.items())
        print(f"Samples sent: {sent}")
    return 0


def _streams(args: argparse.Namespace) -> int:
    from streamer.discovery import describe_streams
    from streamer.session import load_session

    session = load_session(args.session) if args.session is not None else None
    report = describe_streams(session, timeout_s=args.timeout)
    print(report.text)
    return 0 if report.session_ready else 1


def _run(args: argparse.Namespace) -> int:
    from server.app import serve_session
    from streamer.inlet import open_session_inlets
    from streamer.session import load_session

    session = load_session(args.session)
    options = _serve_options(args)
    inlets = open_session_inlets(session, timeout_s=args.wait)
    summary = asyncio.run(serve_session(session, sources=inlets, options=options))
    print(summary.format())
    return 0


def _demo(args: argparse.Namespace) -> int:
    from server.app import serve_session
    from streamer.inlet import open_session_inlets
    from streamer.session import simulator_session
    from streamer.simulate import DyadSimulator

    scenario = _scenario(args.scenario)
    options = _serve_options(args)
    prefix = args.source_prefix or f"dyadsync-demo-{os.getpid()}"
    session = simulator_session(prefix)
    with DyadSimulator(scenario, source_prefix=prefix) as simulator:
        inlets = open_session_inlets(session, timeout_s=10.0)
        summary = asyncio.run(serve_session(session, sources=inlets, options=options))
        if simulator.error is not None:
            raise simulator.error
    print(summary.format())
    return 0


def _serve_options(args: argparse.Namespace) -> ServeOptions:
    """Validated server options; fails before anything touches the network."""
    from server.app import ServeOptions
    from server.ws import WebsocketConfig

    return ServeOptions(
        websocket=WebsocketConfig(
            host=args.host,
            port=args.ws_port,
            token=args.token,
            allowed_origins=tuple(args.allow_origin),
        ),
        dashboard_port=args.dashboard_port,
        duration_s=args.duration,
        open_browser=not args.no_browser,
    )

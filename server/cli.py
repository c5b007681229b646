"""The ``dyadsync`` command line.

Every subcommand turns a :class:`DyadsyncError` into one clear line on stderr, never a
traceback, and ends with one of the exit statuses in :data:`EXIT_STATUSES` (also printed
by ``dyadsync --help``). ``run`` and ``demo`` check everything that was asked (files,
options, token and origin rules, both ports, which they bind) before they wait for LSL
streams, so a mistake is reported at once. SIGINT, SIGTERM and SIGHUP are a requested
stop: the command finishes in order, prints its summary and exits 0.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.metadata
import importlib.resources
import logging
import math
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from server.app import BoundPorts, ServeOptions
    from server.service import RunSummary
    from streamer.scenario import Scenario
    from streamer.session import SessionConfig

log = logging.getLogger("dyadsync")

# Same as server.app.STOP_SIGNALS (not imported from there: server.app loads pylsl, and
# `dyadsync --help` should not).
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)

EXIT_STATUSES = """\
exit status:
  0  finished: --duration elapsed, or stopped by SIGINT (Ctrl-C), SIGTERM or SIGHUP
     after printing its summary (`streams`: every stream of --session is there; a
     signal lets it finish its listing first)
  1  failed while running: a session's stream not found within --wait, a device or
     simulator error (`streams`: the --session is incomplete)
  2  what was asked cannot work: a bad option or file, a token or origin rule, a port
     in use (--ws-port, --dashboard-port; 0 picks a free one); reported before any
     stream discovery, nothing was started
"""


class StopRequested(BaseException):
    """A stop signal arrived outside a served session (which stops itself in order).

    A ``BaseException``, like :class:`KeyboardInterrupt`, so that no ``except
    Exception`` on the way swallows it.
    """

    def __init__(self, signum: int) -> None:
        self.signal = signal.Signals(signum)
        super().__init__(self.signal.name)


def _raise_stop(signum: int, _frame: FrameType | None) -> None:
    raise StopRequested(signum)


@contextlib.contextmanager
def _on_stop_signals(handler: Callable[[int, FrameType | None], Any]) -> Iterator[None]:
    """``handler`` for every stop signal while the block runs; the previous ones after."""
    previous = {sig: signal.signal(sig, handler) for sig in STOP_SIGNALS}
    try:
        yield
    finally:
        for sig, before in previous.items():
            signal.signal(sig, before)


def example_session_path() -> Path:
    """The session file matching `dyadsync simulate`'s streams (default source prefix)."""
    return Path(str(importlib.resources.files("streamer") / "sessions" / "simulator.toml"))


class _PrintExampleSession(argparse.Action):
    """``--example-session``: print the shipped simulator session's path and exit
    (like ``--version``, so the SESSION argument is not needed)."""

    def __init__(self, option_strings: Sequence[str], dest: str, **kwargs: Any) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, **kwargs)

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: Any,
        option_string: str | None = None,
    ) -> None:
        print(example_session_path())
        parser.exit(0)


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
        help="exact origin a browser on another machine opens the dashboard with: "
        "scheme://host:port, no path, e.g. http://192.168.1.20:5006 (repeatable; required "
        "with --host 0.0.0.0 or ::; browsers may then also use the websocket)",
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
        epilog=EXIT_STATUSES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
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
        "run",
        parents=[verbosity],
        help="run a live session from a session TOML",
        epilog=EXIT_STATUSES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    run.add_argument(
        "session", type=Path, nargs="?", help="session TOML (see docs/configuration.md)"
    )
    run.add_argument(
        "--example-session",
        action=_PrintExampleSession,
        help="print the path of the session file for `dyadsync simulate` and exit",
    )
    run.add_argument(
        "--wait",
        type=_seconds,
        default=10.0,
        help="seconds to wait for the session's streams (default 10)",
    )
    _add_server_options(run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    # First of all: a signal during the imports (seconds on a busy machine) is a
    # requested stop too, not a traceback.
    with _on_stop_signals(_raise_stop):
        try:
            return _main(argv)
        except StopRequested as stop:
            print(
                f"dyadsync: {stop.signal.name} received before it started; stopped", file=sys.stderr
            )
            return 0


def _main(argv: Sequence[str] | None) -> int:
    # Imported here, not at the top, so that main() has its signal handlers first (the
    # dsp package loads numpy and scipy).
    from dsp.exceptions import ConfigError, DyadsyncError, ServeError

    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "run" and args.session is None:
        parser.error("run: the SESSION argument is required (--example-session prints one)")
    # Must happen before pylsl loads liblsl (the subcommands import it lazily).
    os.environ.setdefault("LSLAPICFG", str(Path(__file__).parents[1] / "streamer" / "lsl_api.cfg"))
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    commands: dict[str, Callable[[argparse.Namespace], int]] = {
        "demo": _demo,
        "simulate": _simulate,
        "streams": _streams,
        "run": _run,
    }
    try:
        return commands[args.command](args)
    except ConfigError as exc:
        print(f"dyadsync: configuration error: {exc}", file=sys.stderr)
        return 2
    except ServeError as exc:
        # Only raised while binding, before anything started: a wrong option, like above.
        print(f"dyadsync: error: {exc}", file=sys.stderr)
        return 2
    except DyadsyncError as exc:
        print(f"dyadsync: error: {exc}", file=sys.stderr)
        return 1


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
        except (KeyboardInterrupt, StopRequested) as stop:
            print(f"dyadsync: {_signal_name(stop)} received, stopping", file=sys.stderr)
        sent = ", ".join(f"{name} {count}" for name, count in simulator.samples_sent.items())
        print(f"Samples sent: {sent}", flush=True)
    return 0


def _signal_name(stop: BaseException) -> str:
    return stop.signal.name if isinstance(stop, StopRequested) else "SIGINT"


def _streams(args: argparse.Namespace) -> int:
    from streamer.discovery import describe_streams
    from streamer.session import load_session

    session = load_session(args.session) if args.session is not None else None
    received: list[int] = []
    # The listing takes at most --timeout (plus metadata); a signal lets it finish, so
    # the user gets what was asked for rather than nothing.
    with _on_stop_signals(lambda signum, _frame: received.append(signum)):
        print(f"Looking for LSL streams ({args.timeout:g} s) ...", file=sys.stderr, flush=True)
        report = describe_streams(session, timeout_s=args.timeout)
    print(report.text, flush=True)
    if received:
        name = signal.Signals(received[0]).name
        print(f"dyadsync: {name} received, stopped after listing", file=sys.stderr)
    return 0 if report.session_ready else 1


def _run(args: argparse.Namespace) -> int:
    from server.app import bind_ports
    from streamer.session import load_session

    session = load_session(args.session)
    options = _serve_options(args)
    with bind_ports(options) as ports:
        summary = _discover_and_serve(session, options=options, ports=ports, wait_s=args.wait)
    print(summary.format(), flush=True)
    return 0


def _demo(args: argparse.Namespace) -> int:
    from server.app import bind_ports
    from streamer.session import simulator_session
    from streamer.simulate import DyadSimulator

    scenario = _scenario(args.scenario)
    options = _serve_options(args)
    prefix = args.source_prefix or f"dyadsync-demo-{os.getpid()}"
    session = simulator_session(prefix)
    with bind_ports(options) as ports, DyadSimulator(scenario, source_prefix=prefix) as simulator:
        summary = _discover_and_serve(session, options=options, ports=ports, wait_s=10.0)
        if simulator.error is not None:
            raise simulator.error
    print(summary.format(), flush=True)
    return 0


def _discover_and_serve(
    session: SessionConfig, *, options: ServeOptions, ports: BoundPorts, wait_s: float
) -> RunSummary:
    """Wait for the session's streams, then serve them on the ports already bound."""
    from server.app import serve_session
    from streamer.inlet import open_session_inlets

    # Bokeh takes seconds to import on a busy machine; doing it while discovery waits for
    # the streams brings the dashboard up that much sooner.
    threading.Thread(target=_import_dashboard, name="import-dashboard", daemon=True).start()
    count = len(session.sensors)
    print(
        f"Waiting up to {wait_s:g} s for the LSL streams of {count} sensors ...",
        file=sys.stderr,
        flush=True,
    )
    inlets = open_session_inlets(session, timeout_s=wait_s)
    return asyncio.run(serve_session(session, sources=inlets, options=options, ports=ports))


def _import_dashboard() -> None:
    # A failure here is reported where the dashboard is started (the import is repeated).
    with contextlib.suppress(Exception):
        importlib.import_module("dashboard.serve")


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

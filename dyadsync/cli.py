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

from server.signals import STOP_SIGNALS

if TYPE_CHECKING:
    from dyadsync.app import BoundPorts, ServeOptions
    from server.catalogue import RecordingOptions
    from server.mqtt_bridge import MqttConfig
    from server.service import RunSummary
    from streamer.player import Replay
    from streamer.scenario import Scenario
    from streamer.session import SessionConfig

log = logging.getLogger("dyadsync")


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


def _positive(text: str, *, what: str, rule: str) -> float:
    """argparse type body: a finite number > 0; errors say ``what`` was expected."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not {what}") from None
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"{text!r} must be {rule}")
    return value


def _speed(text: str) -> float:
    """argparse type: a replay speed, a number > 0 or ``max`` (as fast as possible)."""
    if text == "max":
        return math.inf
    return _positive(text, what="a speed (1, 2.5, ... or max)", rule="> 0 (or max)")


def _add_store_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--store",
        type=Path,
        default=None,
        help="session store file (default $DYADSYNC_STORE, else "
        "~/.local/share/dyadsync/sessions.sqlite3)",
    )


def _add_record_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--record",
        type=Path,
        default=None,
        metavar="PATH",
        help="record the session as XDF: a new file, or a directory for "
        "<room>_<UTC time>.xdf (never overwrites; the session TOML's [recording] "
        "directory is used when this is not given)",
    )
    _add_store_option(parser)


def _seconds(text: str) -> float:
    """argparse type: a duration in seconds, finite and > 0."""
    return _positive(text, what="a number of seconds", rule="a number of seconds > 0")


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
    tls = parser.add_argument_group("TLS (https:// and wss://; docs/operations.md)")
    tls.add_argument("--certfile", type=Path, default=None, help="PEM certificate (chain)")
    tls.add_argument("--keyfile", type=Path, default=None, help="PEM private key (unencrypted)")
    outputs = parser.add_argument_group("outputs besides the websocket")
    outputs.add_argument(
        "--lsl-out",
        action="store_true",
        help="publish HR, SCL, phasic EDA, synchrony and events as LSL streams "
        "(docs/lsl_outputs.md)",
    )
    outputs.add_argument(
        "--mqtt-host", default=None, help="publish to this MQTT broker (docs/mqtt.md)"
    )
    outputs.add_argument("--mqtt-port", type=_port, default=1883, help="default 1883")
    outputs.add_argument("--mqtt-qos", type=int, default=1, help="0, 1 (default) or 2")
    outputs.add_argument("--mqtt-username", default=None)
    outputs.add_argument(
        "--mqtt-password-file", type=Path, default=None, help="file whose first line is it"
    )
    outputs.add_argument(
        "--mqtt-tls-ca", type=Path, default=None, help="CA of the broker's certificate (TLS)"
    )
    outputs.add_argument(
        "--mqtt-tls-cert", type=Path, default=None, help="client certificate (with its key)"
    )
    outputs.add_argument("--mqtt-tls-key", type=Path, default=None, help="client key")
    outputs.add_argument("--mqtt-topic-prefix", default="dyadsync/v1", help="topic prefix")


# Offline commands, each defined by its own module (``add_parser``/``run``). Those load
# numpy and pyxdf when imported, so a module is imported only when its command is the one
# asked for; otherwise the command is listed by name and help only.
OFFLINE_COMMANDS = {
    "analyze": ("analysis.analyze_cli", "analyse a recording: CSV tables, summary, HTML report"),
    "export-bids": ("analysis.bids_cli", "write a recording as a BIDS dataset"),
    "cohort": ("analysis.cohort_cli", "analyse many sessions on Dask, with pseudo-dyads"),
}


def _requested_command(argv: Sequence[str]) -> str | None:
    """The subcommand named on the command line (the first word not an option)."""
    return next((word for word in argv if not word.startswith("-")), None)


def _add_offline_commands(
    commands: argparse._SubParsersAction,
    argv: Sequence[str],
    *,
    parents: Sequence[argparse.ArgumentParser],
) -> dict[str, Callable[[argparse.Namespace], int]]:
    """Register :data:`OFFLINE_COMMANDS`; the one asked for fully (its runner returned)."""
    runners: dict[str, Callable[[argparse.Namespace], int]] = {}
    asked = _requested_command(argv)
    for name, (module_name, summary) in OFFLINE_COMMANDS.items():
        if name == asked:
            module = importlib.import_module(module_name)
            module.add_parser(commands, parents=parents)
            runners[name] = module.run
        else:
            commands.add_parser(name, help=summary, parents=list(parents))
    return runners


def build_parser(
    argv: Sequence[str] = (),
) -> tuple[argparse.ArgumentParser, dict[str, Callable[[argparse.Namespace], int]]]:
    """The parser, and the runners of the offline command named in ``argv`` (if any)."""
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
    _add_record_options(demo)

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
        "sessions",
        type=Path,
        nargs="*",
        metavar="SESSION",
        help="session TOML (see docs/configuration.md); several: one room each, served "
        "together, each room starting when its sensors appear",
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
    _add_record_options(run)

    replay = commands.add_parser(
        "replay",
        parents=[verbosity],
        help="replay an XDF recording through the pipeline and dashboard (or as LSL)",
        epilog=EXIT_STATUSES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    replay.add_argument("file", type=Path, help="XDF file (dyadsync's, or LabRecorder's)")
    replay.add_argument(
        "--speed", type=_speed, default=1.0, help="1 (real time, default), N times, or max"
    )
    replay.add_argument(
        "--session",
        type=Path,
        default=None,
        help="session TOML mapping the file's streams to roles (needed for files other "
        "tools recorded; dyadsync's own files say it themselves)",
    )
    replay.add_argument(
        "--lsl",
        action="store_true",
        help="re-publish the recorded streams as LSL outlets instead of serving them",
    )
    replay.add_argument(
        "--name-prefix",
        default="",
        help="with --lsl: put this before every stream name (e.g. dyadsync-sim-)",
    )
    replay.add_argument(
        "--keep-open",
        action="store_true",
        help="keep the dashboard up after the end of the recording (until Ctrl-C)",
    )
    _add_server_options(replay)

    repair = commands.add_parser(
        "repair",
        parents=[verbosity],
        help="copy a damaged recording's readable part into a complete file",
    )
    repair.add_argument("file", type=Path, help="XDF file (never changed)")
    repair.add_argument(
        "--out", type=Path, default=None, help="output file (default FILE.repaired.xdf)"
    )

    sessions = commands.add_parser(
        "sessions", parents=[verbosity], help="list the recorded sessions in the session store"
    )
    sessions.add_argument("--json", action="store_true", help="print JSON instead of a table")
    sessions.add_argument(
        "--remove", metavar="ID", default=None, help="remove this session's row from the store"
    )
    sessions.add_argument(
        "--delete-file",
        action="store_true",
        help="with --remove: delete its recording file too",
    )
    _add_store_option(sessions)
    return parser, _add_offline_commands(commands, argv, parents=[verbosity])


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
    from dsp.exceptions import ConfigError, DyadsyncError
    from server.errors import ServeError

    words = list(sys.argv[1:] if argv is None else argv)
    parser, offline = build_parser(words)
    args = parser.parse_args(words)
    if args.command == "run" and not args.sessions:
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
        "replay": _replay,
        "repair": _repair,
        "sessions": _sessions,
        **offline,
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
    from dyadsync.app import bind_ports
    from streamer.session import load_session

    sessions = [load_session(path) for path in args.sessions]
    options = _serve_options(args)
    recordings = [_recording_options(args, session, rooms=len(sessions)) for session in sessions]
    with bind_ports(options) as ports:
        if len(sessions) == 1:
            summary = _discover_and_serve(
                sessions[0], options=options, ports=ports, wait_s=args.wait,
                recording=recordings[0],
            )  # fmt: skip
            print(summary.format(), flush=True)
            return 0
        return _serve_rooms(sessions, recordings, options=options, ports=ports)


def _serve_rooms(
    sessions: Sequence[SessionConfig],
    recordings: Sequence[RecordingOptions | None],
    *,
    options: ServeOptions,
    ports: BoundPorts,
) -> int:
    """Several rooms: each waits for its own sensors (a missing one holds up no other)."""
    from dyadsync.app import serve_rooms
    from server.rooms import RoomPlan

    threading.Thread(target=_import_dashboard, name="import-dashboard", daemon=True).start()
    plans = [
        RoomPlan(session=session, recording=recording)
        for session, recording in zip(sessions, recordings, strict=True)
    ]
    summaries = asyncio.run(serve_rooms(plans, options=options, ports=ports))
    for room, summary in summaries.items():
        print(f"== room {room}", flush=True)
        print(summaries.failures[room] if summary is None else summary.format(), flush=True)
    return 1 if summaries.failures else 0


def _demo(args: argparse.Namespace) -> int:
    from dyadsync.app import bind_ports
    from streamer.session import simulator_session
    from streamer.simulate import DyadSimulator

    scenario = _scenario(args.scenario)
    options = _serve_options(args)
    prefix = args.source_prefix or f"dyadsync-demo-{os.getpid()}"
    session = simulator_session(prefix)
    recording = _recording_options(args, session)
    with bind_ports(options) as ports, DyadSimulator(scenario, source_prefix=prefix) as simulator:
        summary = _discover_and_serve(
            session, options=options, ports=ports, wait_s=10.0, recording=recording
        )
        if simulator.error is not None:
            raise simulator.error
    print(summary.format(), flush=True)
    return 0


def _discover_and_serve(
    session: SessionConfig,
    *,
    options: ServeOptions,
    ports: BoundPorts,
    wait_s: float,
    recording: RecordingOptions | None,
) -> RunSummary:
    """Wait for the session's streams, then serve them on the ports already bound."""
    from dyadsync.app import serve_session
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
    return asyncio.run(
        serve_session(session, sources=inlets, options=options, ports=ports, recording=recording)
    )


def _recording_options(
    args: argparse.Namespace, session: SessionConfig, *, rooms: int = 1
) -> RecordingOptions | None:
    """``--record`` (else the session's ``[recording]`` directory), checked now: a path
    that cannot take a new recording is an error before anything starts. With several
    ``rooms`` ``--record`` must be a folder (each room writes its own file there)."""
    from dsp.exceptions import ConfigError
    from server.catalogue import RecordingOptions, check_recording

    target = args.record if args.record is not None else session.recording_dir
    if target is None:
        return None
    if rooms > 1 and args.record is not None and args.record.suffix.lower() == ".xdf":
        raise ConfigError(
            f"--record {args.record} names one file, but {rooms} rooms record: give a "
            "folder (each room writes its own file there)"
        )
    options = RecordingOptions(target=target, store=args.store)
    check_recording(options, session)
    return options


def _replay(args: argparse.Namespace) -> int:
    from streamer.player import open_replay
    from streamer.session import load_session

    session = load_session(args.session) if args.session is not None else None
    if args.lsl:
        replay = open_replay(args.file, session=session, speed=args.speed)
        return _replay_lsl(replay, name_prefix=args.name_prefix)
    from dyadsync.app import bind_ports

    options = _serve_options(args)
    with bind_ports(options) as ports:
        print(f"Reading {args.file} ...", file=sys.stderr, flush=True)
        replay = open_replay(args.file, session=session, speed=args.speed)
        summary = asyncio.run(_serve_replay(replay, options=options, ports=ports,
                                            keep_open=args.keep_open))  # fmt: skip
    print(summary.format(), flush=True)
    return 0


async def _serve_replay(
    replay: Replay, *, options: ServeOptions, ports: BoundPorts, keep_open: bool
) -> RunSummary:
    from dyadsync.app import serve_session
    from server.service import ServiceConfig

    # Max speed: no pause between loop steps (the replay bounds the work of each).
    config = ServiceConfig(poll_interval_s=0.0) if replay.clock.max_speed else None
    return await serve_session(
        replay.session,
        sources=replay.sources,
        options=options,
        ports=ports,
        mode="replay",
        clock=replay.now_s,
        until=None if keep_open else (lambda: replay.finished),
        service_config=config,
    )


def _replay_lsl(replay: Replay, *, name_prefix: str) -> int:
    from streamer.player import publish_replay

    stop = threading.Event()
    names = ", ".join(stream.key for stream in replay.streams)
    print(f"Publishing {len(replay.streams)} LSL streams ({names}); Ctrl-C to stop", flush=True)
    with _on_stop_signals(lambda _signum, _frame: stop.set()):
        pushed = publish_replay(replay, name_prefix=name_prefix, stop=stop)
    ended = "stopped" if stop.is_set() else "finished"
    print(f"Replay {ended}: {pushed} samples published", flush=True)
    return 0


def _repair(args: argparse.Namespace) -> int:
    from streamer.xdf_repair import repair_file

    report = repair_file(args.file, out=args.out)
    print(report.summary(), flush=True)
    return 0


def _sessions(args: argparse.Namespace) -> int:
    from server.store import SessionStore, format_sessions, sessions_json

    with SessionStore(args.store, create=False) as store:
        if args.remove is not None:
            removed = store.remove_session(args.remove, delete_file=args.delete_file)
            what = " and its recording file" if removed.file_deleted else ""
            print(f"Removed session {args.remove}{what}", flush=True)
            return 0
        rows = store.list_sessions()
    print(sessions_json(rows) if args.json else format_sessions(rows), flush=True)
    return 0


def _import_dashboard() -> None:
    # A failure here is reported where the dashboard is started (the import is repeated).
    with contextlib.suppress(Exception):
        importlib.import_module("dashboard.serve")


def _serve_options(args: argparse.Namespace) -> ServeOptions:
    """Validated server options; fails before anything touches the network."""
    from dsp.exceptions import ConfigError
    from dyadsync.app import ServeOptions
    from server.outputs import OutputOptions
    from server.tls import TlsConfig
    from server.ws import WebsocketConfig

    if (args.certfile is None) != (args.keyfile is None):
        raise ConfigError("--certfile and --keyfile go together (TLS needs both)")
    tls = None if args.certfile is None else TlsConfig(certfile=args.certfile, keyfile=args.keyfile)
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
        tls=tls,
        outputs=OutputOptions(mqtt=_mqtt_config(args), lsl=args.lsl_out),
    )


def _mqtt_config(args: argparse.Namespace) -> MqttConfig | None:
    from dsp.exceptions import ConfigError
    from server.mqtt_bridge import MqttConfig

    if args.mqtt_host is None:
        needs_host = {
            "--mqtt-username": args.mqtt_username,
            "--mqtt-password-file": args.mqtt_password_file,
            "--mqtt-tls-ca": args.mqtt_tls_ca,
            "--mqtt-tls-cert": args.mqtt_tls_cert,
            "--mqtt-tls-key": args.mqtt_tls_key,
        }
        given = [flag for flag, value in needs_host.items() if value]
        if given:
            raise ConfigError(f"{given[0]} needs --mqtt-host (the broker to publish to)")
        return None
    return MqttConfig(
        host=args.mqtt_host,
        port=args.mqtt_port,
        qos=args.mqtt_qos,
        username=args.mqtt_username,
        password_file=args.mqtt_password_file,
        tls_ca=args.mqtt_tls_ca,
        tls_cert=args.mqtt_tls_cert,
        tls_key=args.mqtt_tls_key,
        topic_prefix=args.mqtt_topic_prefix,
    )

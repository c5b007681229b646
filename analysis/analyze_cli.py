"""``dyadsync analyze``: one recorded session -> CSV tables, summary.json and report.html.

:func:`add_parser` adds the subcommand to the ``dyadsync`` parser; :func:`run` runs it.
What the output folder holds is documented in docs/analysis.md. The recording is replayed
through the live pipeline (:func:`analysis.session.analyze_recording`), so the numbers are
those a live session would have shown; ``--window-s``, ``--lag-s``, ``--step-s`` and
``--surrogates`` re-analyse it with other synchrony settings.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from analysis.reanalysis import add_reanalysis_options, synchrony_overrides
from dsp.exceptions import ConfigError

__all__ = ["E4_RECORDING_FILE", "REPORT_FILE", "SUMMARY_FILE", "add_parser", "run"]

SUMMARY_FILE = "summary.json"
REPORT_FILE = "report.html"
# Where --e4 writes the two exports as one recording (a fixed name: an export's folder
# name is often a person's name, which must not travel into the outputs).
E4_RECORDING_FILE = "e4_dyad.xdf"

DESCRIPTION = """\
Analyse a recorded session offline, by the same code as a live session: per-person
derived series, synchrony, episodes, markers, ratings and comments as CSV, a JSON summary
and a self-contained HTML report (opens with no network) in the --out folder.

FILE is a dyadsync recording, or another tool's XDF file with --session mapping its
streams to therapist and client. For Empatica E4 exports give --e4 THERAPIST_DIR
CLIENT_DIR instead of FILE: their EDA is written to OUT/e4_dyad.xdf and analysed.
"""
EPILOG = """\
exit status: 0 analysed; 1 the recording or session store cannot be read;
2 a bad option or setting (nothing analysed)
"""


def add_parser(
    commands: argparse._SubParsersAction, *, parents: Sequence[argparse.ArgumentParser] = ()
) -> None:
    """Add ``analyze`` to the ``dyadsync`` subcommands."""
    parser = commands.add_parser(
        "analyze",
        parents=list(parents),
        help="analyse a recording offline: CSV tables, summary.json, self-contained report",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("file", type=Path, nargs="?", help="XDF recording (omit with --e4)")
    parser.add_argument("--out", type=Path, required=True, help="output folder (created)")
    parser.add_argument(
        "--force", action="store_true", help="write into an existing non-empty --out folder"
    )
    parser.add_argument(
        "--session",
        type=Path,
        help="session TOML mapping the file's streams to roles (for other tools' XDF files)",
    )
    parser.add_argument(
        "--e4",
        nargs=2,
        type=Path,
        metavar=("THERAPIST_DIR", "CLIENT_DIR"),
        help="two Empatica E4 export folders (EDA only) instead of FILE",
    )
    parser.add_argument(
        "--store",
        type=Path,
        help="session store with this session's markers, ratings and comments "
        "(default: $DYADSYNC_STORE or ~/.local/share/dyadsync/sessions.sqlite3)",
    )
    add_reanalysis_options(parser)
    parser.add_argument(
        "--quiet", action="store_true", help="no progress bar and no summary on stdout"
    )


def run(args: argparse.Namespace) -> int:
    """Run ``analyze``; errors are DyadsyncErrors (the command line turns a
    :class:`ConfigError` into exit status 2, any other into 1, one line on stderr)."""
    return _analyze(args)


def _analyze(args: argparse.Namespace) -> int:
    from analysis.e4_dyad import write_e4_recording
    from analysis.report import write_report
    from analysis.session import analyze_recording
    from analysis.summary import session_summary, summary_lines
    from analysis.tables import find_annotations, write_tables
    from server.store import default_store_path
    from streamer.errors import RecordingError
    from streamer.session import load_session

    if (args.file is None) == (args.e4 is None):
        raise ConfigError("give either FILE or --e4 THERAPIST_DIR CLIENT_DIR", key="FILE")
    if args.file is not None and not args.file.is_file():
        raise RecordingError(f"{args.file}: no such recording file")
    if args.store is not None and not args.store.is_file():
        raise ConfigError(f"{args.store}: no such session store", key="--store")
    session = load_session(args.session) if args.session is not None else None
    _check_output_dir(args.out, force=args.force)
    with tempfile.TemporaryDirectory(prefix="dyadsync-analyze-") as scratch:
        recording = args.file
        if args.e4 is not None:
            therapist_dir, client_dir = args.e4
            recording = write_e4_recording(
                therapist_dir, client_dir, Path(scratch) / E4_RECORDING_FILE
            )
        with _progress(enabled=not args.quiet) as progress:
            analysis = analyze_recording(
                recording, session=session, synchrony=synchrony_overrides(args), progress=progress
            )
        summary = session_summary(analysis)
        annotations = find_annotations(
            args.store if args.store is not None else default_store_path(),
            recording,
            sha256=summary["session"]["file_sha256"],
        )
        # Only now, with the analysis done, is the folder created: a bad setting or an
        # unreadable file leaves nothing behind.
        args.out.mkdir(parents=True, exist_ok=True)
        if args.e4 is not None:
            shutil.move(recording, args.out / E4_RECORDING_FILE)
    written = write_tables(analysis, args.out, annotations=annotations)
    (args.out / SUMMARY_FILE).write_text(json.dumps(summary, indent=2, allow_nan=False) + "\n")
    report = write_report(analysis, summary, args.out / REPORT_FILE, annotations=annotations)
    if not args.quiet:
        print("\n".join(summary_lines(summary)))
        print(f"Wrote {len(written) + 2} files to {args.out} (open {report.name})")
    return 0


def _check_output_dir(path: Path, *, force: bool) -> None:
    if path.exists() and not path.is_dir():
        raise ConfigError(f"{path} exists and is not a folder", key="--out")
    if path.is_dir() and any(path.iterdir()) and not force:
        raise ConfigError(
            f"{path} is not empty; choose a new folder or add --force to write into it",
            key="--out",
        )


@contextmanager
def _progress(*, enabled: bool) -> Iterator[Callable[[float, float], None] | None]:
    """A tqdm bar of recording seconds on stderr, only when stderr is a terminal (a log
    file or a pipe gets no bar)."""
    if not (enabled and sys.stderr.isatty()):
        yield None
        return
    from tqdm import tqdm

    with tqdm(total=None, unit="s", unit_scale=True, desc="analysing", file=sys.stderr) as bar:

        def advance(done_s: float, total_s: float) -> None:
            if bar.total is None:
                bar.total = round(total_s)
            bar.update(max(0, round(done_s) - bar.n))

        yield advance

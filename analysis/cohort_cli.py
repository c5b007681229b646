"""``dyadsync cohort DIR_OR_STORE --out DIR``: many sessions on Dask with a pseudo-dyad
control (see :mod:`analysis.cohort` and docs/cohort.md)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from analysis.reanalysis import add_reanalysis_options, synchrony_overrides
from dsp.exceptions import ConfigError


def add_parser(
    commands: argparse._SubParsersAction, *, parents: Sequence[argparse.ArgumentParser] = ()
) -> None:
    """Add the ``cohort`` subcommand to the ``dyadsync`` command line."""
    from analysis.cohort import DEFAULT_PERMUTATIONS, DEFAULT_WORKERS

    parser = commands.add_parser(
        "cohort",
        parents=list(parents),
        help="analyse every session of a folder or session store on Dask, with a "
        "pseudo-dyad control",
        description="Analyse every recording of a folder (*.xdf) or of a session store "
        "(SQLite file) in parallel, write a cohort table and report, and compare the real "
        "dyads' synchrony with pseudo dyads (each therapist with the other sessions' "
        "clients).",
    )
    parser.add_argument(
        "source", type=Path, metavar="DIR_OR_STORE", help="folder of .xdf files, or a session store"
    )
    parser.add_argument("--out", type=Path, required=True, help="output folder")
    where = parser.add_mutually_exclusive_group()
    where.add_argument(
        "--scheduler",
        metavar="ADDRESS",
        default="local",
        help="Dask scheduler address, e.g. tcp://host:8786 (default: a local cluster, "
        "closed afterwards)",
    )
    where.add_argument(
        "--serial", action="store_true", help="analyse in this process, one session at a time"
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=DEFAULT_WORKERS,
        help=f"worker processes of the local cluster (default {DEFAULT_WORKERS})",
    )
    parser.add_argument(
        "--permutations",
        type=int,
        default=DEFAULT_PERMUTATIONS,
        help=f"label shuffles of the permutation test (default {DEFAULT_PERMUTATIONS})",
    )
    parser.add_argument(
        "--seed", type=int, default=0, help="seed of the permutation test (default 0)"
    )
    add_reanalysis_options(parser)
    parser.add_argument("--quiet", action="store_true", help="no progress bar, no summary")


def run(args: argparse.Namespace) -> int:
    """Run ``dyadsync cohort``; 0 when at least one session was analysed, else 1.
    Raises :class:`~dsp.exceptions.DyadsyncError` subclasses for bad options or sources."""
    from tqdm import tqdm

    from analysis.cohort import analyze_cohort, cohort_sessions, write_cohort

    if args.workers < 1:
        raise ConfigError(f"--workers must be >= 1, got {args.workers}")
    synchrony = synchrony_overrides(args)
    sessions = cohort_sessions(args.source)
    quiet = args.quiet or not sys.stderr.isatty()
    with tqdm(total=len(sessions), unit="session", disable=quiet, file=sys.stderr) as bar:
        cohort = analyze_cohort(
            sessions,
            scheduler="serial" if args.serial else args.scheduler,
            n_workers=args.workers,
            synchrony=synchrony or None,
            n_permutations=args.permutations,
            seed=args.seed,
            on_result=lambda _: bar.update(),
        )
    paths = write_cohort(cohort, args.out)
    failed = [r for r in cohort.results if not r.ok]
    for result in failed:
        print(f"dyadsync: {result.session.session_id} not analysed: {result.error}",
              file=sys.stderr)  # fmt: skip
    if not args.quiet:
        analysed = len(cohort.results) - len(failed)
        print(f"{analysed} of {len(cohort.results)} sessions analysed", flush=True)
        control = cohort.control
        if control.unavailable:
            print(f"pseudo-dyad control not computed: {control.unavailable}")
        for signal in control.signals:
            c = signal.comparison
            print(
                f"{signal.signal.value}: real {c.mean_real:.3f} (n={c.n_real}) vs pseudo "
                f"{c.mean_pseudo:.3f} (n={c.n_pseudo}) mean peak z, Cohen's d "
                f"{c.cohens_d:.2f}, p = {c.p_value:.4f} ({c.n_permutations} permutations)"
            )
        print("wrote " + ", ".join(str(p) for p in paths), flush=True)
    return 0 if len(failed) < len(cohort.results) else 1

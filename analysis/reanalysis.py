"""The re-analysis options shared by the offline commands (``analyze``, ``cohort``):
command-line flags that replace settings of a recording's ``[synchrony]`` table."""

from __future__ import annotations

import argparse
from typing import Any


def add_reanalysis_options(parser: argparse.ArgumentParser) -> None:
    """``--window-s``, ``--lag-s``, ``--step-s`` and ``--surrogates``."""
    settings = parser.add_argument_group(
        "re-analysis", "replace the recording's synchrony settings (default: as recorded)"
    )
    settings.add_argument("--window-s", type=float, help="synchrony window (s)")
    settings.add_argument("--lag-s", type=float, help="maximum lag either way (s)")
    settings.add_argument("--step-s", type=float, help="update step (s)")
    settings.add_argument(
        "--surrogates", type=int, metavar="N", help="surrogate pairs in the chance null"
    )


def synchrony_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The ``[synchrony]`` settings the options replace (validated by the analysis)."""
    overrides: dict[str, Any] = {
        key: value
        for key, value in (("window_s", args.window_s), ("lag_s", args.lag_s),
                           ("step_s", args.step_s))
        if value is not None
    }  # fmt: skip
    if args.surrogates is not None:
        overrides["surrogates"] = {"n_surrogates": args.surrogates}
    return overrides

"""Many recorded sessions analysed at once on Dask, with a pseudo-dyad control.

:func:`analyze_cohort` analyses every session of a folder (``*.xdf``) or of a session store
(:mod:`server.store`), one Dask task per session: the task gets a file path, replays it
through the live code path (:func:`analysis.session.analyze_recording`) and returns a small
:class:`SessionResult`: the session summary (:func:`analysis.summary.session_summary`) and
the synchronised signals of both people on the analysis grid. A file that cannot be analysed
becomes a result with its error; the other sessions go on.

The **pseudo-dyad control** (:func:`pseudo_dyad_control`) asks whether the real dyads
synchronise more than people who never met. Between-dyad shuffling (recommended by rMEA's
author, Kleinbub; wcc's ``wccSurrogateDyads``): every therapist is paired with the client of
every *other* session, roles kept, the two series aligned from each session's start and cut
to the shorter. Real and pseudo dyads get the same statistic, computed by the dsp
windowed cross-correlation (:func:`dsp.xcorr.windowed_cross_correlation`) with the
sessions' own window, lag, step and z cap: the mean over complete windows of the peak
Fisher z over lags (the live engine's ``peak_z``; a window touching an invalid sample has no
estimate, as live). Reported per signal: means, Cohen's d and a one-sided permutation p.

Results depend only on the inputs and the seed, never on the scheduler: tasks (the
sessions, then the pseudo-dyad pairs, one task per therapist) return data and have no side
effects, results are put back in input order, and the permutation test runs in the calling
process. ``scheduler="serial"``, a local cluster and a remote one give identical output.
"""

from __future__ import annotations

import csv
import json
import logging
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, TypeVar

import numpy as np

from dsp.exceptions import ConfigError, DyadsyncError
from dsp.pipeline import Derived
from dsp.types import FloatArray, Role
from dsp.xcorr import windowed_cross_correlation

R = TypeVar("R")  # what a task returns

__all__ = [
    "DEFAULT_PERMUTATIONS",
    "Chair",
    "Cohort",
    "CohortSession",
    "Comparison",
    "ControlSettings",
    "PairResult",
    "PseudoDyadControl",
    "SessionResult",
    "SignalControl",
    "TaskRunner",
    "analyze_cohort",
    "analyze_session",
    "cohort_sessions",
    "compare_real_pseudo",
    "dyad_synchrony",
    "pseudo_dyad_control",
    "run_sessions",
    "task_runner",
    "therapist_pairs",
    "write_cohort",
]

#: 9999 label shuffles resolve p = 1e-4 and take about 0.3 s for 40 sessions (1600 pairs
#: per signal).
DEFAULT_PERMUTATIONS: Final = 9999
#: Small on purpose: a laptop, or a machine shared with others (one thread per worker
#: because one session's replay is single-threaded Python).
DEFAULT_WORKERS: Final = 2
#: How long to wait for a remote scheduler before giving up.
SCHEDULER_TIMEOUT_S: Final = 30.0

CONTROL_STATISTIC: Final = "mean peak Fisher z over lags, complete windows"
EFFECT_SIZE: Final = "Cohen's d: (mean real - mean pseudo) / pooled SD"

# The files write_cohort makes, in the order it writes them.
OUTPUT_FILES: Final = ("cohort.csv", "cohort_pairs.csv", "cohort.json", "cohort.md")
# Columns every cohort.csv row starts with; the summary's columns follow.
SESSION_COLUMNS: Final = ("session_id", "file", "room", "duration_s", "error")
PAIR_COLUMNS: Final = (
    "signal", "therapist_session", "client_session", "kind", "peak_z", "windows"
)  # fmt: skip


# ---------------------------------------------------------------------------------------
# Inputs


@dataclass(frozen=True, slots=True)
class CohortSession:
    """One session to analyse: its id (the store's, else the file stem), its recording and
    its room ("" when the folder does not say)."""

    session_id: str
    path: Path
    room: str = ""


def cohort_sessions(source: str | Path) -> tuple[CohortSession, ...]:
    """The sessions of ``source``: a folder (every ``*.xdf`` in it, by name) or a session
    store file (every catalogued session, oldest first). Raises :class:`ConfigError` for a
    folder without recordings, :class:`~server.store.StoreError` for an unreadable store."""
    # Absolute: a remote worker resolves a relative path against its own directory.
    source = Path(source).expanduser().absolute()
    if source.is_dir():
        files = sorted(source.glob("*.xdf"))
        if not files:
            raise ConfigError(f"{source} holds no .xdf recording; give a folder of recordings")
        return tuple(CohortSession(path.stem, path) for path in files)
    if not source.exists():
        raise ConfigError(f"{source} does not exist; give a folder of .xdf files or a store")
    if source.suffix.lower() == ".xdf":
        raise ConfigError(
            f"{source} is one recording; give the folder that holds the cohort's recordings "
            "(`dyadsync analyze` analyses one session)"
        )
    from server.store import SessionStore

    with SessionStore(source, create=False) as store:
        rows = store.list_sessions()
    if not rows:
        raise ConfigError(f"session store {source} catalogues no session")
    return tuple(CohortSession(row.session_id, row.file_path, row.room) for row in rows)


# ---------------------------------------------------------------------------------------
# One session (a Dask task)


@dataclass(frozen=True, slots=True, kw_only=True)
class ControlSettings:
    """What the pseudo-dyad statistic needs to be computed as the session was: the grid,
    the synchronised signals and the windowed cross-correlation settings."""

    grid_hz: float
    signals: tuple[Derived, ...]
    window_s: float
    lag_s: float
    step_s: float
    z_cap: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "grid_hz": self.grid_hz,
            "signals": [s.value for s in self.signals],
            "window_s": self.window_s,
            "lag_s": self.lag_s,
            "step_s": self.step_s,
            "z_cap": self.z_cap,
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class SessionResult:
    """What a task returns for one session (small and picklable: no messages).

    ``series[(role, signal)]``: that person's grid series from the session start (index 0
    is the first grid sample of any synchronised signal), NaN where not valid or missing.
    ``error`` is "" for an analysed session; for a failed one it says why and the other
    fields are empty.
    """

    session: CohortSession
    error: str = ""
    duration_s: float = math.nan
    summary: Mapping[str, Any] | None = None
    settings: ControlSettings | None = None
    series: Mapping[tuple[Role, Derived], FloatArray] | None = None

    @property
    def ok(self) -> bool:
        return not self.error

    def chair(self, role: Role) -> Chair:
        """One person's series, what the pseudo-dyad tasks need of this session."""
        if self.series is None:
            raise ConfigError(f"session {self.session.session_id} was not analysed: {self.error}")
        return Chair(
            session_id=self.session.session_id,
            series={signal: values for (r, signal), values in self.series.items() if r is role},
        )


@dataclass(frozen=True, slots=True)
class Chair:
    """One person (therapist or client) of one session: grid series per signal, from the
    session start (see :attr:`SessionResult.series`)."""

    session_id: str
    series: Mapping[Derived, FloatArray]


def analyze_session(
    session: CohortSession, *, synchrony: Mapping[str, Any] | None = None
) -> SessionResult:
    """Analyse one session (see :func:`analysis.session.analyze_recording` for
    ``synchrony``); a session that cannot be analysed is returned with its error."""
    from analysis.session import analyze_recording
    from analysis.summary import session_summary

    try:
        analysis = analyze_recording(session.path, synchrony=synchrony)
        summary = session_summary(analysis)
    except DyadsyncError as exc:
        return SessionResult(session=session, error=_without_folder(str(exc), session.path))
    # Anything else is a bug, but one file's bug must not cost the cohort its other
    # sessions: the row names the exception.
    except Exception as exc:
        error = f"{type(exc).__name__}: {exc}"
        return SessionResult(session=session, error=_without_folder(error, session.path))
    pipeline = analysis.pipeline
    settings = ControlSettings(
        grid_hz=pipeline.grid_hz,
        signals=tuple(pipeline.sync_signals),
        window_s=pipeline.synchrony.window_s,
        lag_s=pipeline.synchrony.lag_s,
        step_s=pipeline.synchrony.step_s,
        z_cap=pipeline.synchrony.z_cap,
    )
    raw = {
        (role, signal): analysis.series(role, signal)
        for signal in settings.signals
        for role in Role
    }
    indices = {key: np.rint(s.t_s * settings.grid_hz).astype(np.int64) for key, s in raw.items()}
    starts = [int(k[0]) for k in indices.values() if k.size]
    start_k = min(starts) if starts else 0
    series: dict[tuple[Role, Derived], FloatArray] = {}
    for key, s in raw.items():
        k = indices[key] - start_k
        dense = np.full(int(k[-1]) + 1 if k.size else 0, np.nan)
        dense[k] = np.where(s.valid, s.values, np.nan)
        series[key] = dense
    return SessionResult(
        session=session,
        duration_s=analysis.duration_s,
        summary=summary,
        settings=settings,
        series=series,
    )


class TaskRunner:
    """Runs one function over many inputs, here (``"serial"``) or on a Dask cluster, and
    returns the results in input order whatever the order they finish in.

    Use as a context manager (:func:`task_runner` makes one); a local cluster is closed on
    exit, a remote one is only disconnected from.
    """

    def __init__(self, client: Any | None = None, cluster: Any | None = None) -> None:
        self._client = client  # a distributed.Client, None = serial
        self._cluster = cluster  # the LocalCluster we started, if any

    def __enter__(self) -> TaskRunner:
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._client is not None:
            self._client.close()
        if self._cluster is not None:
            self._cluster.close()

    def map(
        self,
        function: Callable[..., R],
        items: Sequence[Any],
        *,
        shared: Mapping[str, Any] | None = None,
        on_result: Callable[[R], None] | None = None,
        on_error: Callable[[int, Exception], R] | None = None,
    ) -> list[R]:
        """``[function(item, **shared) for item in items]``, in parallel on Dask.

        ``shared`` keyword arguments go to every call (on Dask they are sent to each worker
        once). ``on_result`` sees each result as it arrives; ``on_error(index, exc)`` turns
        a task that raised (or whose worker died) into a result instead of raising.
        """
        shared = dict(shared or {})
        if self._client is None:
            results = []
            for index, item in enumerate(items):
                try:
                    result = function(item, **shared)
                except Exception as exc:
                    if on_error is None:
                        raise
                    result = on_error(index, exc)
                if on_result is not None:
                    on_result(result)
                results.append(result)
            return results
        return self._on_dask(function, items, shared, on_result, on_error)

    def _on_dask(
        self,
        function: Callable[..., R],
        items: Sequence[Any],
        shared: dict[str, Any],
        on_result: Callable[[R], None] | None,
        on_error: Callable[[int, Exception], R] | None,
    ) -> list[R]:
        from distributed import as_completed

        client = self._client
        assert client is not None  # _on_dask is only called with a client
        # One copy of each shared argument per worker, not one per task. Wrapped in a list
        # so that a list or dict travels as one object (scatter splits containers);
        # hash=False: our own keys, never another job's same-looking data.
        sent = {
            key: client.scatter([value], broadcast=True, hash=False)[0]
            for key, value in shared.items()
        }
        # pure=False: one task per item even if two items are equal (e.g. the same path).
        futures = [client.submit(function, item, **sent, pure=False) for item in items]
        position = {future.key: index for index, future in enumerate(futures)}
        results: dict[int, R] = {}
        for future in as_completed(futures):
            index = position[future.key]
            try:
                result = future.result()
            except Exception as exc:
                if on_error is None:
                    raise
                result = on_error(index, exc)
            results[index] = result
            if on_result is not None:
                on_result(result)
            future.release()  # the result is here: free the worker's copy now
        return [results[index] for index in range(len(futures))]


def task_runner(scheduler: str = "local", *, n_workers: int = DEFAULT_WORKERS) -> TaskRunner:
    """A :class:`TaskRunner` for ``scheduler``: ``"serial"`` (this process, no Dask),
    ``"local"`` (a LocalCluster of ``n_workers`` single-threaded worker processes on
    loopback) or the address of a running Dask scheduler (``tcp://host:8786``: its workers
    must have dyadsync installed and see the recordings at the same paths). Raises
    :class:`ConfigError` for another value or an unreachable scheduler."""
    if scheduler == "serial":
        return TaskRunner()
    from distributed import Client, LocalCluster

    # distributed sets its loggers to INFO when imported; follow the application's level
    # instead (the command line's -v), so a cohort run prints its results, not the cluster's.
    logging.getLogger("distributed").setLevel(logging.getLogger().getEffectiveLevel())
    if scheduler == "local":
        if not (isinstance(n_workers, int) and n_workers >= 1):
            raise ConfigError(f"n_workers must be an integer >= 1, got {n_workers!r}")
        cluster = LocalCluster(
            n_workers=n_workers,
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            dashboard_address=None,
            # Without a dashboard the scheduler still serves /health, by default on every
            # interface at 8787: keep it on loopback, like every other port of the cluster.
            scheduler_kwargs={"dashboard_address": "127.0.0.1:0"},
        )
        return TaskRunner(Client(cluster), cluster)
    if not scheduler.startswith(("tcp://", "tls://", "ucx://")):
        raise ConfigError(
            f"scheduler {scheduler!r} is not allowed; use 'serial', 'local' or a scheduler "
            "address such as tcp://host:8786"
        )
    try:
        return TaskRunner(Client(scheduler, timeout=SCHEDULER_TIMEOUT_S))
    except OSError as exc:
        raise ConfigError(
            f"cannot reach the Dask scheduler at {scheduler} ({exc}); start one "
            "(`dask scheduler`) or leave --scheduler out for a local cluster"
        ) from None


def _without_folder(message: str, path: Path) -> str:
    # The cohort files name recordings by file name only, like the session summary: a
    # folder can name a person or a site, and differs between a laptop and the cluster.
    return message.replace(str(path), path.name)


def run_sessions(
    sessions: Sequence[CohortSession],
    *,
    runner: TaskRunner | None = None,
    synchrony: Mapping[str, Any] | None = None,
    on_result: Callable[[SessionResult], None] | None = None,
) -> list[SessionResult]:
    """Analyse ``sessions``, one task each (serially without ``runner``), in input order.
    ``on_result`` is called as each session finishes, e.g. to advance a progress bar."""

    def failed(index: int, exc: Exception) -> SessionResult:
        # The task itself never raises (analyze_session keeps its errors); this is the
        # cluster failing it, e.g. the worker died on this file.
        return SessionResult(
            session=sessions[index], error=f"task failed: {type(exc).__name__}: {exc}"
        )

    return (runner or TaskRunner()).map(
        analyze_session,
        sessions,
        shared={"synchrony": synchrony},
        on_result=on_result,
        on_error=failed,
    )


# ---------------------------------------------------------------------------------------
# The pseudo-dyad control


def dyad_synchrony(
    therapist: FloatArray, client: FloatArray, *, settings: ControlSettings
) -> tuple[float, int]:
    """The control statistic of one (real or pseudo) dyad and its number of windows: both
    series from their session's start, cut to the shorter; the mean over windows with an
    estimate at every lag of the peak Fisher z over lags (NaN without any such window)."""
    n = min(therapist.shape[0], client.shape[0])
    xcorr = windowed_cross_correlation(
        therapist[:n],
        client[:n],
        settings.grid_hz,
        window_s=settings.window_s,
        lag_s=settings.lag_s,
        step_s=settings.step_s,
        z_cap=settings.z_cap,
    )
    complete = np.isfinite(xcorr.values).all(axis=1)
    if not complete.any():
        return math.nan, 0
    peaks = xcorr.values[complete].max(axis=1)
    return float(peaks.mean()), int(complete.sum())


@dataclass(frozen=True, slots=True, kw_only=True)
class Comparison:
    """Real against pseudo values of the control statistic.

    ``cohens_d`` = (mean real - mean pseudo) / pooled SD. ``p_value``: one-sided
    permutation p of ``mean real - mean pseudo`` (are real dyads more synchronous?),
    ``(1 + #{shuffled >= observed}) / (1 + n_permutations)``, shuffling the real/pseudo
    labels over all values with a seeded generator.
    """

    n_real: int
    n_pseudo: int
    mean_real: float
    mean_pseudo: float
    sd_real: float
    sd_pseudo: float
    cohens_d: float
    p_value: float
    n_permutations: int
    seed: int

    def to_dict(self) -> dict[str, Any]:
        return {name: _json_number(getattr(self, name)) for name in self.__dataclass_fields__}


def compare_real_pseudo(
    real: FloatArray, pseudo: FloatArray, *, n_permutations: int, seed: int
) -> Comparison:
    """Compare the control statistic of real and pseudo dyads (NaN values left out)."""
    if not (isinstance(n_permutations, int) and n_permutations >= 1):
        raise ConfigError(f"n_permutations must be an integer >= 1, got {n_permutations!r}")
    real = np.asarray(real, dtype=float)
    pseudo = np.asarray(pseudo, dtype=float)
    real, pseudo = real[np.isfinite(real)], pseudo[np.isfinite(pseudo)]
    n_real, n_pseudo = real.size, pseudo.size
    sd_real, sd_pseudo = _sd(real), _sd(pseudo)
    d = p = math.nan
    if n_real >= 1 and n_pseudo >= 1:
        observed = float(real.mean() - pseudo.mean())
        squares = float(((real - real.mean()) ** 2).sum() + ((pseudo - pseudo.mean()) ** 2).sum())
        if n_real + n_pseudo > 2 and squares > 0:
            d = observed / math.sqrt(squares / (n_real + n_pseudo - 2))
        p = _permutation_p(real, pseudo, observed, n_permutations=n_permutations, seed=seed)
    return Comparison(
        n_real=n_real,
        n_pseudo=n_pseudo,
        mean_real=float(real.mean()) if n_real else math.nan,
        mean_pseudo=float(pseudo.mean()) if n_pseudo else math.nan,
        sd_real=sd_real,
        sd_pseudo=sd_pseudo,
        cohens_d=d,
        p_value=p,
        n_permutations=n_permutations,
        seed=seed,
    )


def _permutation_p(
    real: FloatArray, pseudo: FloatArray, observed: float, *, n_permutations: int, seed: int
) -> float:
    """One-sided p of ``observed`` = mean real - mean pseudo under label shuffling."""
    values = np.concatenate([real, pseudo])
    total = float(values.sum())
    rng = np.random.default_rng(seed)
    # Ties with the observed split count as ties despite summation-order rounding.
    threshold = observed - 1e-12 * max(1.0, abs(observed))
    exceed = 0
    for _ in range(n_permutations):
        real_sum = float(values[rng.permutation(values.size)[: real.size]].sum())
        exceed += real_sum / real.size - (total - real_sum) / pseudo.size >= threshold
    return (1 + exceed) / (1 + n_permutations)


def _sd(values: FloatArray) -> float:
    return float(values.std(ddof=1)) if values.size >= 2 else math.nan


@dataclass(frozen=True, slots=True)
class PairResult:
    """The control statistic of one dyad in one signal: ``therapist_session``'s therapist
    with ``client_session``'s client (the same session for a real dyad)."""

    signal: Derived
    therapist_session: str
    client_session: str
    peak_z: float
    windows: int

    @property
    def real(self) -> bool:
        return self.therapist_session == self.client_session


@dataclass(frozen=True, slots=True, kw_only=True)
class SignalControl:
    """One signal's control: every pair (real first, then pseudo by therapist) and the
    comparison."""

    signal: Derived
    pairs: tuple[PairResult, ...]
    comparison: Comparison


@dataclass(frozen=True, slots=True, kw_only=True)
class PseudoDyadControl:
    """The control over the analysed sessions; ``unavailable`` says why there is none
    (fewer than two analysed sessions, or sessions analysed with different settings)."""

    sessions: tuple[str, ...]
    settings: ControlSettings | None
    signals: tuple[SignalControl, ...] = ()
    unavailable: str = ""


def pseudo_dyad_control(
    results: Sequence[SessionResult],
    *,
    n_permutations: int = DEFAULT_PERMUTATIONS,
    seed: int = 0,
    runner: TaskRunner | None = None,
) -> PseudoDyadControl:
    """Real dyads against every therapist x other-session client pairing (n * (n - 1)
    pseudo dyads per signal for n analysed sessions); failed sessions are left out.

    The n * n pairs are computed one task per therapist (serially without ``runner``),
    every client's series sent to each worker once; the comparison runs here.
    """
    analysed = [r for r in results if r.ok and r.settings is not None and r.series]
    ids = tuple(r.session.session_id for r in analysed)
    if len(analysed) < 2:
        return PseudoDyadControl(
            sessions=ids, settings=None, unavailable="fewer than two analysed sessions"
        )
    settings = analysed[0].settings
    assert settings is not None  # filtered above; for mypy
    for other in analysed[1:]:
        if other.settings != settings:
            return PseudoDyadControl(
                sessions=ids,
                settings=None,
                unavailable=(
                    f"sessions {ids[0]} and {other.session.session_id} were analysed with "
                    "different settings; pseudo dyads need one grid, window and lag"
                ),
            )
    by_therapist = (runner or TaskRunner()).map(
        therapist_pairs,
        [r.chair(Role.THERAPIST) for r in analysed],
        shared={"clients": [r.chair(Role.CLIENT) for r in analysed], "settings": settings},
    )
    signals = []
    for signal in settings.signals:
        of_signal = [p for pairs in by_therapist for p in pairs if p.signal is signal]
        real = [p for p in of_signal if p.real]
        pseudo = [p for p in of_signal if not p.real]
        comparison = compare_real_pseudo(
            np.array([p.peak_z for p in real]),
            np.array([p.peak_z for p in pseudo]),
            n_permutations=n_permutations,
            seed=seed,
        )
        signals.append(SignalControl(signal=signal, pairs=(*real, *pseudo), comparison=comparison))
    return PseudoDyadControl(sessions=ids, settings=settings, signals=tuple(signals))


def therapist_pairs(
    therapist: Chair, *, clients: Sequence[Chair], settings: ControlSettings
) -> tuple[PairResult, ...]:
    """One therapist with every client (its own: the real dyad), per signal (a task)."""
    pairs = []
    for signal in settings.signals:
        for client in clients:
            peak_z, windows = dyad_synchrony(
                therapist.series[signal], client.series[signal], settings=settings
            )
            pairs.append(
                PairResult(
                    signal=signal,
                    therapist_session=therapist.session_id,
                    client_session=client.session_id,
                    peak_z=peak_z,
                    windows=windows,
                )
            )
    return tuple(pairs)


# ---------------------------------------------------------------------------------------
# The whole cohort and its files


@dataclass(frozen=True, slots=True, kw_only=True)
class Cohort:
    """Every session's result (input order) and the pseudo-dyad control."""

    results: tuple[SessionResult, ...]
    control: PseudoDyadControl


def analyze_cohort(
    source: str | Path | Sequence[CohortSession],
    *,
    scheduler: str = "local",
    n_workers: int = DEFAULT_WORKERS,
    synchrony: Mapping[str, Any] | None = None,
    n_permutations: int = DEFAULT_PERMUTATIONS,
    seed: int = 0,
    on_result: Callable[[SessionResult], None] | None = None,
) -> Cohort:
    """Analyse a folder, a session store or given sessions (see :func:`cohort_sessions`,
    :func:`run_sessions`) and run the pseudo-dyad control on the analysed ones."""
    sessions = cohort_sessions(source) if isinstance(source, str | Path) else tuple(source)
    with task_runner(scheduler, n_workers=n_workers) as runner:
        results = run_sessions(sessions, runner=runner, synchrony=synchrony, on_result=on_result)
        control = pseudo_dyad_control(
            results, n_permutations=n_permutations, seed=seed, runner=runner
        )
    return Cohort(results=tuple(results), control=control)


def write_cohort(cohort: Cohort, out_dir: str | Path) -> tuple[Path, ...]:
    """Write :data:`OUTPUT_FILES` into ``out_dir`` (created if needed, files replaced:
    they are derived from the recordings and can be made again). The files hold no
    timing or host information, so equal cohorts give byte-identical files."""
    out = Path(out_dir).expanduser()
    out.mkdir(parents=True, exist_ok=True)
    rows = [_session_row(result, cohort.control) for result in cohort.results]
    columns = list(SESSION_COLUMNS)
    for row in rows:
        columns.extend(c for c in row if c not in columns)
    table, pairs, document, report = (out / name for name in OUTPUT_FILES)
    _write_csv(table, columns, rows)
    _write_csv(
        pairs,
        list(PAIR_COLUMNS),
        [
            {
                "signal": control.signal.value,
                "therapist_session": pair.therapist_session,
                "client_session": pair.client_session,
                "kind": "real" if pair.real else "pseudo",
                "peak_z": pair.peak_z,
                "windows": pair.windows,
            }
            for control in cohort.control.signals
            for pair in control.pairs
        ],
    )
    aggregate = _cohort_document(cohort, rows, columns)
    document.write_text(json.dumps(aggregate, indent=2, allow_nan=False) + "\n")
    report.write_text(_markdown(aggregate))
    return table, pairs, document, report


def _session_row(result: SessionResult, control: PseudoDyadControl) -> dict[str, Any]:
    row: dict[str, Any] = {
        "session_id": result.session.session_id,
        "file": result.session.path.name,
        "room": result.session.room,
        "duration_s": result.duration_s,
        "error": result.error,
    }
    for signal_control in control.signals:
        real = next(
            (p for p in signal_control.pairs
             if p.real and p.therapist_session == result.session.session_id),
            None,
        )  # fmt: skip
        row[f"{signal_control.signal.value}.control.peak_z"] = real.peak_z if real else None
    if result.summary is not None:
        row.update(_flatten(result.summary["signals"]))
        row.update(_flatten(result.summary["streams"], prefix="streams."))
    return row


def _flatten(values: Mapping[str, Any], *, prefix: str = "") -> dict[str, Any]:
    """Nested numbers and strings as dotted columns; lists (per-episode detail) stay in
    the per-session summary."""
    out: dict[str, Any] = {}
    for key, value in values.items():
        if isinstance(value, Mapping):
            out.update(_flatten(value, prefix=f"{prefix}{key}."))
        elif not isinstance(value, list):
            out[f"{prefix}{key}"] = value
    return out


def _write_csv(path: Path, columns: Sequence[str], rows: Sequence[Mapping[str, Any]]) -> None:
    # The analyse tables' conventions: empty cell = no value, booleans 1/0, full precision.
    with path.open("w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(columns)
        for row in rows:
            writer.writerow([_csv_cell(row.get(column)) for column in columns])


def _csv_cell(value: Any) -> Any:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return ""
    if isinstance(value, bool):
        return int(value)
    return value


def _json_number(value: Any) -> Any:
    return None if isinstance(value, float) and not math.isfinite(value) else value


def _cohort_document(
    cohort: Cohort, rows: Sequence[Mapping[str, Any]], columns: Sequence[str]
) -> dict[str, Any]:
    analysed = [row for row, result in zip(rows, cohort.results, strict=True) if result.ok]
    aggregates: dict[str, Any] = {}
    for column in columns:
        values = np.array(
            [row[column] for row in analysed if _is_number(row.get(column))], dtype=float
        )
        if values.size:
            aggregates[column] = {
                "n": int(values.size),
                "mean": float(values.mean()),
                "sd": _json_number(_sd(values)),
                "min": float(values.min()),
                "max": float(values.max()),
            }
    control = cohort.control
    return {
        "schema": "dyadsync.cohort/1",
        "sessions": len(cohort.results),
        "analysed": len(analysed),
        "failed": [
            {"session_id": r.session.session_id, "file": r.session.path.name, "error": r.error}
            for r in cohort.results
            if not r.ok
        ],
        "aggregates": aggregates,
        "pseudo_dyad_control": {
            "method": "between-dyad shuffling: each therapist with every other session's "
            "client, roles kept, aligned from each session's start, cut to the shorter",
            "statistic": CONTROL_STATISTIC,
            "effect_size": EFFECT_SIZE,
            "p_value": "one-sided permutation p (real > pseudo), real/pseudo labels shuffled",
            "sessions": list(control.sessions),
            "settings": control.settings.to_dict() if control.settings else None,
            "unavailable": control.unavailable or None,
            "signals": {
                s.signal.value: {
                    "pairs_real": sum(p.real for p in s.pairs),
                    "pairs_pseudo": sum(not p.real for p in s.pairs),
                    **s.comparison.to_dict(),
                }
                for s in control.signals
            },
        },
    }


def _is_number(value: Any) -> bool:
    return (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and math.isfinite(float(value))
    )


def _markdown(document: Mapping[str, Any]) -> str:
    control = document["pseudo_dyad_control"]
    lines = [
        "# Cohort report",
        "",
        f"{document['analysed']} of {document['sessions']} sessions analysed.",
        "",
    ]
    if document["failed"]:
        lines += ["## Sessions not analysed", ""]
        lines += [f"- session `{f['session_id']}`: {f['error']}" for f in document["failed"]]
        lines.append("")
    lines += [
        "## Pseudo-dyad control",
        "",
        f"{control['method']}. Statistic: {control['statistic']}. "
        f"Effect size: {control['effect_size']}. p: {control['p_value']}.",
        "",
    ]
    if control["unavailable"]:
        lines += [f"Not computed: {control['unavailable']}.", ""]
    else:
        lines += [
            "| signal | real dyads | pseudo dyads | mean real | mean pseudo | Cohen's d | p "
            "| permutations |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for name, s in control["signals"].items():
            lines.append(
                f"| {name} | {s['n_real']} | {s['n_pseudo']} | {_fmt(s['mean_real'])} "
                f"| {_fmt(s['mean_pseudo'])} | {_fmt(s['cohens_d'])} | {_fmt(s['p_value'])} "
                f"| {s['n_permutations']} |"
            )
        lines.append("")
    means = [
        (column, stats)
        for column, stats in document["aggregates"].items()
        if column.endswith(("mean_best_lag_fisher_z", "percent_of_session", "susy"))
    ]
    if means:
        lines += ["## Across sessions", "", "| column | n | mean | sd |", "|---|---|---|---|"]
        lines += [f"| {c} | {s['n']} | {_fmt(s['mean'])} | {_fmt(s['sd'])} |" for c, s in means]
        lines.append("")
    lines += ["Every column of every session: `cohort.csv`; every pair: `cohort_pairs.csv`.", ""]
    return "\n".join(lines)


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3g}"

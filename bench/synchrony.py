"""Benchmark of the synchrony engine (issue 4).

1. Per-update cost of the incremental windowed lagged cross-correlation
   (:class:`dsp.xcorr.LaggedComoments` as the engine runs it, and the public
   :class:`dsp.xcorr.StreamingCrossCorrelation` with its per-push overhead) against three
   baselines measured in the same run: the naive recompute rMEA itself does (``cor`` of every
   lag of every window: here ``np.corrcoef`` per lag, the reference for the >= 20x target), the
   same loop with a hand-written Pearson (centred dot products: no ``np.corrcoef`` overhead,
   a leaner naive baseline), and a fully vectorised numpy recompute of the whole window x lag
   block at every step. Window 30 s, lag +-5 s, step 1 s, 4 Hz and 32 Hz, one step of samples
   per update as live. Every estimator's output is checked against the naive one (max |diff|).
2. How many dyads one core sustains in real time with significance on: CPU time of full
   :class:`dsp.synchrony.SynchronyEngine` instances (99 surrogates, episodes, concordance) per
   second of session, for the signals the pipeline synchronises per dyad by default (HR and
   phasic EDA).

Usage: ``python bench/synchrony.py [--quick]`` (quick: shorter series, for CI).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import numpy as np

from dsp.pipeline import PipelineConfig
from dsp.synchrony import SynchronyEngine
from dsp.types import FloatArray
from dsp.xcorr import LaggedComoments, StreamingCrossCorrelation, fisher_z_capped

WINDOW_S, LAG_S, STEP_S = 30.0, 5.0, 1.0
SIGNALS_PER_DYAD = len(PipelineConfig().sync_signals)  # one engine per synchronised signal


def _series(n: int, seed: int) -> tuple[FloatArray, FloatArray]:
    rng = np.random.default_rng(seed)
    a = 70 + np.cumsum(rng.normal(size=n)) * 0.1 + rng.normal(size=n)
    b = 80 + 0.5 * np.roll(a, 7) + rng.normal(size=n)
    return a, b


def _windows(n: int, fs_hz: float) -> tuple[int, int, int, int]:
    win, lag, inc = round(WINDOW_S * fs_hz), round(LAG_S * fs_hz), round(STEP_S * fs_hz)
    return win, lag, inc, -(-(n - win - lag + 1) // inc)


def _per_lag(
    a: FloatArray, b: FloatArray, fs_hz: float, pearson: Callable[[FloatArray, FloatArray], float]
) -> FloatArray:
    """rMEA's loop: for every window and every lag, ``pearson`` of a fresh pair of slices."""
    win, lag, inc, n_windows = _windows(a.size, fs_hz)
    out = np.empty((n_windows, 2 * lag + 1))
    for w in range(n_windows):
        s = w * inc
        for j, k in enumerate(range(-lag, lag + 1)):
            x = a[s + max(-k, 0) : s + max(-k, 0) + win]
            y = b[s + max(k, 0) : s + max(k, 0) + win]
            out[w, j] = pearson(x, y)
    return np.arctanh(out)


def _corrcoef(x: FloatArray, y: FloatArray) -> float:
    return float(np.corrcoef(x, y)[0, 1])


def _centred_dots(x: FloatArray, y: FloatArray) -> float:
    x = x - x.mean()
    y = y - y.mean()
    return float((x @ y) / np.sqrt((x @ x) * (y @ y)))


def naive_per_lag(a: FloatArray, b: FloatArray, fs_hz: float) -> FloatArray:
    """rMEA's loop with ``np.corrcoef`` per lag, as rMEA calls ``cor``."""
    return _per_lag(a, b, fs_hz, _corrcoef)


def naive_per_lag_dots(a: FloatArray, b: FloatArray, fs_hz: float) -> FloatArray:
    """The same loop with Pearson written out as centred dot products."""
    return _per_lag(a, b, fs_hz, _centred_dots)


def naive_vectorised(a: FloatArray, b: FloatArray, fs_hz: float) -> FloatArray:
    """Every step: gather the whole (lags x window) block and correlate it in one go."""
    win, lag, inc, n_windows = _windows(a.size, fs_hz)
    lags = np.arange(-lag, lag + 1)
    steps = np.arange(win)
    out = np.empty((n_windows, lags.size))
    for w in range(n_windows):
        s = w * inc
        x = a[s + np.maximum(-lags, 0)[:, None] + steps[None, :]]
        y = b[s + np.maximum(lags, 0)[:, None] + steps[None, :]]
        x = x - x.mean(axis=1, keepdims=True)
        y = y - y.mean(axis=1, keepdims=True)
        r = (x * y).sum(axis=1) / np.sqrt((x * x).sum(axis=1) * (y * y).sum(axis=1))
        out[w] = np.arctanh(r)
    return out


def incremental(a: FloatArray, b: FloatArray, fs_hz: float) -> FloatArray:
    """The estimator as the synchrony engine runs it: sliding co-moments, then Fisher z."""
    win, lag, inc, n_windows = _windows(a.size, fs_hz)
    moments = LaggedComoments(window_n=win, lag_n=lag, max_slide_n=inc)
    ok = np.ones(a.size, dtype=bool)
    out = np.empty((n_windows, 2 * lag + 1))
    moments.append(a[: win + lag - inc], b[: win + lag - inc], ok[: win + lag - inc])
    for w in range(n_windows):
        lo, hi = w * inc + win + lag - inc, w * inc + win + lag
        moments.append(a[lo:hi], b[lo:hi], ok[lo:hi])
        out[w] = fisher_z_capped(moments.correlations())
    return out


def streaming_object(a: FloatArray, b: FloatArray, fs_hz: float) -> FloatArray:
    """The public streaming API, one step per push (adds argument checks and result objects)."""
    stream = StreamingCrossCorrelation(fs_hz, window_s=WINDOW_S, lag_s=LAG_S, step_s=STEP_S)
    step = round(STEP_S * fs_hz)
    parts = [stream.push(a[i : i + step], b[i : i + step]).values for i in range(0, a.size, step)]
    return np.vstack(parts)


Estimator = Callable[[FloatArray, FloatArray, float], FloatArray]


def _timed(fn: Estimator, a: FloatArray, b: FloatArray, fs_hz: float) -> tuple[float, FloatArray]:
    start = time.process_time()
    out = fn(a, b, fs_hz)
    return time.process_time() - start, out


def bench_estimators(duration_s: float) -> list[tuple[str, ...]]:
    rows: list[tuple[str, ...]] = []
    for fs_hz in (4.0, 32.0):
        a, b = _series(round(duration_s * fs_hz), seed=int(fs_hz))
        n_updates = _windows(a.size, fs_hz)[3]
        t_naive, ref = _timed(naive_per_lag, a, b, fs_hz)
        t_dots, dots = _timed(naive_per_lag_dots, a, b, fs_hz)
        t_vec, vec = _timed(naive_vectorised, a, b, fs_hz)
        t_inc, inc = _timed(incremental, a, b, fs_hz)
        t_api, api = _timed(streaming_object, a, b, fs_hz)
        for name, seconds, values in (
            ("naive per-lag corrcoef", t_naive, ref),
            ("naive per-lag dot products", t_dots, dots),
            ("naive vectorised block", t_vec, vec),
            ("incremental co-moments", t_inc, inc),
            ("StreamingCrossCorrelation", t_api, api),
        ):
            rows.append(
                (
                    f"{fs_hz:g} Hz",
                    name,
                    f"{seconds / n_updates * 1e6:9.1f}",
                    f"{t_naive / seconds:6.1f}x",
                    f"{t_dots / seconds:6.1f}x",
                    f"{t_vec / seconds:6.1f}x",
                    f"{np.max(np.abs(values - ref)):.1e}",
                )
            )
    return rows


def bench_dyads(duration_s: float, n_engines: int) -> tuple[float, float, float]:
    """CPU seconds per engine per session second, dyads one core sustains in real time, and
    the fraction of updates that carried a surrogate p-value (the rest: warm-up)."""
    grid_hz = 4.0
    n = round(duration_s * grid_hz)
    engines = [SynchronyEngine(grid_hz) for _ in range(n_engines)]
    data = [_series(n, seed=100 + i) for i in range(n_engines)]
    t = np.arange(n) / grid_hz
    ok = np.ones(n, dtype=bool)
    chunk = round(0.25 * grid_hz)  # one aligned grid sample per push, as live
    start = time.process_time()
    n_updates = n_with_p = 0
    for lo in range(0, n, chunk):
        for engine, (a, b) in zip(engines, data, strict=True):
            out = engine.push(
                t_s=t[lo : lo + chunk],
                therapist=a[lo : lo + chunk],
                client=b[lo : lo + chunk],
                valid=ok[lo : lo + chunk],
            )
            n_updates += len(out.updates)
            n_with_p += sum(1 for u in out.updates if u.p_value == u.p_value)  # not NaN
    cpu_s = time.process_time() - start
    per_engine_second = cpu_s / (n_engines * duration_s)
    return per_engine_second, 1.0 / (SIGNALS_PER_DYAD * per_engine_second), n_with_p / n_updates


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short run for CI (a few seconds)")
    args = parser.parse_args()
    estimator_s = 90.0 if args.quick else 600.0
    session_s, n_engines = (240.0, 2) if args.quick else (900.0, 6)

    print(
        f"windowed lagged cross-correlation: window {WINDOW_S:g} s, lag +-{LAG_S:g} s, "
        f"step {STEP_S:g} s, {estimator_s:g} s of data (CPU time per update)"
    )
    header = (
        "grid",
        "estimator",
        "us/update",
        "vs per-lag naive",
        "vs per-lag dots",
        "vs vectorised",
        "max |diff| vs naive",
    )
    rows = bench_estimators(estimator_s)
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        print("  ".join(cell.rjust(w) for cell, w in zip(row, widths, strict=True)))

    per_engine_s, dyads, with_p = bench_dyads(session_s, n_engines)
    print()
    print(f"full engine, 4 Hz grid, 99 surrogates, {n_engines} engines x {session_s:g} s session")
    print(f"  CPU per engine per session second : {per_engine_s * 1e3:8.3f} ms")
    print(f"  updates with surrogate p-value    : {with_p * 100:8.1f} %  (the rest: warm-up)")
    print(
        f"  dyads per core in real time       : {dyads:8.0f}   "
        f"({SIGNALS_PER_DYAD} signals/dyad; target >= 200)"
    )


if __name__ == "__main__":
    main()

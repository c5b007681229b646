"""Throughput of the streaming ECG and EDA chains against NeuroKit2's offline pipelines.

On the same real recordings, in the same run and on one core:

* ECG: MIT-BIH 100 MLII (360 Hz, 30 min) through :func:`dsp.ecg.detect_r_peaks` (detector
  alone, one call) and :class:`dsp.heart_rate.HeartRateProcessor` (the whole chain: detector,
  beat correction, quality flags, heart rate on the 4 Hz grid) fed in live-like chunks (1 s,
  0.1 s and 0.05 s pulls), against ``neurokit2.ecg_process``;
* EDA: NeuroKit2's 8-minute resting recording (100 Hz) through :func:`dsp.eda.eda_features`
  and :class:`dsp.eda.EdaProcessor` in chunks, against ``neurokit2.eda_process``; and the
  same recording resampled to 32 Hz (``scipy.signal.resample_poly``, 8/25), a lower device
  rate where a 0.1 s pull holds only 3 samples, so the per-push cost dominates.

Prints samples/s, x real time (signal seconds per CPU second) and the speed-up over NeuroKit2
(NeuroKit2 is offline and zero-phase; it is the baseline, not a competitor in features).
Target: >= 1000x real time per signal on one core.

Usage: ``python bench/dsp_throughput.py [--quick]`` (quick: 2 minutes of each, one ECG
repeat; EDA is cheap and always takes the best of 3, so the first, cold run does not count).
"""

from __future__ import annotations

import os

# One core: keep BLAS/OpenMP from spreading NeuroKit2's (or our) work over several threads.
for _variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_variable, "1")

import argparse  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from collections.abc import Callable  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from types import ModuleType  # noqa: E402

import numpy as np  # noqa: E402
import wfdb  # noqa: E402
from scipy import signal  # noqa: E402

from dsp.ecg import detect_r_peaks  # noqa: E402
from dsp.eda import EdaProcessor, eda_features  # noqa: E402
from dsp.heart_rate import HeartRateProcessor  # noqa: E402
from dsp.types import FloatArray  # noqa: E402
from tests.paths import testdata_dir  # noqa: E402

TARGET_X_REAL_TIME = 1000.0
CHUNK_S = 0.1  # a frequent LSL pull: 36 ECG samples at 360 Hz, 10 (3) EDA samples at 100 (32) Hz
FAST_CHUNK_S = 0.05  # an eager pull (18 ECG samples): the per-push cost dominates
EDA_REPEATS = 3


@dataclass(frozen=True, slots=True)
class Row:
    signal: str
    implementation: str
    n_samples: int
    fs_hz: float
    seconds: float

    @property
    def x_real_time(self) -> float:
        return self.n_samples / self.fs_hz / self.seconds


def best_time(run: Callable[[], object], *, repeats: int) -> float:
    """Shortest CPU time of ``repeats`` runs (least disturbed by other processes)."""
    times = []
    for _ in range(repeats):
        start = time.process_time()
        run()
        times.append(time.process_time() - start)
    return min(times)


def in_chunks(
    push: Callable[[FloatArray, FloatArray], object], x: FloatArray, fs_hz: float, *, chunk_s: float
) -> None:
    """Feed ``x`` as a live inlet would, ``chunk_s`` seconds per call."""
    t = np.arange(x.size) / fs_hz
    step = max(1, round(chunk_s * fs_hz))
    for start in range(0, x.size, step):
        push(t[start : start + step], x[start : start + step])


def load(duration_s: float | None) -> tuple[FloatArray, float, FloatArray, float]:
    root = testdata_dir()
    record = wfdb.rdrecord(str(root / "ecg" / "mitbih" / "100"))
    ecg_fs_hz = float(record.fs)
    ecg = np.asarray(record.p_signal[:, record.sig_name.index("MLII")], dtype=np.float64)
    table = np.genfromtxt(
        root / "biosignals" / "bio_resting_8min_100hz.csv", delimiter=",", names=True
    )
    eda_fs_hz = 100.0
    eda = np.asarray(table["EDA"], dtype=np.float64)
    if duration_s is not None:
        ecg = ecg[: round(duration_s * ecg_fs_hz)]
        eda = eda[: round(duration_s * eda_fs_hz)]
    return ecg, ecg_fs_hz, eda, eda_fs_hz


def eda_runs_at(eda: FloatArray, fs_hz: float, nk: ModuleType) -> dict[str, Callable[[], object]]:
    """The EDA runs at one sampling rate: batch, live chunks, NeuroKit2 baseline."""
    return {
        "dyadsync eda_features (one call)": lambda: eda_features(eda, fs_hz),
        "dyadsync EdaProcessor (1 s chunks)": lambda: in_chunks(
            EdaProcessor(fs_hz).push, eda, fs_hz, chunk_s=1.0
        ),
        f"dyadsync EdaProcessor ({CHUNK_S:g} s chunks)": lambda: in_chunks(
            EdaProcessor(fs_hz).push, eda, fs_hz, chunk_s=CHUNK_S
        ),
        "NeuroKit2 eda_process (offline)": lambda: nk.eda_process(eda, sampling_rate=fs_hz),
    }


def measure(*, quick: bool) -> list[Row]:
    import neurokit2 as nk  # bench-only dependency, imported late: it is slow to import

    ecg, ecg_fs_hz, eda, eda_fs_hz = load(120.0 if quick else None)
    repeats = 1 if quick else 3
    ecg_runs: dict[str, Callable[[], object]] = {
        "dyadsync detect_r_peaks (one call)": lambda: detect_r_peaks(ecg, ecg_fs_hz),
        "dyadsync HeartRateProcessor (one call)": lambda: HeartRateProcessor(ecg_fs_hz).push(
            np.arange(ecg.size) / ecg_fs_hz, ecg
        ),
        "dyadsync HeartRateProcessor (1 s chunks)": lambda: in_chunks(
            HeartRateProcessor(ecg_fs_hz).push, ecg, ecg_fs_hz, chunk_s=1.0
        ),
        f"dyadsync HeartRateProcessor ({CHUNK_S:g} s chunks)": lambda: in_chunks(
            HeartRateProcessor(ecg_fs_hz).push, ecg, ecg_fs_hz, chunk_s=CHUNK_S
        ),
        f"dyadsync HeartRateProcessor ({FAST_CHUNK_S:g} s chunks)": lambda: in_chunks(
            HeartRateProcessor(ecg_fs_hz).push, ecg, ecg_fs_hz, chunk_s=FAST_CHUNK_S
        ),
        "NeuroKit2 ecg_process (offline)": lambda: nk.ecg_process(ecg, sampling_rate=ecg_fs_hz),
    }
    eda_runs = eda_runs_at(eda, eda_fs_hz, nk)
    eda32_fs_hz = 32.0
    eda32 = signal.resample_poly(eda, 8, 25)  # 100 Hz -> 32 Hz
    eda32_runs = eda_runs_at(eda32, eda32_fs_hz, nk)
    rows = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # NeuroKit2 warns about its own defaults
        for signal_name, x, fs_hz, runs, n_repeats in (
            ("ECG", ecg, ecg_fs_hz, ecg_runs, repeats),
            ("EDA", eda, eda_fs_hz, eda_runs, EDA_REPEATS),
            ("EDA32", eda32, eda32_fs_hz, eda32_runs, EDA_REPEATS),
        ):
            for name, run in runs.items():
                seconds = best_time(run, repeats=n_repeats)
                rows.append(Row(signal_name, name, x.size, fs_hz, seconds))
    return rows


def print_table(rows: list[Row]) -> None:
    header = (
        f"{'signal':<6} {'implementation':<44} {'samples':>9} {'CPU s':>8} {'samples/s':>12} "
        f"{'x real time':>12} {'vs NeuroKit2':>13}"
    )
    print(header)
    print("-" * len(header))
    for row in rows:
        baseline = next(
            r for r in rows if r.signal == row.signal and r.implementation.startswith("NeuroKit2")
        )
        print(
            f"{row.signal:<6} {row.implementation:<44} {row.n_samples:>9} {row.seconds:>8.3f} "
            f"{row.n_samples / row.seconds:>12.0f} {row.x_real_time:>12.0f} "
            f"{baseline.seconds / row.seconds:>12.1f}x"
        )
    for row in rows:
        if row.implementation.startswith("dyadsync"):
            verdict = "met" if row.x_real_time >= TARGET_X_REAL_TIME else "NOT met"
            print(
                f"target {TARGET_X_REAL_TIME:.0f}x real time {verdict}: {row.signal} "
                f"{row.implementation} ({row.x_real_time:.0f}x)"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick", action="store_true", help="2 minutes of each signal, one ECG run"
    )
    args = parser.parse_args()
    print_table(measure(quick=args.quick))


if __name__ == "__main__":
    main()

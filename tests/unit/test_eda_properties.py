"""Property tests of the streaming EDA chain: chunk invariance and garbage input (hypothesis)."""

from __future__ import annotations

import itertools

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from dsp.eda import EdaConfig, EdaOutput, EdaProcessor
from dsp.eda_quality import EdaQuality
from dsp.types import FloatArray
from tests.unit.test_eda import concat_outputs, synthetic_eda

FS_CHOICES = (4.0, 32.0, 100.0, 250.0)


def run_chunked(
    processor: EdaProcessor, t_s: FloatArray, x_us: FloatArray, cuts: list[int]
) -> dict[str, object]:
    bounds = [0, *sorted(set(cuts)), t_s.size]
    outputs: list[EdaOutput] = [
        processor.push(t_s[a:b], x_us[a:b]) for a, b in itertools.pairwise(bounds)
    ]
    return concat_outputs(outputs)


def assert_same(got: dict[str, object], expected: dict[str, object]) -> None:
    for key in ("t", "scl", "phasic", "valid", "quality"):
        np.testing.assert_array_equal(got[key], expected[key], err_msg=key)
    assert got["scrs"] == expected["scrs"]


@st.composite
def corrupted_recording(draw: st.DrawFn) -> tuple[float, FloatArray, FloatArray]:
    """Synthetic EDA with SCRs and noise, then NaN runs, drops to 0 uS, stuck values and
    timestamp gaps at random places."""
    fs_hz = draw(st.sampled_from(FS_CHOICES))
    duration_s = draw(st.floats(20.0, 60.0))
    scrs = draw(st.lists(st.tuples(st.floats(1.0, 55.0), st.floats(0.01, 1.5)), max_size=6))
    t_s, x_us = synthetic_eda(fs_hz, duration_s, scrs, noise_us=0.003, seed=draw(st.integers(0, 9)))
    x_us = x_us.copy()
    n = t_s.size
    for kind in draw(st.lists(st.sampled_from(["nan", "zero", "stuck", "gap"]), max_size=4)):
        start = draw(st.integers(0, n - 1))
        # Short corruptions (1-3 samples) fall between grid samples: the hard case.
        length = draw(st.one_of(st.integers(1, 3), st.integers(1, int(8 * fs_hz))))
        stop = min(n, start + length)
        if kind == "nan":
            x_us[start:stop] = np.nan
        elif kind == "zero":
            x_us[start:stop] = 0.0
        elif kind == "stuck":
            x_us[start:stop] = x_us[start]
        else:
            t_s = np.where(np.arange(n) >= start, t_s + draw(st.floats(0.1, 10.0)), t_s)
    return fs_hz, t_s, x_us


@settings(max_examples=60, deadline=None)
@given(data=corrupted_recording(), cut_fractions=st.lists(st.floats(0.0, 1.0), max_size=12))
def test_any_chunking_equals_one_shot(
    data: tuple[float, FloatArray, FloatArray], cut_fractions: list[float]
) -> None:
    fs_hz, t_s, x_us = data
    expected = run_chunked(EdaProcessor(fs_hz), t_s, x_us, [])
    cuts = [int(f * t_s.size) for f in cut_fractions]
    assert_same(run_chunked(EdaProcessor(fs_hz), t_s, x_us, cuts), expected)


@settings(max_examples=30, deadline=None)
@given(data=corrupted_recording(), chunk=st.integers(1, 7))
def test_sample_by_sample_equals_one_shot_other_grid(
    data: tuple[float, FloatArray, FloatArray], chunk: int
) -> None:
    fs_hz, t_s, x_us = data
    t_s, x_us = t_s[:1500], x_us[:1500]  # tiny chunks: keep the test fast
    config = EdaConfig(min_amplitude_us=0.01, settle_s=2.0)
    expected = run_chunked(EdaProcessor(fs_hz, grid_hz=10.0, config=config), t_s, x_us, [])
    cuts = list(range(chunk, t_s.size, chunk))
    got = run_chunked(EdaProcessor(fs_hz, grid_hz=10.0, config=config), t_s, x_us, cuts)
    assert_same(got, expected)


garbage_values = hnp.arrays(
    np.float64,
    st.integers(0, 400),
    elements=st.one_of(
        st.floats(allow_nan=True, allow_infinity=True),
        st.floats(0.0, 30.0),
        st.just(0.0),
    ),
)


@settings(max_examples=80, deadline=None)
@given(
    values=garbage_values,
    steps=st.lists(st.floats(1e-3, 20.0), min_size=400, max_size=400),
    fs_hz=st.sampled_from(FS_CHOICES),
    cut_fractions=st.lists(st.floats(0.0, 1.0), max_size=6),
)
def test_garbage_is_flagged_never_crashes_never_silently_wrong(
    values: FloatArray, steps: list[float], fs_hz: float, cut_fractions: list[float]
) -> None:
    t_s = 5.0 + np.cumsum(np.asarray(steps[: values.size], dtype=np.float64))
    processor = EdaProcessor(fs_hz)
    cuts = [int(f * values.size) for f in cut_fractions]
    got = run_chunked(processor, t_s, values, cuts)
    assert_same(got, run_chunked(EdaProcessor(fs_hz), t_s, values, []))

    grid_t = np.asarray(got["t"])
    valid = np.asarray(got["valid"])
    quality = np.asarray(got["quality"])
    k = np.rint(grid_t * processor.grid_hz)
    assert np.array_equal(grid_t, k / processor.grid_hz)
    assert np.all(np.diff(grid_t) > 0)
    if grid_t.size:
        assert grid_t[0] > t_s[0] and grid_t[-1] <= t_s[-1]
    assert np.array_equal(valid, quality == EdaQuality.OK)
    assert set(np.unique(quality).tolist()) <= {int(q) for q in EdaQuality}
    for key in ("scl", "phasic"):
        series = np.asarray(got[key])
        assert np.isfinite(series[valid]).all()
        assert np.isnan(series[~valid]).all()
        assert np.all(np.abs(series[valid]) < 1e3)
    assert processor.nonfinite_count == int(np.count_nonzero(~np.isfinite(values)))
    for scr in got["scrs"]:  # type: ignore[attr-defined]
        assert scr.onset_t_s < scr.peak_t_s
        assert scr.amplitude_us >= processor.config.min_amplitude_us
        # Every grid sample from onset to peak was valid.
        inside = (grid_t >= scr.onset_t_s) & (grid_t <= scr.peak_t_s)
        assert valid[inside].all()


def test_scr_peak_on_an_exact_plateau_does_not_depend_on_chunking() -> None:
    """A flat-topped phasic peak: one call and one-sample-per-call report the same peak."""
    from dsp.eda import _ScrDetector

    phasic = np.array([0.0, 0.01, 0.05, 0.1, 0.1, 0.1, 0.05, 0.0, -0.01])

    def run(chunk: int) -> list[tuple[int, int, float]]:
        detector = _ScrDetector(hysteresis_us=0.02, onset_slope_fraction=0.05, history_len=32)
        found = []
        for start in range(0, phasic.size, chunk):
            part = phasic[start : start + chunk]
            found += detector.process(start, part, part)
        return found

    one_shot = run(phasic.size)
    assert one_shot and one_shot[0][1] == 3  # the first sample of the plateau
    assert run(1) == one_shot
    assert run(2) == one_shot

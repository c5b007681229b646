"""SynchronyEngine: chunk invariance, quality gating, lag convention, garbage input, config."""

from __future__ import annotations

import itertools
import json
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dsp.exceptions import ConfigError, SignalError
from dsp.significance import SurrogateConfig
from dsp.synchrony import LAG_CONVENTION, Reason, SynchronyConfig, SynchronyEngine, SynchronyOutput
from dsp.types import FloatArray, SampleStatus

GRID_HZ = 4.0
# Small windows so surrogates are available after ~40 s and tests stay fast.
SMALL = SynchronyConfig(
    window_s=10.0,
    lag_s=2.0,
    surrogates=SurrogateConfig(n_surrogates=19, min_shift_s=6.0, history_s=40.0),
)
SMALL_SPAN_N = 48  # (10 s + 2 s) * 4 Hz


def ar1(rng: np.random.Generator, n: int, *, tau_n: float = 8.0) -> FloatArray:
    decay = math.exp(-1.0 / tau_n)
    x = np.empty(n)
    x[0] = rng.normal()
    noise = rng.normal(size=n) * math.sqrt(1 - decay**2)
    for i in range(1, n):
        x[i] = decay * x[i - 1] + noise[i]
    return x


def dyad(seed: int, n: int, *, delay_n: int = 8, coupling: float = 0.9) -> tuple[FloatArray, ...]:
    """Therapist AR(1) 'heart rate'; client partly copies it ``delay_n`` samples later."""
    rng = np.random.default_rng(seed)
    therapist = ar1(rng, n + delay_n)
    own = ar1(rng, n)
    client = coupling * therapist[:n] + math.sqrt(1 - coupling**2) * own
    return 70 + 5 * therapist[delay_n:], 80 + 5 * client


def run(engine: SynchronyEngine, k: np.ndarray, a: FloatArray, b: FloatArray, ok: np.ndarray):
    return engine.push(t_s=k / GRID_HZ, therapist=a, client=b, valid=ok)


def as_dicts(outputs: list[SynchronyOutput]) -> tuple[list[dict], list[dict]]:
    updates = [u.to_dict() for out in outputs for u in out.updates]
    events = [e.to_dict() for out in outputs for e in out.events]
    return updates, events


@settings(max_examples=12, deadline=None)
@given(seed=st.integers(0, 1000), cuts=st.lists(st.integers(0, 900), max_size=25))
def test_output_does_not_depend_on_chunking(seed: int, cuts: list[int]) -> None:
    rng = np.random.default_rng(seed)
    n = 900
    a, b = dyad(seed, n)
    k = np.arange(n) + 4000
    keep = np.ones(n, dtype=bool)
    keep[rng.integers(0, n, 3)] = False  # single missing grid samples (gaps)
    keep[500:530] = False  # a longer gap
    ok = rng.uniform(size=n) > 0.005
    a[rng.integers(0, n, 2)] = np.nan
    k, a, b, ok = k[keep], a[keep], b[keep], ok[keep]
    whole = as_dicts([run(SynchronyEngine(GRID_HZ, config=SMALL), k, a, b, ok)])
    engine = SynchronyEngine(GRID_HZ, config=SMALL)
    edges = [0, *sorted({c % (k.size + 1) for c in cuts}), k.size]
    parts = [
        run(engine, k[lo:hi], a[lo:hi], b[lo:hi], ok[lo:hi]) for lo, hi in itertools.pairwise(edges)
    ]
    assert as_dicts(parts) == whole
    assert len(whole[0]) == int(np.sum(k % 4 == 0))


def test_quality_gating_reasons() -> None:
    n = 1200
    a, b = dyad(1, n)
    k = np.arange(n)
    ok = np.ones(n, dtype=bool)
    ok[700] = False  # flagged by the DSP
    b[900] = np.inf  # garbage value
    keep = (k < 400) | (k >= 410)  # 10 grid samples never arrived
    out = run(SynchronyEngine(GRID_HZ, config=SMALL), k[keep], a[keep], b[keep], ok[keep])
    reason = {round(u.t_s * GRID_HZ): u.reason for u in out.updates}
    valid = {round(u.t_s * GRID_HZ): u.estimate_valid for u in out.updates}
    first_full = SMALL_SPAN_N - 1  # window [k - 47, k] needs k >= 47

    def window_touches(index: int, k_end: int) -> bool:
        return k_end - SMALL_SPAN_N + 1 <= index <= k_end

    for k_end in reason:
        if k_end < first_full:
            assert reason[k_end] == Reason.WARMING_UP and not valid[k_end]
        elif any(window_touches(i, k_end) for i in range(400, 410)):
            assert reason[k_end] == Reason.GAP and not valid[k_end]
        elif window_touches(700, k_end) or window_touches(900, k_end):
            assert reason[k_end] == Reason.BAD_SIGNAL and not valid[k_end]
        else:
            assert valid[k_end], k_end
    assert 400 not in reason and 404 not in reason  # updates only for samples that arrived
    for u in out.updates:
        if not u.estimate_valid:
            assert math.isnan(u.r_lag0) and math.isnan(u.p_value) and u.state == ""


def test_status_says_why_there_is_no_estimate_naming_the_newest_cause() -> None:
    """MISSING samples are a gap (with updates at them), SETTLING ones "reconnected"; a window
    holding several causes names the newest, the one the estimate still waits for."""
    n = 1000
    a, b = dyad(2, n)
    status = np.zeros(n, dtype=np.int8)
    status[300:380] = SampleStatus.MISSING  # sensor away 20 s ...
    status[380:400] = SampleStatus.SETTLING  # ... then its restarted processor settles
    status[600:610] = SampleStatus.SETTLING
    status[620] = SampleStatus.BAD_SIGNAL
    status[800:804] = SampleStatus.BAD_SIGNAL
    status[810:814] = SampleStatus.MISSING
    k = np.arange(n)
    engine = SynchronyEngine(GRID_HZ, config=SMALL)
    out = engine.push(t_s=k / GRID_HZ, therapist=a, client=b, valid=status == 0, status=status)
    reason = {round(u.t_s * GRID_HZ): u.reason for u in out.updates}
    assert sorted(reason) == list(range(0, n, 4))  # an update at every step, missing or not

    def expected(k_end: int) -> str:
        window = status[max(0, k_end - SMALL_SPAN_N + 1) : k_end + 1]
        if k_end < SMALL_SPAN_N - 1:
            return "warming up"
        bad = np.flatnonzero(window)
        if bad.size == 0:
            return ""
        return {1: "bad signal", 2: "reconnected", 3: "gap"}[int(window[bad[-1]])]

    for k_end, got in reason.items():
        # With an estimate but no null yet the reason is about significance: no cause.
        assert ("" if got.startswith("null") else got) == expected(k_end), k_end
    # Spot checks independent of the helper: during the absence, right after it, and later.
    assert reason[340] == "gap" and reason[392] == "reconnected" and reason[420] == "reconnected"
    assert reason[612] == "reconnected" and reason[640] == "bad signal"
    assert reason[808] == "bad signal" and reason[816] == "gap"
    assert Reason.RECONNECTED.value == "reconnected"


def test_status_with_causes_is_chunk_invariant_and_validated() -> None:
    n = 600
    a, b = dyad(3, n)
    rng = np.random.default_rng(3)
    status = rng.choice(np.array([0, 0, 0, 0, 1, 2, 3], dtype=np.int8), size=n)
    k = np.arange(n)

    def push(engine: SynchronyEngine, lo: int, hi: int) -> SynchronyOutput:
        return engine.push(
            t_s=k[lo:hi] / GRID_HZ,
            therapist=a[lo:hi],
            client=b[lo:hi],
            valid=status[lo:hi] == 0,
            status=status[lo:hi],
        )

    whole = as_dicts([push(SynchronyEngine(GRID_HZ, config=SMALL), 0, n)])
    engine = SynchronyEngine(GRID_HZ, config=SMALL)
    edges = [0, 1, 7, 100, 101, 333, 590, n]
    parts = [push(engine, lo, hi) for lo, hi in itertools.pairwise(edges)]
    assert as_dicts(parts) == whole
    engine = SynchronyEngine(GRID_HZ, config=SMALL)
    ok = np.ones(2, dtype=bool)
    with pytest.raises(SignalError, match="SampleStatus values"):
        engine.push(
            t_s=k[:2] / GRID_HZ,
            therapist=a[:2],
            client=b[:2],
            valid=ok,
            status=np.array([0, 9], dtype=np.int8),
        )
    with pytest.raises(SignalError, match="one SampleStatus code per sample"):
        engine.push(
            t_s=k[:2] / GRID_HZ,
            therapist=a[:2],
            client=b[:2],
            valid=ok,
            status=np.zeros(3, dtype=np.int8),
        )
    # Rejected pushes changed nothing.
    assert as_dicts([push(engine, 0, n)]) == whole


def test_estimates_equal_direct_correlation_and_lag_convention() -> None:
    """Client copies the therapist 2 s later: positive lag, therapist leads, coupled."""
    n = 1200
    a, b = dyad(2, n, delay_n=8)
    out = run(SynchronyEngine(GRID_HZ, config=SMALL), np.arange(n), a, b, np.ones(n, dtype=bool))
    assert "client follows the therapist" in LAG_CONVENTION
    late = [u for u in out.updates if u.t_s > 150]
    assert all(u.estimate_valid and u.reason == "" for u in late)
    for u in late[::25]:
        k_end = round(u.t_s * GRID_HZ)
        start = k_end - SMALL_SPAN_N + 1
        r0 = np.corrcoef(a[start : start + 40], b[start : start + 40])[0, 1]
        assert u.r_lag0 == pytest.approx(r0, abs=1e-9)
        r_best = np.corrcoef(a[start : start + 40], b[start + 8 : start + 48])[0, 1]
        assert u.peak_z == pytest.approx(math.atanh(r_best), abs=1e-9)
    assert np.median([u.best_lag_s for u in late]) == 2.0
    coupled = [u for u in late if u.state == "coupled"]
    assert len(coupled) > 0.9 * len(late)
    assert all(u.leader == "therapist" for u in coupled)
    assert np.median([u.p_value for u in late]) <= 0.05


def test_anti_phase_with_client_leading() -> None:
    n = 1200
    a, b = dyad(3, n, delay_n=6)
    out = run(SynchronyEngine(GRID_HZ, config=SMALL), np.arange(n), -b, a, np.ones(n, dtype=bool))
    late = [u for u in out.updates if u.t_s > 150]
    anti = [u for u in late if u.state == "anti_phase"]
    assert len(anti) > 0.9 * len(late)
    assert all(u.leader == "client" for u in anti)
    assert np.median([u.best_lag_s for u in late]) == -1.5
    starts = [e for e in out.events if e.kind == "start"]
    assert starts and starts[0].state == "anti_phase" and starts[0].leader == "client"


def test_flat_signal_is_no_estimate() -> None:
    n = 400
    a, _ = dyad(4, n)
    out = run(
        SynchronyEngine(GRID_HZ, config=SMALL), np.arange(n), a, np.full(n, 72.0), np.ones(n, bool)
    )
    assert {u.reason for u in out.updates} == {Reason.WARMING_UP, Reason.FLAT_SIGNAL}


def test_updates_and_summary_are_json_ready() -> None:
    n = 1200
    a, b = dyad(5, n)
    engine = SynchronyEngine(GRID_HZ, config=SMALL)
    out = run(engine, np.arange(n), a, b, np.ones(n, dtype=bool))
    text = json.dumps({**out.to_dict(), "summary": engine.summary().to_dict()}, allow_nan=False)
    back = json.loads(text)
    assert back["updates"][0]["r_lag0"] is None  # warming up: NaN -> None
    assert back["updates"][0]["reason"] == "warming up"
    assert isinstance(back["updates"][-1]["surrogate_z"], float)
    summary = engine.summary()
    assert summary.entries == sum(1 for e in out.events if e.kind == "start")
    assert (
        math.isfinite(summary.susy_effect_size) and summary.susy_effect_size > 0.5
    )  # all-lags mean: diluted but clearly > 0
    assert sum(summary.time_in_state_s.values()) == pytest.approx(len(out.updates))


def test_empty_push_and_garbage_times() -> None:
    engine = SynchronyEngine(GRID_HZ, config=SMALL)
    empty = np.empty(0)
    assert run(engine, empty, empty, empty, np.empty(0, dtype=bool)) == SynchronyOutput()
    a, b = dyad(6, 300)
    k = np.arange(300)
    ok = np.ones(300, dtype=bool)
    reference = as_dicts([run(SynchronyEngine(GRID_HZ, config=SMALL), k, a, b, ok)])
    run(engine, k[:100], a[:100], b[:100], ok[:100])
    with pytest.raises(SignalError, match="strictly increase"):
        run(engine, k[99:150], a[99:150], b[99:150], ok[99:150])  # repeats k = 99
    with pytest.raises(SignalError, match="strictly increase"):
        run(engine, k[[150, 149]], a[:2], b[:2], ok[:2])
    with pytest.raises(SignalError, match="grid"):
        engine.push(t_s=np.array([100.1 / GRID_HZ]), therapist=a[:1], client=b[:1], valid=ok[:1])
    with pytest.raises(SignalError, match="finite"):
        engine.push(t_s=np.array([np.nan]), therapist=a[:1], client=b[:1], valid=ok[:1])
    with pytest.raises(SignalError, match="equal length"):
        engine.push(t_s=k[100:102] / GRID_HZ, therapist=a[:2], client=b[:3], valid=ok[:2])
    # Rejected pushes changed nothing: the rest continues as if they never happened.
    rest = run(engine, k[100:], a[100:], b[100:], ok[100:])
    first = run(SynchronyEngine(GRID_HZ, config=SMALL), k[:100], a[:100], b[:100], ok[:100])
    assert as_dicts([first, rest]) == reference


def test_config_from_tables_and_errors() -> None:
    config = SynchronyConfig(surrogates={"n_surrogates": 199}, episodes={"z_enter": 3.0})  # type: ignore[arg-type]
    assert config.surrogates.n_surrogates == 199
    assert config.episodes.z_enter == 3.0
    with pytest.raises(ConfigError, match="surrogates"):
        SynchronyConfig(surrogates={"n_surrogate": 99})  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="window_s"):
        SynchronyConfig(window_s=2.0)
    with pytest.raises(ConfigError, match="lag_s"):
        SynchronyConfig(lag_s=20.0)
    with pytest.raises(ConfigError, match="step_s"):
        SynchronyEngine(GRID_HZ, config=SynchronyConfig(step_s=0.3))


GARBAGE = st.sampled_from([np.nan, np.inf, -np.inf, 1e300, -1e300, 0.0, 72.0])


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    garbage=st.lists(st.tuples(st.integers(0, 599), st.booleans(), GARBAGE), max_size=30),
    gaps=st.lists(st.tuples(st.integers(0, 599), st.integers(1, 200)), max_size=4),
    invalid=st.lists(st.integers(0, 599), max_size=20),
    chunk=st.integers(1, 97),
)
def test_garbage_never_crashes_nor_gives_a_wrong_number(
    seed: int,
    garbage: list[tuple[int, bool, float]],
    gaps: list[tuple[int, int]],
    invalid: list[int],
    chunk: int,
) -> None:
    n = 600
    a, b = dyad(seed, n)
    k = np.arange(n)
    ok = np.ones(n, dtype=bool)
    ok[invalid] = False
    for index, on_therapist, value in garbage:
        (a if on_therapist else b)[index] = value
    keep = np.ones(n, dtype=bool)
    for start, length in gaps:
        keep[start : start + length] = False
    k, a, b, ok = k[keep], a[keep], b[keep], ok[keep]
    clean = ok & (np.abs(a) < 1e6) & (np.abs(b) < 1e6)
    engine = SynchronyEngine(GRID_HZ, config=SMALL)
    updates = [
        u
        for lo in range(0, k.size, chunk)
        for u in run(
            engine, k[lo : lo + chunk], a[lo : lo + chunk], b[lo : lo + chunk], ok[lo : lo + chunk]
        ).updates
    ]
    received = set(k.tolist())
    clean_k = set(k[clean].tolist())
    for u in updates:
        end = round(u.t_s * GRID_HZ)
        window = range(end - SMALL_SPAN_N + 1, end + 1)
        if u.estimate_valid:
            # Only from windows of received, clean samples; numbers in range.
            assert all(i in clean_k for i in window)
            assert -1.0 <= u.r_lag0 <= 1.0 and math.isfinite(u.peak_z)
            assert math.isnan(u.p_value) or 0.0 < u.p_value <= 1.0
        else:
            assert u.reason in {r.value for r in Reason} - {""}
            assert math.isnan(u.r_lag0) and math.isnan(u.surrogate_z)
            if all(i in received for i in window) and window.start >= k[0]:
                assert u.reason != Reason.GAP
    summary = engine.summary()
    assert summary.entries >= summary.exits >= 0


def test_clock_origin_does_not_matter() -> None:
    """Negative or huge LSL times (grid index offsets that are multiples of the step)."""
    a, b = dyad(7, 500)
    ok = np.ones(500, dtype=bool)
    results = []
    for offset in (-400, 0, 4_000_000):
        out = run(SynchronyEngine(GRID_HZ, config=SMALL), np.arange(500) + offset, a, b, ok)
        results.append([{**u.to_dict(), "t_s": None, "window_center_s": None} for u in out.updates])
    assert results[0] == results[1] == results[2]

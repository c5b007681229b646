"""GridAligner: pairs by grid index from data time alone; a clock only through advance()."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dsp.align import AlignedSamples, GridAligner
from dsp.exceptions import SignalError
from dsp.types import GridSamples, Role, SampleStatus

GRID_HZ = 4.0
OK, BAD, SETTLING, MISSING = (int(s) for s in SampleStatus)
CLIENT_OFFSET = 1000.0  # client values are k + 1000, therapist values k


def grid(first_k: int, n: int, *, offset: float = 0.0, valid: bool = True) -> GridSamples:
    k = np.arange(first_k, first_k + n)
    return GridSamples(k / GRID_HZ, k.astype(np.float64) + offset, np.full(n, valid))


def ks_of(out: AlignedSamples) -> list[int]:
    return np.rint(out.t_s * GRID_HZ).astype(int).tolist()


def test_releases_an_index_only_when_both_people_have_it() -> None:
    aligner = GridAligner(grid_hz=GRID_HZ, max_wait_s=5.0)
    assert len(aligner.push(Role.THERAPIST, grid(0, 4))) == 0
    out = aligner.push(Role.CLIENT, grid(0, 2, offset=100.0))
    np.testing.assert_array_equal(out.t_s, [0.0, 0.25])
    np.testing.assert_array_equal(out.therapist, [0.0, 1.0])
    np.testing.assert_array_equal(out.client, [100.0, 101.0])
    assert out.valid.all() and out.status.tolist() == [OK, OK]


def test_a_person_who_moved_past_an_index_is_missing_there() -> None:
    aligner = GridAligner(grid_hz=GRID_HZ, max_wait_s=1.0)
    aligner.push(Role.THERAPIST, grid(0, 10))
    assert ks_of(aligner.push(Role.CLIENT, grid(0, 2))) == [0, 1]
    # The client's next sample is k=5: it will never send 2..4, whatever the wait.
    out = aligner.push(Role.CLIENT, grid(5, 2))
    assert ks_of(out) == [2, 3, 4, 5, 6]
    assert out.status.tolist() == [MISSING, MISSING, MISSING, OK, OK]
    assert out.valid.tolist() == [False, False, False, True, True]
    np.testing.assert_array_equal(out.therapist, [2, 3, 4, 5, 6])  # what the therapist had


def test_a_silent_person_is_released_missing_only_by_the_callers_clock() -> None:
    aligner = GridAligner(grid_hz=GRID_HZ, max_wait_s=1.0)
    aligner.push(Role.CLIENT, grid(0, 2))
    # However far the therapist runs ahead, data alone never gives up on the client.
    assert ks_of(aligner.push(Role.THERAPIST, grid(0, 200))) == [0, 1]
    # advance releases grid times < now - max_wait_s: t < 1.0 s, i.e. k = 2, 3.
    out = aligner.advance(now_s=2.0)
    assert ks_of(out) == [2, 3] and out.status.tolist() == [MISSING, MISSING]
    assert len(aligner.advance(now_s=2.0)) == 0
    assert len(aligner.advance(now_s=1.0)) == 0  # a clock going back releases nothing
    # A late client sample for a released index is dropped; a newer one is paired.
    out = aligner.push(Role.CLIENT, grid(3, 3, offset=CLIENT_OFFSET))
    assert ks_of(out) == [4, 5] and out.status.tolist() == [OK, OK]
    np.testing.assert_array_equal(out.client, [1004.0, 1005.0])


def test_advance_never_releases_beyond_the_data() -> None:
    aligner = GridAligner(grid_hz=GRID_HZ, max_wait_s=1.0)
    assert len(aligner.advance(now_s=100.0)) == 0  # nothing held yet
    aligner.push(Role.THERAPIST, grid(0, 3))
    assert ks_of(aligner.advance(now_s=100.0)) == [0, 1, 2]


def test_flush_releases_everything_held() -> None:
    aligner = GridAligner(grid_hz=GRID_HZ)
    aligner.push(Role.THERAPIST, grid(0, 6))
    aligner.push(Role.CLIENT, grid(0, 3))
    out = aligner.flush()
    assert ks_of(out) == [3, 4, 5] and out.status.tolist() == [MISSING] * 3
    assert len(aligner.flush()) == 0


def test_causes_combine_to_the_larger_status() -> None:
    aligner = GridAligner(grid_hz=GRID_HZ)
    therapist = np.array([OK, SETTLING, BAD, OK, OK], dtype=np.int8)
    client = np.array([BAD, BAD, OK, OK, SETTLING], dtype=np.int8)
    aligner.push(Role.THERAPIST, grid(0, 5, valid=False), status=therapist)
    out = aligner.push(Role.CLIENT, grid(0, 5, valid=False), status=client)
    # A code of OK on an invalid sample is no cause: it counts as bad signal.
    assert out.status.tolist() == [BAD, SETTLING, BAD, BAD, SETTLING]


def test_status_must_be_one_known_code_per_sample() -> None:
    aligner = GridAligner(grid_hz=GRID_HZ)
    with pytest.raises(SignalError, match="one SampleStatus code per sample"):
        aligner.push(Role.THERAPIST, grid(0, 3), status=np.zeros(2, dtype=np.int8))
    with pytest.raises(SignalError, match="SampleStatus values"):
        aligner.push(Role.THERAPIST, grid(0, 1), status=np.array([7], dtype=np.int8))


def test_bad_signal_on_either_side_marks_the_pair_invalid() -> None:
    aligner = GridAligner(grid_hz=GRID_HZ)
    aligner.push(Role.THERAPIST, grid(0, 3, valid=False))
    out = aligner.push(Role.CLIENT, grid(0, 3))
    assert not out.valid.any() and out.status.tolist() == [BAD] * 3


def test_nan_values_are_never_valid() -> None:
    aligner = GridAligner(grid_hz=GRID_HZ)
    samples = GridSamples(np.array([0.0]), np.array([np.nan]), np.array([True]))
    aligner.push(Role.THERAPIST, samples)
    out = aligner.push(Role.CLIENT, grid(0, 1))
    assert out.valid.tolist() == [False] and out.status.tolist() == [BAD]


def test_time_going_back_within_a_person_is_dropped() -> None:
    aligner = GridAligner(grid_hz=GRID_HZ)
    aligner.push(Role.THERAPIST, grid(0, 10))
    aligner.push(Role.THERAPIST, grid(5, 10, offset=0.5))  # clock reset: 5..9 again, then on
    out = aligner.push(Role.CLIENT, grid(0, 15, offset=CLIENT_OFFSET))
    np.testing.assert_array_equal(out.therapist, [*range(10), *np.arange(10, 15) + 0.5])


@pytest.mark.parametrize("therapist_first", [True, False])
def test_session_start_does_not_depend_on_who_comes_first(therapist_first: bool) -> None:
    aligner = GridAligner(grid_hz=GRID_HZ)
    pushes = [(Role.THERAPIST, grid(10, 5)), (Role.CLIENT, grid(7, 8, offset=CLIENT_OFFSET))]
    outs = [aligner.push(role, s) for role, s in (pushes if therapist_first else pushes[::-1])]
    out = outs[-1]
    assert len(outs[0]) == 0
    assert ks_of(out) == list(range(7, 15))
    assert out.status.tolist() == [MISSING] * 3 + [OK] * 5


def test_held_data_beyond_the_cap_is_force_released_and_counted() -> None:
    aligner = GridAligner(grid_hz=GRID_HZ, max_wait_s=1.0, max_hold_s=2.0)  # holds 8 samples
    out = aligner.push(Role.THERAPIST, grid(0, 20))
    assert ks_of(out) == list(range(12)) and out.status.tolist() == [MISSING] * 12
    np.testing.assert_array_equal(out.therapist, np.arange(12))
    assert aligner.forced_n == 12
    assert len(aligner.push(Role.CLIENT, grid(11, 1))) == 0  # released already: dropped
    assert aligner.forced_n == 12  # ... as data late for advance() would be, not counted


def test_a_start_more_than_the_cap_before_the_newest_sample_is_dropped_and_counted() -> None:
    aligner = GridAligner(grid_hz=GRID_HZ, max_wait_s=1.0, max_hold_s=2.0)  # holds 8 samples
    aligner.push(Role.THERAPIST, grid(20, 8))
    out = aligner.push(Role.CLIENT, grid(19, 3))  # 19 cannot be held with 27; 20, 21 can
    assert aligner.forced_n == 1
    assert ks_of(out) == [20, 21] and out.status.tolist() == [OK, OK]


def test_rejects_nonsense_configuration() -> None:
    with pytest.raises(SignalError, match="grid_hz"):
        GridAligner(grid_hz=0.0)
    with pytest.raises(SignalError, match="max_wait_s"):
        GridAligner(grid_hz=4.0, max_wait_s=float("nan"))  # was a bare ValueError from round()
    with pytest.raises(SignalError, match="max_hold_s"):
        GridAligner(grid_hz=4.0, max_wait_s=10.0, max_hold_s=5.0)
    with pytest.raises(SignalError, match="now_s"):
        GridAligner(grid_hz=4.0).advance(now_s=float("inf"))


person = st.dictionaries(
    st.integers(0, 80), st.sampled_from([OK, OK, OK, BAD, SETTLING]), min_size=1
)


def samples_of(codes: dict[int, int], offset: float) -> tuple[GridSamples, np.ndarray]:
    ks = np.array(sorted(codes), dtype=np.int64)
    status = np.array([codes[k] for k in ks.tolist()], dtype=np.int8)
    return GridSamples(ks / GRID_HZ, ks.astype(np.float64) + offset, status == OK), status


@settings(max_examples=150, deadline=None)
@given(
    therapist=person,
    client=person,
    cuts=st.lists(st.integers(0, 100), max_size=12),
    order=st.lists(st.booleans(), max_size=40),
)
def test_any_chunking_and_interleaving_gives_the_pairing_of_the_whole(
    therapist: dict[int, int], client: dict[int, int], cuts: list[int], order: list[bool]
) -> None:
    """Oracle: every index from the first to the last sample of either person, each person
    present with their code or missing, the pair taking the larger code."""
    feeds = {
        Role.THERAPIST: samples_of(therapist, 0.0),
        Role.CLIENT: samples_of(client, CLIENT_OFFSET),
    }
    chunks: dict[Role, list[tuple[GridSamples, np.ndarray]]] = {}
    for index, (role, (samples, status)) in enumerate(feeds.items()):
        n = len(samples)
        edges = [0, *sorted({c % (n + 1) for c in cuts[index::2]}), n]
        chunks[role] = [
            (
                GridSamples(samples.t_s[lo:hi], samples.values[lo:hi], samples.valid[lo:hi]),
                status[lo:hi],
            )
            for lo, hi in itertools.pairwise(edges)
        ]
    aligner = GridAligner(grid_hz=GRID_HZ)
    outs = []
    picks = iter(order)
    while chunks[Role.THERAPIST] or chunks[Role.CLIENT]:
        role = Role.THERAPIST if next(picks, True) else Role.CLIENT
        if not chunks[role]:
            role = Role.CLIENT if role is Role.THERAPIST else Role.THERAPIST
        samples, status = chunks[role].pop(0)
        outs.append(aligner.push(role, samples, status=status))
    outs.append(aligner.flush())
    ks = [k for out in outs for k in ks_of(out)]
    first, last = min(*therapist, *client), max(*therapist, *client)
    assert ks == list(range(first, last + 1))
    expected = [max(therapist.get(k, MISSING), client.get(k, MISSING)) for k in ks]
    assert np.concatenate([o.status for o in outs]).tolist() == expected
    therapist_values = np.concatenate([o.therapist for o in outs])
    client_values = np.concatenate([o.client for o in outs])
    for i, k in enumerate(ks):
        if k in therapist:
            assert therapist_values[i] == k
        if k in client:
            assert client_values[i] == k + CLIENT_OFFSET
    assert aligner.forced_n == 0

"""GridAligner: pairs by grid index, waits a bounded time, never computes across a gap."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dsp.align import GridAligner
from dsp.exceptions import SignalError
from dsp.types import GridSamples, Role

GRID_HZ = 4.0


def grid(first_k: int, n: int, *, offset: float = 0.0, valid: bool = True) -> GridSamples:
    k = np.arange(first_k, first_k + n)
    return GridSamples(k / GRID_HZ, k.astype(np.float64) + offset, np.full(n, valid))


def test_releases_an_index_only_when_both_people_have_it() -> None:
    aligner = GridAligner(grid_hz=GRID_HZ, max_wait_s=5.0)
    assert len(aligner.push(Role.THERAPIST, grid(0, 4))) == 0
    out = aligner.push(Role.CLIENT, grid(0, 2, offset=100.0))
    np.testing.assert_array_equal(out.t_s, [0.0, 0.25])
    np.testing.assert_array_equal(out.therapist, [0.0, 1.0])
    np.testing.assert_array_equal(out.client, [100.0, 101.0])
    assert out.valid.all()


def test_silent_person_is_released_invalid_after_the_wait() -> None:
    aligner = GridAligner(grid_hz=GRID_HZ, max_wait_s=1.0)  # 4 grid samples
    aligner.push(Role.CLIENT, grid(0, 2))
    out = aligner.push(Role.THERAPIST, grid(0, 10))
    # indices 0,1 paired; 2..5 released once the therapist is 4 samples past them
    np.testing.assert_array_equal(out.t_s * GRID_HZ, np.arange(6))
    np.testing.assert_array_equal(out.valid, [True, True, False, False, False, False])


def test_bad_signal_on_either_side_marks_the_pair_invalid() -> None:
    aligner = GridAligner(grid_hz=GRID_HZ)
    aligner.push(Role.THERAPIST, grid(0, 3, valid=False))
    out = aligner.push(Role.CLIENT, grid(0, 3))
    assert not out.valid.any()


def test_nan_values_are_never_valid() -> None:
    aligner = GridAligner(grid_hz=GRID_HZ)
    samples = GridSamples(np.array([0.0]), np.array([np.nan]), np.array([True]))
    aligner.push(Role.THERAPIST, samples)
    out = aligner.push(Role.CLIENT, grid(0, 1))
    assert out.valid.tolist() == [False]


def test_rejects_nonsense_configuration() -> None:
    with pytest.raises(SignalError, match="grid_hz"):
        GridAligner(grid_hz=0.0)
    with pytest.raises(SignalError, match="max_wait_s"):
        GridAligner(grid_hz=4.0, max_wait_s=float("nan"))  # was a bare ValueError from round()


@settings(max_examples=50, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(list(Role)), st.integers(1, 7)), min_size=1, max_size=30))
def test_output_is_ordered_unique_and_paired_correctly(pushes: list[tuple[Role, int]]) -> None:
    aligner = GridAligner(grid_hz=GRID_HZ, max_wait_s=1.0)
    next_k = {Role.THERAPIST: 0, Role.CLIENT: 0}
    released = []
    for role, n in pushes:
        offset = 0.0 if role is Role.THERAPIST else 1000.0
        out = aligner.push(role, grid(next_k[role], n, offset=offset))
        next_k[role] += n
        released.append(out)
    ks = np.concatenate([np.rint(o.t_s * GRID_HZ) for o in released])
    assert np.all(np.diff(ks) == 1)
    valid = np.concatenate([o.valid for o in released])
    therapist = np.concatenate([o.therapist for o in released])
    client = np.concatenate([o.client for o in released])
    # every valid pair holds the right values for its index
    np.testing.assert_array_equal(therapist[valid], ks[valid])
    np.testing.assert_array_equal(client[valid], ks[valid] + 1000.0)

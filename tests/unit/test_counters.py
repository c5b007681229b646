from __future__ import annotations

import numpy as np

from dsp.counters import SampleCounterCheck


def test_counts_lost_and_duplicated_across_chunks() -> None:
    check = SampleCounterCheck()
    check.push(np.array([0, 1, 2], dtype=np.int64))
    check.push(np.array([], dtype=np.int64))
    check.push(np.array([5, 6], dtype=np.int64))  # 3 and 4 lost
    check.push(np.array([6, 7], dtype=np.int64))  # 6 again
    assert (check.received, check.lost, check.duplicated, check.last) == (7, 2, 1, 7)


def test_first_chunk_may_start_anywhere() -> None:
    check = SampleCounterCheck()
    check.push(np.array([1000, 1001], dtype=np.int64))
    assert (check.lost, check.duplicated) == (0, 0)


def counts(check: SampleCounterCheck) -> tuple[int, int, int, int]:
    return check.received, check.lost, check.duplicated, check.restarts


def test_a_restarted_source_is_neither_lost_nor_duplicated() -> None:
    """Issue 9: a source killed and restarted counts from its start again in a new segment
    (here the inlet missed the new outlet's first 20 samples)."""
    check = SampleCounterCheck()
    check.push(np.arange(0, 500, dtype=np.int64), segment=0)
    check.push(np.arange(20, 480, dtype=np.int64), segment=1)
    assert counts(check) == (960, 0, 0, 1) and check.last == 479
    # Counting goes on within the new segment: a real loss and a real duplicate.
    check.push(np.array([479, 482, 483], dtype=np.int64), segment=1)
    assert counts(check) == (963, 2, 1, 1)


def test_a_clock_break_with_a_continuing_counter_is_not_a_restart() -> None:
    check = SampleCounterCheck()
    check.push(np.arange(0, 500, dtype=np.int64), segment=0)
    check.push(np.arange(500, 600, dtype=np.int64), segment=1)  # continues
    check.push(np.arange(610, 620, dtype=np.int64), segment=2)  # continues, 10 lost
    assert counts(check) == (610, 10, 0, 0)


def test_a_small_step_back_at_a_new_segment_is_duplicates_not_a_restart() -> None:
    check = SampleCounterCheck()
    check.push(np.arange(1000, 1500, dtype=np.int64), segment=0)
    check.push(np.arange(1490, 1510, dtype=np.int64), segment=1)  # 1490..1499 again
    assert counts(check) == (520, 0, 10, 0)
    # Halfway between the run's first (1000) and the newest counter (1509) is a restart...
    check.push(np.array([1254, 1255], dtype=np.int64), segment=2)
    assert check.restarts == 1 and check.duplicated == 10
    # ... and later restarts are judged against the new run, not the old one.
    check.push(np.arange(1256, 1300, dtype=np.int64), segment=2)
    check.push(np.array([1280], dtype=np.int64), segment=3)  # above the midpoint 1276.5: duplicate
    assert check.restarts == 1 and check.duplicated == 11


def test_a_segment_change_is_judged_at_its_first_counter_not_at_an_empty_chunk() -> None:
    check = SampleCounterCheck()
    check.push(np.arange(0, 100, dtype=np.int64), segment=0)
    check.push(np.array([], dtype=np.int64), segment=1)
    check.push(np.arange(0, 10, dtype=np.int64), segment=1)
    assert counts(check) == (110, 0, 0, 1)
    # Without a segment change the same drop is 10 duplicates.
    same = SampleCounterCheck()
    same.push(np.arange(0, 100, dtype=np.int64))
    same.push(np.arange(0, 10, dtype=np.int64))
    assert counts(same) == (110, 0, 10, 0)


def test_duplicates_do_not_depend_on_chunking() -> None:
    """A replayed stretch counts every replayed sample (one per chunk was the old count)."""
    counters = np.concatenate([np.arange(0, 100), np.arange(60, 120)]).astype(np.int64)
    for chunk in (1, 7, 160):
        check = SampleCounterCheck()
        for lo in range(0, counters.size, chunk):
            check.push(counters[lo : lo + chunk])
        assert (check.lost, check.duplicated, check.last) == (0, 40, 119), chunk

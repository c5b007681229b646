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

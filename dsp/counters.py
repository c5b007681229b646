"""Sample-counter bookkeeping: proves end to end that no sample was lost or duplicated.

Every dyadsync test stream (and the simulator) carries a counter channel that increments
by one per sample. Comparing consecutive counters tells lost samples (a jump forward) from
duplicates or replays (a counter not above the last one).
"""

from __future__ import annotations

import numpy as np

from dsp.types import IntArray


class SampleCounterCheck:
    """Running tally of received, lost and duplicated samples for one stream."""

    __slots__ = ("duplicated", "last", "lost", "received")

    def __init__(self) -> None:
        self.received = 0
        self.lost = 0
        self.duplicated = 0
        self.last: int | None = None

    def push(self, counters: IntArray) -> None:
        """Account for one chunk of counter values (any length, including 0)."""
        if counters.size == 0:
            return
        self.received += int(counters.size)
        # The first counter ever seen counts as one step after its predecessor.
        previous = counters[0] - 1 if self.last is None else self.last
        steps = np.diff(counters, prepend=previous)
        self.lost += int(np.sum(steps[steps > 1] - 1))
        self.duplicated += int(np.count_nonzero(steps < 1))
        newest = int(counters.max())
        self.last = newest if self.last is None else max(newest, self.last)

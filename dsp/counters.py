"""Sample-counter bookkeeping: proves end to end that no sample was lost or duplicated.

Every dyadsync test stream (and the simulator) carries a counter channel that increments
by one per sample. Comparing consecutive counters tells lost samples (a jump forward) from
duplicates or replays (a counter not above the last one).

A new segment (``Frame.segment`` changed) is either a restarted source (a reconnect to a new
outlet, whose counter starts again) or a clock break of the same source (counter continues).
The segment number alone cannot tell them apart, the counter values can: see
:meth:`SampleCounterCheck.push`.
"""

from __future__ import annotations

import numpy as np

from dsp.types import IntArray


class SampleCounterCheck:
    """Running tally of received, lost and duplicated samples for one stream.

    ``restarts`` counts new segments judged to be a restarted source (counter baseline
    reset); ``last`` is the newest counter of the current run (since the last restart).
    """

    __slots__ = ("_run_first", "_segment", "duplicated", "last", "lost", "received", "restarts")

    def __init__(self) -> None:
        self.received = 0
        self.lost = 0
        self.duplicated = 0
        self.restarts = 0
        self.last: int | None = None
        self._run_first: int | None = None  # first counter of the current run
        self._segment: int | None = None

    def push(self, counters: IntArray, *, segment: int = 0) -> None:
        """Account for one chunk of counter values (any length, including 0) of ``segment``.

        Within a segment every counter not above the newest one so far is a duplicate and
        every value skipped above it a lost sample. At the first counter of a new segment: if
        it dropped back below the newest counter to at most halfway between the run's first
        counter and the newest one, the source restarted (its counter began again; a
        re-delivered chunk only steps back a little): nothing is lost or duplicated across it
        and counting starts afresh. Otherwise it is a continuation (a clock break of the same
        source), judged like any other counter, so a jump forward still counts the samples
        lost in between.
        """
        if counters.size == 0:
            return  # a segment change is judged at its first counter
        first = int(counters[0])
        new_segment = self._segment is not None and segment != self._segment
        self._segment = segment
        if (
            self.last is None
            or self._run_first is None
            or (new_segment and self._restarted(first, self.last, self._run_first))
        ):
            if self.last is not None:
                self.restarts += 1
            # The first counter of a run counts as one step after its predecessor.
            self.last = first - 1
            self._run_first = first
        self.received += int(counters.size)
        # Each counter against the newest one before it (not merely its predecessor), so a
        # replayed stretch counts every replayed sample, whatever the chunking.
        newest_before = np.maximum.accumulate(np.concatenate(([self.last], counters[:-1])))
        steps = counters - newest_before
        self.lost += int(np.sum(steps[steps > 1] - 1))
        self.duplicated += int(np.count_nonzero(steps < 1))
        self.last = max(int(counters.max()), self.last)

    @staticmethod
    def _restarted(first: int, last: int, run_first: int) -> bool:
        return first < last and 2 * (first - run_first) <= last - run_first

"""A preallocated multi-row sample buffer addressed by absolute sample index.

Streaming detectors need the last few hundred milliseconds of several derived signals as
*contiguous* arrays so that per-chunk work stays vectorised. A circular buffer would split
windows at the wrap point, so this is a linear buffer with a write index: new samples are
written after the previous ones, and when the storage is full the most recent ``keep``
samples are copied to the front (one ``memmove`` every ``capacity - keep`` samples, never a
per-chunk ``np.roll`` or reallocation).
"""

from __future__ import annotations

import numpy as np

from dsp.exceptions import SignalError
from dsp.types import FloatArray


class SlidingBuffer:
    """``n_rows`` float64 signals sharing one absolute sample index.

    At least the newest ``keep`` samples are always retained. :meth:`append` accepts at most
    :attr:`max_append` samples per call; callers feed longer inputs in pieces.
    """

    __slots__ = ("_data", "_first_index", "_keep", "_length")

    def __init__(self, *, n_rows: int, keep: int, max_append: int) -> None:
        if n_rows < 1 or keep < 1 or max_append < 1:
            raise SignalError(
                f"SlidingBuffer needs n_rows, keep, max_append >= 1, got {n_rows}, {keep}, "
                f"{max_append}"
            )
        self._data: FloatArray = np.zeros((n_rows, keep + max_append), dtype=np.float64)
        self._keep = keep
        self._first_index = 0  # absolute index of column 0
        self._length = 0  # number of filled columns

    @property
    def max_append(self) -> int:
        """Largest number of samples one :meth:`append` call accepts."""
        return int(self._data.shape[1]) - self._keep

    @property
    def end_index(self) -> int:
        """Absolute index one past the newest sample."""
        return self._first_index + self._length

    @property
    def oldest_index(self) -> int:
        """Absolute index of the oldest sample still held."""
        return self._first_index

    def append(self, rows: FloatArray) -> None:
        """Append ``rows`` (shape ``(n_rows, n)``, ``n <= max_append``) after the newest sample."""
        self.extend(int(rows.shape[1]))[:] = rows

    def extend(self, n_new: int) -> FloatArray:
        """Add ``n_new <= max_append`` columns after the newest sample and return them as a
        writable ``(n_rows, n_new)`` view, so callers compute straight into the buffer. The
        columns hold stale values until written; the view is valid until the next extend."""
        capacity = int(self._data.shape[1])
        if n_new > capacity - self._keep:
            raise SignalError(f"append of {n_new} samples exceeds max_append={self.max_append}")
        if self._length + n_new > capacity:
            n_kept = min(self._keep, self._length)
            self._data[:, :n_kept] = self._data[:, self._length - n_kept : self._length]
            self._first_index += self._length - n_kept
            self._length = n_kept
        start = self._length
        self._length += n_new
        return self._data[:, start : self._length]

    def skip_to(self, index: int) -> None:
        """Advance the end to absolute ``index``; skipped samples hold NaN and must not be read."""
        n_skipped = index - self.end_index
        if n_skipped < 0:
            raise SignalError(f"cannot skip back from {self.end_index} to {index}")
        if n_skipped > self._keep:
            self._first_index = index
            self._length = 0
            return
        while n_skipped > 0:
            n = min(n_skipped, self.max_append)
            self.extend(n).fill(np.nan)
            n_skipped -= n

    def view(self, row: int, start_index: int, stop_index: int) -> FloatArray:
        """Samples ``[start_index, stop_index)`` of one row (a view: do not write to it)."""
        first = self._first_index  # locals, not properties: several calls per pushed chunk
        if start_index < first or stop_index > first + self._length:
            raise SignalError(
                f"samples [{start_index}, {stop_index}) are not held (held: "
                f"[{first}, {self.end_index}))"
            )
        return self._data[row, start_index - first : stop_index - first]

    def value(self, row: int, index: int) -> float:
        """One sample of one row."""
        first = self._first_index
        if not first <= index < first + self._length:
            raise SignalError(f"sample {index} is not held (held: [{first}, {self.end_index}))")
        return float(self._data[row, index - first])

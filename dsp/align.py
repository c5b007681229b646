"""Pairing two people's grid series by grid index, driven by data time.

Both people's derived signals are on the same grid (``t_k = k / grid_hz``), but they reach
the pipeline at different moments (different devices, chunk sizes and detection delays).
:class:`GridAligner` holds each person's samples in a preallocated ring indexed by ``k`` and
releases index ``k`` from the data alone: once each person either has ``k`` or has already
sent a later index. Each person's samples are time-ordered (within a segment, and samples
that go back are dropped, see :meth:`GridAligner.push`), so a person who moved past ``k``
without it never will send it: that person is *missing* at ``k``. Because no wall clock and
no frame boundary enters this rule, the released series is the same for any chunking and
any interleaving of the two people's frames (a replay at full speed reproduces the live run).

Liveness (a sensor that went silent must not stall the other person's estimates) needs a
clock, so it is explicit: the live service calls :meth:`GridAligner.advance` with the
current time; replays and offline analysis only call :meth:`GridAligner.flush` at the end.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from dsp.exceptions import SignalError
from dsp.types import (
    BoolArray,
    FloatArray,
    GridSamples,
    Role,
    SampleStatus,
    StatusArray,
    checked_status,
)

_ROLES = (Role.THERAPIST, Role.CLIENT)
# Ring code of a slot holding no sample (SampleStatus codes are >= 0).
_ABSENT = -1
#: Default bound on held data without :meth:`GridAligner.advance`: longer than any session.
DEFAULT_MAX_HOLD_S = 6 * 3600.0


@dataclass(frozen=True, slots=True)
class AlignedSamples:
    """Paired grid samples. ``valid`` is False where ``status`` is not OK: either person
    missing, settling or flagged bad (the pair takes the larger :class:`SampleStatus`)."""

    t_s: FloatArray
    therapist: FloatArray
    client: FloatArray
    valid: BoolArray
    status: StatusArray

    def __len__(self) -> int:
        return int(self.t_s.shape[0])

    def __getitem__(self, part: slice) -> AlignedSamples:
        return AlignedSamples(
            self.t_s[part],
            self.therapist[part],
            self.client[part],
            self.valid[part],
            self.status[part],
        )


class GridAligner:
    """Aligns therapist and client :class:`GridSamples` of one derived signal.

    Release rules (see the module docstring): by data in :meth:`push`; by the caller's clock
    in :meth:`advance` (indices older than ``now_s - max_wait_s``); everything in
    :meth:`flush`. Once an index was released, samples for it are dropped.

    Held data is bounded by ``max_hold_s`` (default 6 h of grid samples, preallocated).
    Without :meth:`advance` it can only be reached when one person's data runs more than
    ``max_hold_s`` ahead of the other's (or the other never sends anything). The rule then
    is *force-release*, never an error, so a live session cannot crash or stall on it: a
    sample that does not fit releases the oldest held indices as :meth:`advance` would (absent
    people missing), and a sample older than ``max_hold_s`` before the newest held one is
    dropped. :attr:`forced_n` counts both, so the overflow is visible; outputs are chunking-
    and interleaving-invariant whenever it stays 0.
    """

    __slots__ = (
        "_capacity",
        "_grid_hz",
        "_latest_k",
        "_next_k",
        "_released_any",
        "_status",
        "_values",
        "_wait_s",
        "forced_n",
    )

    def __init__(
        self,
        *,
        grid_hz: float,
        max_wait_s: float = 10.0,
        max_hold_s: float = DEFAULT_MAX_HOLD_S,
    ) -> None:
        if not all(math.isfinite(x) and x > 0 for x in (grid_hz, max_wait_s, max_hold_s)):
            raise SignalError(
                f"grid_hz ({grid_hz}), max_wait_s ({max_wait_s}) and max_hold_s ({max_hold_s})"
                " must be finite and > 0"
            )
        if max_hold_s <= max_wait_s:
            raise SignalError(
                f"max_hold_s ({max_hold_s}) must exceed max_wait_s ({max_wait_s}): the live "
                "clock releases data after max_wait_s, the hold bound is only a backstop"
            )
        self._grid_hz = grid_hz
        self._wait_s = max_wait_s
        self._capacity = max(1, round(max_hold_s * grid_hz))
        self._values = np.full((2, self._capacity), np.nan)
        self._status = np.full((2, self._capacity), _ABSENT, dtype=np.int8)
        self._next_k: int | None = None  # oldest index not released yet
        self._released_any = False
        self._latest_k: list[int | None] = [None, None]
        self.forced_n = 0

    def push(
        self, role: Role, samples: GridSamples, *, status: StatusArray | None = None
    ) -> AlignedSamples:
        """Add one person's new grid samples; return every index that became final.

        ``status`` (optional, one :class:`SampleStatus` code per sample) says why invalid
        samples are invalid; without it invalid samples are ``BAD_SIGNAL``. A valid sample
        with a non-finite value is ``BAD_SIGNAL``. Samples at or before this person's newest
        index (time going back, e.g. a clock reset) are dropped: keeping them would make the
        result depend on what the other person had sent by then.
        """
        side = _ROLES.index(role)
        other = 1 - side
        codes = self._codes(samples, status)
        released: list[tuple[int, float, float, int]] = []
        ks = np.rint(samples.t_s * self._grid_hz).astype(np.int64)
        for k, value, code in zip(ks.tolist(), samples.values.tolist(), codes, strict=True):
            latest = self._latest_k[side]
            if latest is not None and k <= latest:
                continue
            if self._next_k is None:
                self._next_k = k
            if k < self._next_k:
                if self._released_any:
                    continue  # released already (advance/flush): its wait is over
                newest = self._newest_k()
                if newest is not None and newest - k >= self._capacity:
                    self.forced_n += 1
                    continue
                self._next_k = k  # nothing released yet: the session starts earlier
            if k - self._next_k >= self._capacity:
                # This person has moved past every index below k.
                other_latest = self._latest_k[other]
                if other_latest is not None:
                    released.extend(self._release_through(min(k - 1, other_latest)))
                while k - self._next_k >= self._capacity:
                    self.forced_n += 1
                    released.append(self._release())
            slot = k % self._capacity
            self._values[side, slot] = value
            self._status[side, slot] = code
            self._latest_k[side] = k
        therapist_k, client_k = self._latest_k
        if therapist_k is not None and client_k is not None:
            released.extend(self._release_through(min(therapist_k, client_k)))
        return _to_aligned(released, self._grid_hz)

    def advance(self, *, now_s: float) -> AlignedSamples:
        """Release every held index with grid time ``< now_s - max_wait_s`` (people without
        a sample there are missing). ``now_s`` is the caller's clock on the LSL time axis;
        only the live service calls this, every loop step."""
        if not math.isfinite(now_s):
            raise SignalError(f"now_s must be finite, got {now_s!r}")
        # Largest k with k / grid_hz < now_s - max_wait_s.
        through = math.ceil((now_s - self._wait_s) * self._grid_hz) - 1
        newest = self._newest_k()
        last_k = None if newest is None else min(through, newest)
        return _to_aligned(self._release_through(last_k), self._grid_hz)

    def flush(self) -> AlignedSamples:
        """End of stream: release everything held (absent people missing)."""
        return _to_aligned(self._release_through(self._newest_k()), self._grid_hz)

    def _codes(self, samples: GridSamples, status: StatusArray | None) -> list[int]:
        finite = np.isfinite(samples.values)
        if status is None:
            ok = samples.valid & finite
            return np.where(ok, SampleStatus.OK, SampleStatus.BAD_SIGNAL).tolist()
        codes = checked_status(status, samples.t_s.shape)
        # Valid but not finite, or invalid without a cause: bad signal.
        bad = (codes == SampleStatus.OK) & ~(samples.valid & finite)
        return np.where(bad, SampleStatus.BAD_SIGNAL, codes).tolist()

    def _newest_k(self) -> int | None:
        """Newest index held by anyone (None before the first sample)."""
        known = [k for k in self._latest_k if k is not None]
        return max(known) if known else None

    def _release_through(self, last_k: int | None) -> list[tuple[int, float, float, int]]:
        out = []
        while self._next_k is not None and last_k is not None and self._next_k <= last_k:
            out.append(self._release())
        return out

    def _release(self) -> tuple[int, float, float, int]:
        assert self._next_k is not None
        k = self._next_k
        slot = k % self._capacity
        codes = self._status[:, slot]
        # Absent on a side means that person is missing at k.
        code = max(SampleStatus.MISSING if c == _ABSENT else int(c) for c in codes.tolist())
        row = (k, float(self._values[0, slot]), float(self._values[1, slot]), code)
        self._status[:, slot] = _ABSENT
        self._values[:, slot] = np.nan
        self._next_k = k + 1
        self._released_any = True
        return row


def _to_aligned(rows: list[tuple[int, float, float, int]], grid_hz: float) -> AlignedSamples:
    if not rows:
        empty = np.empty(0)
        return AlignedSamples(
            empty, empty, empty, np.empty(0, dtype=np.bool_), np.empty(0, dtype=np.int8)
        )
    ks, therapist, client, codes = zip(*rows, strict=True)
    status = np.asarray(codes, dtype=np.int8)
    return AlignedSamples(
        t_s=np.asarray(ks, dtype=np.float64) / grid_hz,
        therapist=np.asarray(therapist),
        client=np.asarray(client),
        valid=status == SampleStatus.OK,
        status=status,
    )

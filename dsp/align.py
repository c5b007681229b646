"""Pairing two people's grid series by grid index, with a bounded wait for the slower one.

Both people's derived signals are on the same grid (``t_k = k / grid_hz``), but they reach
the pipeline at different moments (different devices, chunk sizes and detection delays).
:class:`GridAligner` holds each person's samples in a preallocated ring indexed by ``k``
and releases index ``k`` once both people have it — or, when one person has been silent for
``max_wait_s`` while the other moved on (dropout, gap), releases it marked invalid so the
synchrony engine says "no estimate" instead of everything stalling.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from dsp.exceptions import SignalError
from dsp.types import BoolArray, FloatArray, GridSamples, Role

_ROLES = (Role.THERAPIST, Role.CLIENT)


@dataclass(frozen=True, slots=True)
class AlignedSamples:
    """Grid samples present for both people; ``valid`` is False where either is missing/bad."""

    t_s: FloatArray
    therapist: FloatArray
    client: FloatArray
    valid: BoolArray

    def __len__(self) -> int:
        return int(self.t_s.shape[0])

    def __getitem__(self, part: slice) -> AlignedSamples:
        return AlignedSamples(
            self.t_s[part], self.therapist[part], self.client[part], self.valid[part]
        )


class GridAligner:
    """Aligns therapist and client :class:`GridSamples` of one derived signal."""

    __slots__ = (
        "_capacity",
        "_grid_hz",
        "_latest_k",
        "_next_k",
        "_present",
        "_valid",
        "_values",
        "_wait",
    )

    def __init__(self, *, grid_hz: float, max_wait_s: float = 10.0) -> None:
        if not all(math.isfinite(x) and x > 0 for x in (grid_hz, max_wait_s)):
            raise SignalError(
                f"grid_hz ({grid_hz}) and max_wait_s ({max_wait_s}) must be finite and > 0"
            )
        self._grid_hz = grid_hz
        self._wait = max(1, round(max_wait_s * grid_hz))
        self._capacity = 2 * self._wait + 1
        self._values = np.full((2, self._capacity), np.nan)
        self._valid = np.zeros((2, self._capacity), dtype=np.bool_)
        self._present = np.zeros((2, self._capacity), dtype=np.bool_)
        self._next_k: int | None = None
        self._latest_k: list[int | None] = [None, None]

    def push(self, role: Role, samples: GridSamples) -> AlignedSamples:
        """Add one person's new grid samples; return every index that became final."""
        side = _ROLES.index(role)
        released: list[tuple[int, float, float, bool]] = []
        ks = np.rint(samples.t_s * self._grid_hz).astype(np.int64)
        for k, value, valid in zip(
            ks.tolist(), samples.values.tolist(), samples.valid.tolist(), strict=True
        ):
            if self._next_k is None:
                self._next_k = k
            if k < self._next_k:
                continue  # older than what was already released: the wait for it has expired
            while k - self._next_k >= self._capacity:
                released.append(self._release())
            slot = k % self._capacity
            self._values[side, slot] = value
            self._valid[side, slot] = valid and math.isfinite(value)
            self._present[side, slot] = True
            latest = self._latest_k[side]
            self._latest_k[side] = k if latest is None else max(latest, k)
        released.extend(self._drain())
        return _to_aligned(released, self._grid_hz)

    def _drain(self) -> list[tuple[int, float, float, bool]]:
        out = []
        newest = max((k for k in self._latest_k if k is not None), default=None)
        while self._next_k is not None and newest is not None and self._next_k <= newest:
            slot = self._next_k % self._capacity
            both = self._present[0, slot] and self._present[1, slot]
            if not both and newest - self._next_k < self._wait:
                break
            out.append(self._release())
        return out

    def _release(self) -> tuple[int, float, float, bool]:
        assert self._next_k is not None
        k = self._next_k
        slot = k % self._capacity
        both = bool(self._present[0, slot] and self._present[1, slot])
        valid = both and bool(self._valid[0, slot] and self._valid[1, slot])
        row = (k, float(self._values[0, slot]), float(self._values[1, slot]), valid)
        self._present[:, slot] = False
        self._valid[:, slot] = False
        self._values[:, slot] = np.nan
        self._next_k = k + 1
        return row


def _to_aligned(rows: list[tuple[int, float, float, bool]], grid_hz: float) -> AlignedSamples:
    if not rows:
        empty = np.empty(0)
        return AlignedSamples(empty, empty, empty, np.empty(0, dtype=np.bool_))
    ks, therapist, client, valid = zip(*rows, strict=True)
    return AlignedSamples(
        t_s=np.asarray(ks, dtype=np.float64) / grid_hz,
        therapist=np.asarray(therapist),
        client=np.asarray(client),
        valid=np.asarray(valid, dtype=np.bool_),
    )

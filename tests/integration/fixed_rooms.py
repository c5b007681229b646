"""A fixed room directory for tests that serve hubs they built themselves (the service's
own directory, :class:`server.rooms.Rooms`, builds its rooms from session plans)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from server.ws import RoomChannel


class FixedRooms:
    """Every room always serving (a :class:`server.ws.RoomDirectory`)."""

    def __init__(self, channels: Mapping[str, RoomChannel]) -> None:
        self._channels = dict(channels)

    def names(self) -> Sequence[str]:
        return list(self._channels)

    def channel(self, name: str) -> RoomChannel | None:
        return self._channels.get(name)

    def state(self, name: str) -> str:
        return "running"

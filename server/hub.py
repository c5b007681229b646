"""Fan-out of protocol messages to many consumers without ever waiting on the slowest.

Each consumer (websocket client, MQTT bridge, recorder) gets its own bounded
:class:`ConsumerQueue`. Publishing is synchronous and O(consumers): it never awaits. When
a queue is full, the oldest *droppable* message (the high-rate ``physio`` batches) goes
first; ``sync``/``episode``/``status`` messages are only dropped when a consumer is so far
behind that even those overflow. Every drop is counted and reported in ``health``.

Each message is encoded to JSON at most once, however many consumers send it
(:class:`Published` caches its text), and the drop count is cumulative over the
session: a slow client's drops still count after it has left.
"""

from __future__ import annotations

import asyncio
from collections import deque

from server.protocol import Message, encode

# High-rate messages a slow client can lose without losing meaning (the next batch
# supersedes them); everything else is an event a client must see if at all possible.
DROPPABLE_TYPES = frozenset({"physio", "health"})


class Published:
    """One published message, shared by every queue and the backlog; its JSON text is
    encoded on first use and then reused by every consumer that sends text."""

    __slots__ = ("_text", "message")

    def __init__(self, message: Message) -> None:
        self.message = message
        self._text: str | None = None

    @property
    def type(self) -> str:
        return str(self.message.get("type"))

    @property
    def text(self) -> str:
        if self._text is None:
            self._text = encode(self.message)
        return self._text


class ConsumerQueue:
    """Bounded per-consumer queue with a drop-oldest-droppable policy."""

    __slots__ = (
        "_droppable",
        "_droppable_max",
        "_events",
        "_events_max",
        "_wakeup",
        "dropped",
        "name",
    )

    def __init__(self, *, name: str, max_droppable: int = 256, max_events: int = 1024) -> None:
        self.name = name
        self._droppable: deque[tuple[int, Published]] = deque()
        self._events: deque[tuple[int, Published]] = deque()
        self._droppable_max = max_droppable
        self._events_max = max_events
        self._wakeup = asyncio.Event()
        self.dropped = 0

    def __len__(self) -> int:
        return len(self._droppable) + len(self._events)

    def put(self, sequence: int, message: Published) -> None:
        """Never blocks; drops the oldest message of the same class when full."""
        if message.type in DROPPABLE_TYPES:
            target, limit = self._droppable, self._droppable_max
        else:
            target, limit = self._events, self._events_max
        if len(target) >= limit:
            target.popleft()
            self.dropped += 1
        target.append((sequence, message))
        self._wakeup.set()

    async def get(self) -> Published:
        """The oldest queued message across both classes, preserving publish order."""
        while not self._droppable and not self._events:
            self._wakeup.clear()
            await self._wakeup.wait()
        if not self._events or (self._droppable and self._droppable[0][0] < self._events[0][0]):
            return self._droppable.popleft()[1]
        return self._events.popleft()[1]


# What a client joining late (or reloading the page) is sent after ``hello`` so its plots
# show the recent past; health messages are superseded by the next one within seconds.
BACKLOG_TYPES = frozenset({"physio", "sync", "episode", "status", "recording"})


class Hub:
    """Publishes each message to every subscribed consumer queue.

    It also keeps the last ``backlog_s`` seconds (by message ``t``, at most
    ``backlog_max`` messages) of :data:`BACKLOG_TYPES` for clients that join late.
    """

    __slots__ = ("_backlog", "_backlog_s", "_consumers", "_departed_dropped", "published")

    def __init__(self, *, backlog_s: float = 300.0, backlog_max: int = 20_000) -> None:
        self._consumers: dict[str, ConsumerQueue] = {}
        self._backlog: deque[Published] = deque(maxlen=backlog_max)
        self._backlog_s = backlog_s
        self._departed_dropped = 0  # drops of consumers that have unsubscribed
        self.published = 0  # also each message's sequence number, for ConsumerQueue order

    def backlog(self) -> list[Published]:
        """The recent messages, oldest first (a copy: publishing goes on meanwhile)."""
        return list(self._backlog)

    def subscribe(self, name: str, **limits: int) -> ConsumerQueue:
        queue = ConsumerQueue(name=name, **limits)
        self._consumers[name] = queue
        return queue

    def unsubscribe(self, queue: ConsumerQueue) -> None:
        if self._consumers.pop(queue.name, None) is not None:
            self._departed_dropped += queue.dropped

    @property
    def consumer_count(self) -> int:
        return len(self._consumers)

    @property
    def dropped(self) -> int:
        """Messages dropped for slow consumers since the hub started, including the
        consumers that have left."""
        return self._departed_dropped + sum(q.dropped for q in self._consumers.values())

    def queue_depths(self) -> dict[str, int]:
        """Messages waiting per current consumer (for health and metrics)."""
        return {name: len(queue) for name, queue in self._consumers.items()}

    def publish(self, message: Message) -> None:
        self.published += 1
        published = Published(message)
        for queue in self._consumers.values():
            queue.put(self.published, published)
        if published.type in BACKLOG_TYPES:
            self._backlog.append(published)
            horizon = float(message["t"]) - self._backlog_s
            while self._backlog and float(self._backlog[0].message["t"]) < horizon:
                self._backlog.popleft()

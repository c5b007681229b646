"""The optional outputs of a service beside its websocket: the MQTT bridge and LSL outlets.

Each is a hub consumer with its own bounded queue, so none can slow a pipeline: an output
that falls behind (a broker gone) loses its own messages and counts them. They run as
tasks on the service's loop for as long as the service runs, and report their counters
per room for ``/health`` and ``/metrics`` (:class:`server.health.OutputHealth`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping
from dataclasses import dataclass

from server.health import OutputHealth
from server.lsl_outlets import DerivedOutlets
from server.mqtt_bridge import MqttBridge, MqttConfig
from server.rooms import Rooms, pipeline_config

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True, kw_only=True)
class OutputOptions:
    """Which outputs to run: ``mqtt`` (``--mqtt-host`` ...) and ``lsl`` (``--lsl-out``)."""

    mqtt: MqttConfig | None = None
    lsl: bool = False


class _Mqtt:
    """One broker connection for every room; its counters are the service's."""

    def __init__(self, bridge: MqttBridge) -> None:
        self._bridge = bridge

    async def run(self) -> None:
        await self._bridge.run()

    async def finish(self) -> None:
        """Nothing to drain: what is still queued when the service stops stays counted
        as queued (the broker may be away for longer than anyone should wait)."""

    def health(self, room: str) -> OutputHealth:
        stats = self._bridge.stats
        return OutputHealth(
            connected=stats.connected,
            messages_published=stats.published,
            messages_lost=stats.lost,
            reconnects=stats.reconnects,
        )


class _Lsl:
    """The derived-stream outlets of every room (their streams exist from the start)."""

    def __init__(self, outlets: Mapping[str, DerivedOutlets]) -> None:
        self._outlets = dict(outlets)

    async def run(self) -> None:
        await asyncio.gather(*(outlets.run() for outlets in self._outlets.values()))

    async def finish(self) -> None:
        """Forward what the rooms published last (queued), then close the outlets."""
        for outlets in self._outlets.values():
            await outlets.drain()
            outlets.close()

    def health(self, room: str) -> OutputHealth:
        stats = self._outlets[room].stats
        return OutputHealth(
            connected=True,  # an outlet has no connection to lose
            messages_published=sum(stats.samples_pushed.values()),
            messages_lost=stats.dropped_messages,
        )


class RunningOutputs:
    """The outputs' tasks; :meth:`stop` drains and ends them (after the rooms stopped)."""

    def __init__(self, rooms: Rooms, options: OutputOptions) -> None:
        outputs: dict[str, _Mqtt | _Lsl] = {}
        if options.lsl:
            outputs["lsl"] = _Lsl(
                {
                    room.name: DerivedOutlets(
                        hub=room.hub,
                        session=room.plan.session,
                        pipeline=pipeline_config(room.plan.session),
                    )
                    for room in rooms
                }
            )
        if options.mqtt is not None:
            hubs = {room.name: room.hub for room in rooms}
            outputs["mqtt"] = _Mqtt(MqttBridge(config=options.mqtt, rooms=hubs))
        self._outputs = outputs
        rooms.outputs.update(outputs)
        self._tasks = [asyncio.create_task(output.run()) for output in outputs.values()]
        for task in self._tasks:
            task.add_done_callback(_log_failure)

    async def stop(self) -> None:
        """End the tasks, then let each output finish (drain, close)."""
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):  # logged already
                await task
        for output in self._outputs.values():
            await output.finish()


def _log_failure(task: asyncio.Task[None]) -> None:
    # An output is a side channel: its failure is reported, and the rooms go on.
    if not task.cancelled() and task.exception() is not None:
        log.error("an output stopped: %s", task.exception(), exc_info=task.exception())

"""`dyadsync demo --lsl-out --mqtt-host ...`: the outputs wired from the command line.

The real command against a real mosquitto (started by the fixture): the websocket, the
MQTT topics and the derived LSL outlets carry the same heart-rate samples, and
``/health`` counts what each output published.
"""

from __future__ import annotations

import asyncio
import json
import math
import sys
import time
import urllib.request
import uuid
from pathlib import Path

import aiomqtt
import numpy as np
import pylsl
import pytest
from websockets.asyncio.client import connect

from tests.integration.mosquitto import Broker, free_port, mosquitto_fixture

__all__ = ["mosquitto_fixture"]  # the fixture, used by name below

pytestmark = [pytest.mark.integration, pytest.mark.timeout(150)]

DYADSYNC = str(Path(sys.executable).with_name("dyadsync"))
LISTEN_S = 12.0


def _hr_pairs(messages: list[dict[str, object]]) -> dict[float, float]:
    """(time stamp -> value) of the therapist's valid heart-rate samples."""
    pairs = {}
    for m in messages:
        if m["type"] == "physio" and m["role"] == "therapist" and m["signal"] == "hr":
            for t, v in zip(m["t_s"], m["values"], strict=True):  # type: ignore[call-overload]
                if v is not None:
                    pairs[round(float(t), 6)] = float(np.float32(v))
    return pairs


async def test_demo_publishes_the_same_samples_on_websocket_mqtt_and_lsl(
    mosquitto: Broker,
) -> None:
    ws_port, page_port = free_port(), free_port()
    prefix = f"test-outputs-{uuid.uuid4().hex[:6]}"
    demo = await asyncio.create_subprocess_exec(
        DYADSYNC, "demo", "--no-browser", "--duration", "45", "--source-prefix", prefix,
        "--ws-port", str(ws_port), "--dashboard-port", str(page_port), "--lsl-out",
        "--mqtt-host", "127.0.0.1", "--mqtt-port", str(mosquitto.port),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        assert demo.stdout is not None
        while not (line := (await demo.stdout.readline()).decode()).startswith("Websocket:"):
            assert line, "the demo ended before printing its URLs"
        ws_messages: list[dict[str, object]] = []
        mqtt_messages: list[dict[str, object]] = []

        async def websocket() -> None:
            async with connect(f"ws://127.0.0.1:{ws_port}/ws") as ws:
                async for raw in ws:
                    ws_messages.append(json.loads(raw))

        async def mqtt() -> None:
            async with aiomqtt.Client("127.0.0.1", mosquitto.port) as client:
                await client.subscribe("dyadsync/v1/demo/physio", qos=1)
                async for message in client.messages:
                    mqtt_messages.append(json.loads(bytes(message.payload)))

        def lsl() -> dict[float, float]:
            found = pylsl.resolve_byprop("source_id", "dyadsync-out/demo/therapist-hr", 1, 10.0)
            assert found, "the derived heart-rate outlet was not found"
            inlet = pylsl.StreamInlet(found[0])
            pairs: dict[float, float] = {}
            end = time.monotonic() + LISTEN_S
            while time.monotonic() < end:
                samples, stamps = inlet.pull_chunk(timeout=0.5)
                for sample, stamp in zip(samples, stamps, strict=True):
                    if not math.isnan(sample[0]):
                        pairs[round(stamp, 6)] = sample[0]
            inlet.close_stream()
            return pairs

        listeners = [asyncio.create_task(websocket()), asyncio.create_task(mqtt())]
        lsl_pairs = await asyncio.to_thread(lsl)
        with urllib.request.urlopen(f"http://127.0.0.1:{page_port}/health", timeout=10) as r:
            outputs = json.loads(r.read())["rooms"]["demo"]["outputs"]
        for task in listeners:
            task.cancel()
    finally:
        demo.terminate()
        _, stderr = await demo.communicate()
    assert demo.returncode == 0, stderr.decode()[-2000:]
    ws_pairs, mqtt_pairs = _hr_pairs(ws_messages), _hr_pairs(mqtt_messages)
    assert len(lsl_pairs) > 20 and len(mqtt_pairs) > 20, (len(lsl_pairs), len(mqtt_pairs))
    # What LSL and MQTT carried is what the websocket carried, sample for sample, over
    # the time all three listened.
    for other in (lsl_pairs, mqtt_pairs):
        common = set(other) & set(ws_pairs)
        assert len(common) > 20, (len(common), len(other), len(ws_pairs))
        assert [other[t] for t in sorted(common)] == [ws_pairs[t] for t in sorted(common)]
    assert outputs["mqtt"]["connected"] and outputs["mqtt"]["messages_published"] > 0, outputs
    assert outputs["lsl"]["messages_published"] > 0 and outputs["lsl"]["messages_lost"] == 0

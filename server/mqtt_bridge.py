"""Optional MQTT bridge: publishes each room's protocol messages to a broker (docs/mqtt.md).

One broker connection serves every room of the service. Each room's hub gives the bridge a
bounded :class:`~server.hub.ConsumerQueue`; while the broker is unreachable that queue is
simply not drained, so the pipeline never waits on the network, and what overflows it (or
was in flight when the connection broke) is counted as lost. The bridge reconnects with
capped exponential backoff for as long as it runs; a session never fails because of MQTT.

Topics, under ``topic_prefix`` (default ``dyadsync/v1``)::

    <prefix>/<room>/<type>               every hub message, payload = its protocol JSON
    <prefix>/<room>/state                retained: the room's current state (RoomState)
    <prefix>/service/<client_id>/online  retained "online"/"offline"; "offline" is also the
                                         connection's last will, so it appears when the
                                         service dies

``health`` messages (every 2 s per room) are published at most once per
``health_interval_s``. Logs name the broker, rooms and counts, never message contents or
credentials.
"""

from __future__ import annotations

import asyncio
import logging
import math
import ssl
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import aiomqtt
from aiomqtt.exceptions import MqttConnectError

from dsp.exceptions import ConfigError
from server.errors import ProtocolError
from server.exposure import is_loopback
from server.hub import ConsumerQueue, Hub, Published
from server.protocol import PROTOCOL_VERSION, Message, encode

log = logging.getLogger(__name__)

DEFAULT_TOPIC_PREFIX = "dyadsync/v1"
# Characters that would make a topic level a wildcard (or a C-string terminator); a room
# name or prefix containing them would publish somewhere no subscriber expects.
_TOPIC_WILDCARDS = ("+", "#", "\x00")
# The message types RoomState keeps; physio and health are a room's samples and counters.
_STATE_TYPES = frozenset({"sync", "episode", "status", "recording"})
_ONLINE = "online"
_OFFLINE = "offline"
# A clean shutdown says "offline" itself (the will only fires on an unclean end); this long
# at most, so stopping the service never hangs on a dead broker.
_GOODBYE_TIMEOUT_S = 1.0


def _readable_file(path: Path, *, flag: str, what: str) -> None:
    if not path.is_file():
        raise ConfigError(f"{flag} {str(path)!r}: no such file; give the path of {what}")
    try:
        with path.open("rb"):
            pass
    except OSError as exc:
        raise ConfigError(f"{flag} {str(path)!r}: cannot read {what} ({exc.strerror})") from None


def _check_topic_level(text: str, *, what: str) -> None:
    """``text`` must be usable as one or more literal topic levels."""
    if not text or text.startswith(("/", "$")) or text.endswith("/") or "//" in text:
        raise ConfigError(
            f"{what} {text!r} is not a topic path: it must be non-empty, must not start "
            "with '/' or '$', end with '/' or contain empty levels ('//')"
        )
    if any(char in text for char in _TOPIC_WILDCARDS):
        raise ConfigError(f"{what} {text!r} contains an MQTT wildcard ('+' or '#'); remove it")


@dataclass(frozen=True, slots=True, kw_only=True)
class MqttConfig:
    """Where and how the bridge publishes. Errors name the ``dyadsync run`` options.

    TLS is on when ``tls_ca`` (the CA file that signed the broker's certificate) is given;
    the broker's host name is then verified. ``tls_cert``/``tls_key`` add a client
    certificate. The password is read from ``password_file`` (first line), so it never
    appears on a command line. ``client_id`` defaults to ``dyadsync-<rooms>`` (stable across
    restarts, so the retained availability topic is reused, not multiplied).

    The remaining fields have no command-line option: ``health_interval_s`` (at most one
    ``health`` message per room this often; 0 publishes none), ``state_interval_s`` (the
    retained state is republished at most this often), ``reconnect_min_s``/
    ``reconnect_max_s`` (backoff after a failed or lost connection, doubling up to the cap:
    the cap bounds how long publishing takes to resume after the broker is back),
    ``timeout_s`` (connect and acknowledgement timeout) and the per-room queue limits while
    the broker is unreachable.
    """

    host: str
    port: int = 1883
    qos: int = 1
    username: str | None = None
    password_file: Path | None = None
    tls_ca: Path | None = None
    tls_cert: Path | None = None
    tls_key: Path | None = None
    topic_prefix: str = DEFAULT_TOPIC_PREFIX
    client_id: str | None = None
    keepalive_s: int = 15
    health_interval_s: float = 30.0
    state_interval_s: float = 1.0
    reconnect_min_s: float = 0.5
    reconnect_max_s: float = 5.0
    timeout_s: float = 5.0
    queue_max_physio: int = 256
    queue_max_events: int = 1024

    def __post_init__(self) -> None:
        if not self.host or self.host != self.host.strip() or "/" in self.host:
            raise ConfigError(
                f"--mqtt-host {self.host!r} is not a host name or address, e.g. 127.0.0.1"
            )
        if not 1 <= self.port <= 65535:
            raise ConfigError(
                f"--mqtt-port {self.port} is not in 1..65535 (1883 plain, 8883 usual for TLS)"
            )
        if self.qos not in (0, 1, 2):
            raise ConfigError(
                f"--mqtt-qos {self.qos} is not an MQTT QoS; use 0 (at most once), "
                "1 (at least once, the default) or 2 (exactly once)"
            )
        if self.username is not None and not self.username:
            raise ConfigError("--mqtt-username is empty; give a user name or leave it out")
        if self.password_file is not None:
            if self.username is None:
                raise ConfigError("--mqtt-password-file needs --mqtt-username too")
            self.read_password()
        if self.tls_ca is not None:
            _readable_file(self.tls_ca, flag="--mqtt-tls-ca", what="the broker's CA certificate")
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ConfigError("--mqtt-tls-cert and --mqtt-tls-key go together; give both")
        if self.tls_cert is not None and self.tls_key is not None:
            if self.tls_ca is None:
                raise ConfigError("--mqtt-tls-cert needs --mqtt-tls-ca (TLS is off without it)")
            _readable_file(self.tls_cert, flag="--mqtt-tls-cert", what="the client certificate")
            _readable_file(self.tls_key, flag="--mqtt-tls-key", what="the client key")
        _check_topic_level(self.topic_prefix, what="--mqtt-topic-prefix")
        if self.client_id is not None and (not self.client_id or len(self.client_id) > 128):
            raise ConfigError(f"MQTT client id {self.client_id!r} must have 1..128 characters")
        if not 1 <= self.keepalive_s <= 65535:
            raise ConfigError(f"MQTT keepalive_s {self.keepalive_s} is not in 1..65535 s")
        positive = {
            "state_interval_s": self.state_interval_s,
            "reconnect_min_s": self.reconnect_min_s,
            "timeout_s": self.timeout_s,
        }
        for name, value in positive.items():
            if not (math.isfinite(value) and value > 0):
                raise ConfigError(f"MQTT {name} {value} must be a positive number of seconds")
        if not (math.isfinite(self.health_interval_s) and self.health_interval_s >= 0):
            raise ConfigError(
                f"MQTT health_interval_s {self.health_interval_s} must be >= 0 (0: none)"
            )
        if not (
            math.isfinite(self.reconnect_max_s) and self.reconnect_max_s >= self.reconnect_min_s
        ):
            raise ConfigError(
                f"MQTT reconnect_max_s {self.reconnect_max_s} must be >= reconnect_min_s "
                f"{self.reconnect_min_s}"
            )
        if self.queue_max_physio < 1 or self.queue_max_events < 1:
            raise ConfigError("MQTT queue limits must be at least 1 message")

    def read_password(self) -> str | None:
        """The first line of ``password_file`` (None without one); ConfigError names the
        option when the file is missing, unreadable or empty."""
        if self.password_file is None:
            return None
        flag = "--mqtt-password-file"
        _readable_file(self.password_file, flag=flag, what="a file holding the password")
        try:
            lines = self.password_file.read_text(encoding="utf-8").splitlines()
        except UnicodeDecodeError:
            raise ConfigError(f"{flag} {str(self.password_file)!r} is not UTF-8 text") from None
        if not lines or not lines[0]:
            raise ConfigError(
                f"{flag} {str(self.password_file)!r}: the first line (the password) is empty"
            )
        return lines[0]

    def ssl_context(self) -> ssl.SSLContext | None:
        """The TLS context (None without ``tls_ca``); ConfigError names the option whose
        file is not a usable certificate or key."""
        if self.tls_ca is None:
            return None
        try:
            context = ssl.create_default_context(cafile=str(self.tls_ca))
        except (ssl.SSLError, OSError) as exc:
            raise ConfigError(
                f"--mqtt-tls-ca {str(self.tls_ca)!r} is not a PEM CA certificate ({exc})"
            ) from None
        if self.tls_cert is not None:
            try:
                context.load_cert_chain(certfile=str(self.tls_cert), keyfile=str(self.tls_key))
            except (ssl.SSLError, OSError) as exc:
                raise ConfigError(
                    f"--mqtt-tls-cert {str(self.tls_cert)!r} / --mqtt-tls-key "
                    f"{str(self.tls_key)!r} are not a matching PEM certificate and key ({exc})"
                ) from None
        return context


@dataclass(frozen=True, slots=True, kw_only=True)
class MqttStats:
    """The bridge's counters (cumulative since :meth:`MqttBridge.run` started).

    Every hub message the bridge received is, once it has left the queue, exactly one of
    ``published`` (acknowledged by the broker at QoS 1/2, handed to the socket at QoS 0),
    ``lost`` (dropped by a full queue, in flight when the connection broke, or not
    encodable) or ``health_skipped`` (a ``health`` message within ``health_interval_s`` of
    the last one sent); ``queued`` are still waiting. ``reconnects`` counts successful
    connections after the first; ``last_error`` is the latest connection problem (None
    once connected).
    """

    connected: bool
    published: int
    lost: int
    health_skipped: int
    queued: int
    reconnects: int
    last_error: str | None


class RoomState:
    """What a dashboard connecting late needs to show a room, published retained.

    Built from the room's messages as the bridge forwards them: the latest ``sync``
    message per signal, the ``episode`` start message of each signal's open episode, the
    latest ``status`` message per stream (``<role>-<signal>``), and the latest
    ``recording`` message (None while the recording has had no problem). ``t`` is the
    newest ``t`` of those messages (None before the first).
    """

    __slots__ = ("changed", "episodes", "recording", "room", "streams", "sync", "t")

    def __init__(self, *, room: str) -> None:
        self.room = room
        self.sync: dict[str, Message] = {}
        self.episodes: dict[str, Message] = {}
        self.streams: dict[str, Message] = {}
        self.recording: Message | None = None
        self.t: float | None = None
        self.changed = asyncio.Event()

    def observe(self, message: Message) -> None:
        """Take ``message`` into the state (physio and health do not enter it: the state
        says where the room stands, not its recent samples)."""
        kind = message.get("type")
        if kind not in _STATE_TYPES:
            return
        signal = str(message.get("signal"))
        if kind == "sync":
            self.sync[signal] = message
        elif kind == "episode":
            if message.get("event") == "start":
                self.episodes[signal] = message
            else:
                self.episodes.pop(signal, None)
        elif kind == "status":
            self.streams[f"{message.get('role')}-{signal}"] = message
        else:
            self.recording = message
        t = message.get("t")
        if isinstance(t, int | float):
            self.t = float(t) if self.t is None else max(self.t, float(t))
        self.changed.set()

    def message(self, *, online_topic: str) -> Message:
        # Not through make_message: before the first message there is no t to give.
        return {
            "v": PROTOCOL_VERSION,
            "type": "state",
            "session": self.room,
            "t": self.t,
            "online_topic": online_topic,
            "sync": self.sync,
            "episodes": self.episodes,
            "streams": self.streams,
            "recording": self.recording,
        }


class _Room:
    __slots__ = ("hub", "next_health_s", "queue", "state", "topic")

    def __init__(self, *, name: str, hub: Hub, prefix: str) -> None:
        self.hub = hub
        self.topic = f"{prefix}/{name}"
        self.state = RoomState(room=name)
        self.queue: ConsumerQueue | None = None
        self.next_health_s = -math.inf


class MqttBridge:
    """Publishes the messages of several rooms over one broker connection.

    ``rooms`` maps room names (a topic level each: no ``/``, ``+``, ``#``) to their hubs.
    Construction validates and reads the credentials and TLS files (ConfigError); nothing
    touches the network until :meth:`run`, which runs until cancelled and never raises
    for broker trouble: it logs, counts and retries.
    """

    def __init__(self, *, config: MqttConfig, rooms: Mapping[str, Hub]) -> None:
        if not rooms:
            raise ConfigError("the MQTT bridge needs at least one room")
        for name in rooms:
            if "/" in name:
                raise ConfigError(f"room {name!r} contains '/', which MQTT topics cannot hold")
            _check_topic_level(name, what="room")
        self._config = config
        self._password = config.read_password()
        self._tls = config.ssl_context()
        self._client_id = config.client_id or "dyadsync-" + "-".join(sorted(rooms))
        self._rooms = {
            name: _Room(name=name, hub=hub, prefix=config.topic_prefix)
            for name, hub in rooms.items()
        }
        self.online_topic = f"{config.topic_prefix}/service/{self._client_id}/online"
        self._where = f"{config.host}:{config.port}"
        self._connected = False
        self._published = 0
        self._lost_in_flight = 0
        self._health_skipped = 0
        self._connections = 0
        self._last_error: str | None = None
        if self._password is not None and self._tls is None and not is_loopback(config.host):
            log.warning(
                "MQTT credentials for %s travel unencrypted; add --mqtt-tls-ca", self._where
            )

    @property
    def stats(self) -> MqttStats:
        queues = [room.queue for room in self._rooms.values() if room.queue is not None]
        return MqttStats(
            connected=self._connected,
            published=self._published,
            lost=self._lost_in_flight + sum(queue.dropped for queue in queues),
            health_skipped=self._health_skipped,
            queued=sum(len(queue) for queue in queues),
            reconnects=max(0, self._connections - 1),
            last_error=self._last_error,
        )

    def room_state(self, room: str) -> Message:
        """The state message of ``room`` as it would be published now."""
        return self._rooms[room].state.message(online_topic=self.online_topic)

    async def run(self) -> None:
        """Publish until cancelled, reconnecting with capped exponential backoff."""
        cfg = self._config
        for room in self._rooms.values():
            room.queue = room.hub.subscribe(
                "mqtt", max_droppable=cfg.queue_max_physio, max_events=cfg.queue_max_events
            )
        retries = 0  # consecutive attempts since the last good connection
        try:
            while True:
                try:
                    await self._session()
                except aiomqtt.MqttError as exc:
                    was_connected, self._connected = self._connected, False
                    retries = 1 if was_connected else retries + 1
                    self._note_error(exc, was_connected=was_connected)
                delay_s = cfg.reconnect_min_s * 2.0 ** (retries - 1)
                await asyncio.sleep(min(cfg.reconnect_max_s, delay_s))
        finally:
            self._connected = False
            for room in self._rooms.values():
                if room.queue is not None:
                    room.hub.unsubscribe(room.queue)

    def _client(self) -> aiomqtt.Client:
        cfg = self._config
        return aiomqtt.Client(
            cfg.host,
            cfg.port,
            username=cfg.username,
            password=self._password,
            identifier=self._client_id,
            will=aiomqtt.Will(self.online_topic, _OFFLINE, qos=cfg.qos, retain=True),
            keepalive=cfg.keepalive_s,
            timeout=cfg.timeout_s,
            tls_context=self._tls,
        )

    async def _session(self) -> None:
        """One connection: announce, publish states, forward until the connection breaks
        (MqttError) or the bridge is cancelled."""
        cfg = self._config
        async with self._client() as client:
            # At most one publish per room and one state per room await their
            # acknowledgements at once; aiomqtt warns above its threshold.
            client.pending_calls_threshold = 2 * len(self._rooms) + 1
            self._connections += 1
            self._connected = True
            self._last_error = None
            if self._connections == 1:
                log.info(
                    "MQTT connected to %s as %s for rooms %s",
                    self._where,
                    self._client_id,
                    ", ".join(self._rooms),
                )
            else:
                log.info(
                    "MQTT reconnected to %s; %d messages lost so far",
                    self._where,
                    self.stats.lost,
                )
            tasks = [asyncio.create_task(self._watch(client))]
            for room in self._rooms.values():
                # Republished on every connection: the broker may have restarted without
                # its retained messages.
                room.state.changed.set()
                tasks.append(asyncio.create_task(self._forward(client, room)))
                tasks.append(asyncio.create_task(self._publish_state(client, room)))
            try:
                await client.publish(self.online_topic, _ONLINE, qos=cfg.qos, retain=True)
                done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
                for task in done:
                    task.result()  # the MqttError that ended the connection
            except asyncio.CancelledError:
                await self._stop_tasks(tasks)
                await self._say_offline(client)
                raise
            finally:
                await self._stop_tasks(tasks)

    async def _say_offline(self, client: aiomqtt.Client) -> None:
        try:
            await client.publish(
                self.online_topic,
                _OFFLINE,
                qos=self._config.qos,
                retain=True,
                timeout=_GOODBYE_TIMEOUT_S,
            )
        except aiomqtt.MqttError:
            log.info("MQTT: could not say offline on shutdown; the broker's last will will")

    @staticmethod
    async def _stop_tasks(tasks: list[asyncio.Task[None]]) -> None:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    @staticmethod
    async def _watch(client: aiomqtt.Client) -> None:
        """Raises MqttError when the connection breaks. The bridge subscribes to nothing,
        so the message iterator never yields; it is aiomqtt's way of reporting a
        disconnection, which an unacknowledged publish would otherwise only notice at its
        timeout."""
        async for _ in client.messages:
            pass

    async def _forward(self, client: aiomqtt.Client, room: _Room) -> None:
        assert room.queue is not None  # subscribed by run()
        cfg = self._config
        while True:
            item = await room.queue.get()
            if item.type == "health" and not self._health_due(room):
                self._health_skipped += 1
                continue
            payload = self._payload(item, room=room)
            if payload is None:
                continue
            # Only encodable messages enter the state, so the state always encodes.
            room.state.observe(item.message)
            try:
                await client.publish(f"{room.topic}/{item.type}", payload, qos=cfg.qos)
            except (aiomqtt.MqttError, asyncio.CancelledError):
                # Unacknowledged when the connection broke (or the bridge stopped): the
                # broker may or may not have it, so `lost` is an upper bound.
                self._lost_in_flight += 1
                raise
            self._published += 1

    def _health_due(self, room: _Room) -> bool:
        if self._config.health_interval_s == 0:
            return False
        now_s = time.monotonic()
        if now_s < room.next_health_s:
            return False
        room.next_health_s = now_s + self._config.health_interval_s
        return True

    def _payload(self, item: Published, *, room: _Room) -> str | None:
        try:
            return item.text
        except ProtocolError:
            # The error names the type and the encoder's complaint, not the values.
            self._lost_in_flight += 1
            log.exception("MQTT: a %s message of room %s is not JSON", item.type, room.topic)
            return None

    async def _publish_state(self, client: aiomqtt.Client, room: _Room) -> None:
        cfg = self._config
        while True:
            await room.state.changed.wait()
            room.state.changed.clear()
            text = encode(room.state.message(online_topic=self.online_topic))
            await client.publish(f"{room.topic}/state", text, qos=cfg.qos, retain=True)
            # Coalesces a burst (a reconnect draining its queue, sync updates of several
            # signals) into one retained update per interval.
            await asyncio.sleep(cfg.state_interval_s)

    def _note_error(self, exc: aiomqtt.MqttError, *, was_connected: bool) -> None:
        if isinstance(exc, MqttConnectError):
            text = (
                f"the broker at {self._where} refused the connection ({exc}); "
                "check --mqtt-username and --mqtt-password-file"
            )
        elif was_connected:
            # aiomqtt reports "disconnected during message iteration"; the why is its cause.
            text = f"the connection to {self._where} broke ({exc.__cause__ or exc})"
        else:
            hint = " or --mqtt-tls-ca" if self._tls is not None else ""
            text = f"cannot connect to {self._where} ({exc}); check --mqtt-host/--mqtt-port{hint}"
        # Logged when the problem changes, not at every retry.
        if text != self._last_error:
            log.warning(
                "MQTT: %s; retrying with backoff up to %.0f s, messages wait in bounded queues",
                text,
                self._config.reconnect_max_s,
            )
        self._last_error = text

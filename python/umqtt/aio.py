"""An asyncio MQTT client on the umqtt core.

Same constructor (and TLS and reconnect behaviour) as ``umqtt.MQTTClient``; every network
operation is awaitable and every failure raises. No thread per client: all clients share the
core's tokio runtime, and awaiting a call costs the event loop nothing while it waits.

    async with MQTTClient("sensor-1", "127.0.0.1", 1883) as client:
        await client.subscribe("sensors/#", qos=1)
        await client.publish("sensors/1", b"21.5", qos=1)
        async for message in client.messages():
            print(message.topic, message.payload)

Cancelling a task that awaits a call is safe: the connection stays up and nothing leaks.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import AsyncIterator, Coroutine
from types import TracebackType
from typing import TYPE_CHECKING, Any

from . import (
    MQTTConnectError,
    MQTTConnectionLost,
    MQTTException,
    MQTTOutboxError,
    MQTTTimeout,
    Payload,
    Text,
    _ClientBase,
    _SubscribeOptions,
)
from ._native import LoopBridge, Message
from .properties import PublishProperties

if TYPE_CHECKING:
    from typing_extensions import Unpack

__all__ = [
    "MQTTClient",
    "MQTTConnectError",
    "MQTTConnectionLost",
    "MQTTException",
    "MQTTOutboxError",
    "MQTTTimeout",
    "Message",
]


# One bridge per event loop, shared by its clients; it goes when the loop goes.
_bridges: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, LoopBridge] = (
    weakref.WeakKeyDictionary()
)


def _bridge_of(loop: asyncio.AbstractEventLoop) -> LoopBridge:
    """The core's end in `loop`: completions that arrive from another thread wake the loop
    through the bridge's socket."""
    bridge = _bridges.get(loop)
    if bridge is None:
        bridge = _bridges[loop] = LoopBridge(loop)
        loop.add_reader(bridge.fileno(), bridge.drain)
    return bridge


class MQTTClient(_ClientBase):
    """``MQTTClient(client_id, server, port=0, user=None, password=None, keepalive=60,
    ssl=False, ssl_params={}, reconn=True, ...)``, as ``umqtt.MQTTClient``, with async methods."""

    _loop: asyncio.AbstractEventLoop | None = None
    _loop_bridge: LoopBridge | None = None

    def _bridge(self) -> LoopBridge:
        return self._bridge_in(asyncio.get_running_loop())

    def _bridge_in(self, loop: asyncio.AbstractEventLoop) -> LoopBridge:
        if loop is not self._loop or self._loop_bridge is None:
            self._loop, self._loop_bridge = loop, _bridge_of(loop)
        return self._loop_bridge

    async def __aenter__(self) -> MQTTClient:
        await self.connect()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.disconnect()

    async def connect(self, clean_session: bool = True) -> int:
        """Connects; returns the session-present flag. Raises MQTTConnectError (a ValueError)."""
        self._ended_by_user = False
        return self._connected(await self._core.connect_async(self._bridge(), bool(clean_session)))

    def publish(
        self,
        topic: Text,
        msg: Payload,
        retain: bool = False,
        qos: int = 0,
        *,
        properties: PublishProperties | None = None,
    ) -> Coroutine[Any, Any, None]:
        """Awaited, returns once QoS 0 is queued, QoS 1 PUBACKed or QoS 2 PUBCOMPed (with
        ``persistence=``: QoS 1/2 stored). Raises MQTTConnectionLost or MQTTTimeout (ack_timeout)
        otherwise, MQTTOutboxError when the outbox is full, and MQTTException with its
        ``reason_code`` when the broker refuses it (MQTT 5). Called in a running loop, the
        publish starts then (a bad argument raises then); what it returns is awaited, or given to
        ``create_task``, ``gather`` or ``wait_for``, as a coroutine would be."""
        # Not a coroutine function: the call returned by the core is the awaitable (no frame).
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # no loop runs yet: asyncio.run(client.publish(...))
            return self._publish_when_awaited(topic, msg, retain, qos, properties)
        return self._core.publish_async(
            self._bridge_in(loop), topic, msg, qos, bool(retain), properties=properties
        )

    async def _publish_when_awaited(
        self,
        topic: Text,
        msg: Payload,
        retain: bool,
        qos: int,
        properties: PublishProperties | None,
    ) -> None:
        await self.publish(topic, msg, retain, qos, properties=properties)

    async def subscribe(
        self, topic: Text, qos: int = 0, **options: Unpack[_SubscribeOptions]
    ) -> int:
        """Returns the QoS the broker granted; a refusal raises MQTTException with its
        ``reason_code`` (0x80 under MQTT 3.1.1). ``options`` are MQTT 5's: no_local,
        retain_as_published, retain_handling, properties."""
        return await self._core.subscribe_async(self._bridge(), topic, qos, **options)

    async def request(
        self,
        topic: Text,
        payload: Payload,
        *,
        qos: int = 1,
        timeout: float = 10,
        properties: PublishProperties | None = None,
        response_topic: Text | None = None,
    ) -> Message:
        """Request/response (MQTT 5): publishes ``payload`` to ``topic`` with a response topic and
        correlation data of its own, and returns the reply (the message that carries that
        correlation data back). The response topic is the broker's CONNACK
        ``response_information`` when it sends one, else ``umqtt/resp/<client_id>/<random>``;
        ``response_topic=`` chooses another (for ACLs). The client subscribes to it once, on first
        use. Raises MQTTTimeout when no reply comes within ``timeout`` seconds."""
        return await self._core.request_async(
            self._bridge(), topic, payload, qos, timeout, properties, response_topic
        )

    async def unsubscribe(self, topic: Text) -> None:
        """Waits for UNSUBACK; the topic is not re-subscribed after a reconnect either way."""
        await self._core.unsubscribe_async(self._bridge(), topic)

    async def ping(self) -> None:
        """Writes a PINGREQ now, unless one waits for its PINGRESP; the core also sends one every
        keepalive. Raises MQTTConnectionLost when the link is gone."""
        self._ping()

    async def flush(self, timeout: float | None = None) -> None:
        """Waits until every message of the outbox on disk is acknowledged (and deleted);
        raises MQTTTimeout after ``timeout`` seconds (None: waits for ever). Returns at once
        without an outbox."""
        if not await self._core.flush_async(self._bridge(), timeout):
            raise MQTTTimeout(
                f"the outbox still holds {self._core.outbox_size()} unacknowledged messages "
                f"after {timeout} s"
            )

    async def disconnect(self) -> None:
        """Lets requests in flight finish, sends what was queued, then DISCONNECT (no will)."""
        self._ended_by_user = True
        await self._core.disconnect_async(self._bridge())

    async def messages(self) -> AsyncIterator[Message]:
        """Received messages (``topic`` str, ``payload`` bytes, ``qos``, ``retain``, ``dup``),
        across reconnects; ends after disconnect(), raises MQTTConnectionLost if the link is lost
        for good (reconn=False)."""
        while True:
            try:
                message = self._core.take_message(self._bridge())
            except MQTTConnectionLost:
                if self._ended_by_user:
                    return
                raise
            if message is None:
                # Waiting takes nothing: a cancelled wait loses no message.
                await self._core.message_ready_async(self._bridge())
                continue
            yield message

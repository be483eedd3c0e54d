"""The asyncio client (issue 4): `umqtt.aio.MQTTClient`.

`async with` connects and disconnects; connect/publish/subscribe/unsubscribe/ping/disconnect are
awaitable and raise instead of returning False; received messages come from
`async for msg in client.messages()`. Cancelling an awaiting task keeps the connection and leaks
no waiter; many clients share one runtime instead of a thread each.

Witnesses: a paho peer, the mosquitto log, the suite's scripted broker (tests/wire.py, to hold
back acknowledgements and send the DUP flag), the core's `pending_messages()`, and
/proc/self/task for the thread count. `disconnect()` waits for requests in flight (up to
ack_timeout), so a prompt disconnect after a cancellation shows that no in-flight count leaked.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import resource
import ssl
import struct
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import trustme
import umqtt
import umqtt.aio
import wire
from broker import ALICE, FORBIDDEN, Mosquitto, free_port, unique_id, wait_until
from umqtt.aio import (
    Message,
    MQTTClient,
    MQTTConnectError,
    MQTTConnectionLost,
    MQTTException,
    MQTTTimeout,
)

FAST_RECONNECT = {"reconnect_delay": 0.2, "reconnect_max_delay": 1.0}
CROWD = 1000  # clients in one event loop
THREAD_ALLOWANCE = 10  # OS threads the crowd may add over the baseline (runtime workers etc.)


# --------------------------------------------------------------------------- helpers

try:
    from asyncio import timeout as deadline  # Python 3.11+
except ImportError:  # Python 3.9, 3.10

    @contextlib.asynccontextmanager
    async def deadline(seconds: float) -> AsyncIterator[None]:
        """asyncio.timeout() for older Pythons: cancel the task, raise asyncio.TimeoutError."""
        task = asyncio.current_task()
        assert task is not None
        fired = []
        handle = asyncio.get_running_loop().call_later(
            seconds, lambda: (fired.append(True), task.cancel())
        )
        try:
            yield
        except asyncio.CancelledError:
            if fired:
                raise asyncio.TimeoutError from None
            raise
        finally:
            handle.cancel()


def next_message(client: MQTTClient) -> Awaitable[Message]:
    """`anext(client.messages())`, spelled for Python 3.9."""
    return client.messages().__anext__()


def fields(m: Message) -> tuple[str, bytes, int, bool, bool]:
    """(topic, payload, qos, retain, dup) of a message."""
    return (m.topic, m.payload, m.qos, m.retain, m.dup)


def os_threads() -> int:
    """Threads of this process as the kernel sees them (Python and native alike)."""
    return len(os.listdir("/proc/self/task"))


async def eventually(predicate: Callable[[], Any], timeout: float = 5.0) -> bool:
    """Poll `predicate` without blocking the loop until it is truthy or `timeout` passes."""
    end = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() >= end:
            return bool(predicate())
        await asyncio.sleep(0.01)
    return True


async def receive(client: MQTTClient, count: int = 1, timeout: float = 5.0) -> list[Message]:
    """The next `count` messages from `client.messages()`; fails the test after `timeout` s."""
    got: list[Message] = []
    try:
        async with deadline(timeout):
            messages = client.messages()
            try:
                async for message in messages:
                    got.append(message)
                    if len(got) >= count:
                        break
            finally:
                await messages.aclose()
    except asyncio.TimeoutError:
        pytest.fail(f"{len(got)} of {count} messages within {timeout} s: {got}")
    return got


async def in_thread(fn: Callable[..., Any], *args: Any, **kw: Any) -> Any:
    """Run a blocking call (a paho peer's wait, a blocking umqtt client) off the event loop."""
    return await asyncio.to_thread(fn, *args, **kw)


class Collector:
    """A task that iterates `client.messages()` and keeps what arrives (or how it ended)."""

    def __init__(self, client: MQTTClient) -> None:
        self.messages: list[Message] = []
        self.task = asyncio.create_task(self._run(client))

    async def _run(self, client: MQTTClient) -> None:
        async for message in client.messages():
            self.messages.append(message)

    def payloads(self) -> list[bytes]:
        return [m.payload for m in self.messages]

    async def wait_for(self, payload: bytes, timeout: float = 5.0) -> bool:
        return await eventually(lambda: payload in self.payloads(), timeout)

    async def stop(self) -> None:
        self.task.cancel()
        with contextlib.suppress(BaseException):
            await self.task


# --------------------------------------------------------------------------- round trips


@pytest.mark.asyncio
@pytest.mark.parametrize("version", [4, 5])
@pytest.mark.parametrize("qos", [0, 1, 2])
async def test_round_trip_at_every_qos(make_aio, peer, topic, qos, version):
    """Subscribe is granted `qos`; our publish reaches the peer and ourselves; the peer's publish
    reaches us, with topic str, payload bytes, qos, retain False, dup False (MQTT 3.1.1 and 5)."""
    async with make_aio(version=version) as client:
        assert isinstance(client, MQTTClient)
        assert await client.subscribe(topic, qos) == qos
        peer.subscribe(topic)
        assert await client.publish(topic, b"from aio", qos=qos) is None
        [own] = await receive(client)
        assert fields(own) == (topic, b"from aio", qos, False, False)
        assert type(own.topic) is str and type(own.payload) is bytes
        [seen] = await in_thread(peer.wait_for, topic)
        assert (seen.payload, seen.qos) == (b"from aio", qos)

        await in_thread(peer.publish, topic, b"from peer", qos)
        [theirs] = await receive(client)
        assert fields(theirs) == (topic, b"from peer", qos, False, False)
        assert client._core.pending_messages() == 0


@pytest.mark.asyncio
async def test_granted_qos_and_delivered_qos_are_the_minimum(make_aio, peer, topic):
    """A QoS 2 publish to a QoS 1 subscription arrives as QoS 1."""
    async with make_aio() as client:
        assert await client.subscribe(topic, 1) == 1
        await in_thread(peer.publish, topic, b"x", 2)
        [m] = await receive(client)
        assert m.qos == 1


@pytest.mark.asyncio
async def test_payload_types_and_topic_text(make_aio, topic):
    """str, bytes, bytearray, memoryview and empty payloads all arrive as bytes; a non-ASCII
    topic arrives as the same str; bytes topics are accepted."""
    async with make_aio() as client:
        t = f"{topic}/grüße"
        await client.subscribe(t, 1)
        sent: list[Any] = ["text é", b"\x00\xff\x80", bytearray(b"ba"), memoryview(b"mv"), b""]
        for payload in sent:
            await client.publish(t, payload, qos=1)
        await client.publish(t.encode(), b"bytes topic", qos=1)
        got = await receive(client, len(sent) + 1)
        assert [m.payload for m in got] == [
            "text é".encode(),
            b"\x00\xff\x80",
            b"ba",
            b"mv",
            b"",
            b"bytes topic",
        ]
        assert all(type(m.payload) is bytes and m.topic == t for m in got)


@pytest.mark.asyncio
async def test_retained_message_has_retain_flag(make_aio, peer, topic):
    """A retained message published before we subscribe arrives with retain=True and its QoS;
    a live message on the same topic has retain=False."""
    await in_thread(peer.publish, topic, b"kept", 1, True)
    try:
        async with make_aio() as client:
            assert await client.subscribe(topic, 2) == 2
            [old] = await receive(client)
            assert (old.payload, old.retain, old.qos, old.dup) == (b"kept", True, 1, False)
            await in_thread(peer.publish, topic, b"live", 1)
            [new] = await receive(client)
            assert (new.payload, new.retain) == (b"live", False)
    finally:
        await in_thread(peer.publish, topic, b"", 1, True)  # clear the retained message


@pytest.mark.asyncio
async def test_publish_retain_true_is_retained(make_aio, make_peer, broker, topic):
    """publish(retain=True) from the asyncio client is kept by the broker for later subscribers."""
    try:
        async with make_aio() as client:
            await client.publish(topic, b"stay", retain=True, qos=1)
        late = make_peer(broker)
        late.subscribe(topic)
        [m] = await in_thread(late.wait_for, topic)
        assert (m.payload, m.retain) == (b"stay", True)
    finally:
        await in_thread(make_peer(broker).publish, topic, b"", 1, True)


@pytest.mark.asyncio
async def test_dup_flag_and_every_header_bit_reach_the_message(scripted_broker):
    """A PUBLISH with DUP, QoS 1 and RETAIN set (sent by a scripted broker) gives dup=True,
    qos=1, retain=True; the client PUBACKs it with the same packet id."""
    fake = scripted_broker()
    client = MQTTClient(unique_id("aio"), fake.host, fake.port)
    async with deadline(10):
        await client.connect()
        fake.send(wire.publish("fake/dup", b"again", 1, pkid=7, dup=True, retain=True))
        fake.send(wire.publish("fake/plain", b"once", 0))
        first, second = await receive(client, 2)
        assert fields(first) == ("fake/dup", b"again", 1, True, True)
        assert fields(second) == ("fake/plain", b"once", 0, False, False)
        assert await in_thread(fake.read) == (wire.PUBACK, b"\x00\x07")  # PUBACK 7
        client.close()


@pytest.mark.asyncio
@pytest.mark.parametrize("qos", [0, 1, 2])
async def test_publish_resolves_on_the_ack_its_qos_needs(scripted_broker, qos):
    """QoS 0 resolves once sent; QoS 1 only after PUBACK; QoS 2 not on PUBREC, only on PUBCOMP."""
    fake = scripted_broker()
    client = MQTTClient(unique_id("aio"), fake.host, fake.port)
    async with deadline(15):
        await client.connect()
        task = asyncio.create_task(client.publish("fake/t", b"p", qos=qos))
        first, body = await in_thread(fake.read)
        assert first == wire.PUBLISH | (qos << 1)
        if qos == 0:
            await asyncio.wait_for(task, 2)
            client.close()
            return
        _, pkid, _ = wire.parse_publish(first, body)
        assert pkid is not None
        await asyncio.sleep(0.3)
        assert not task.done(), "publish resolved before any acknowledgement"
        if qos == 2:
            fake.send(wire.ack(wire.PUBREC, pkid))
            assert await in_thread(fake.read) == (wire.PUBREL, struct.pack("!H", pkid))
            await asyncio.sleep(0.3)
            assert not task.done(), "QoS 2 publish resolved on PUBREC, before PUBCOMP"
            fake.send(wire.ack(wire.PUBCOMP, pkid))
        else:
            fake.send(wire.ack(wire.PUBACK, pkid))
        assert await asyncio.wait_for(task, 2) is None
        client.close()


# --------------------------------------------------------------------------- lifecycle


@pytest.mark.asyncio
async def test_async_with_connects_and_disconnects(make_aio, broker, client_id):
    """`async with` yields the connected client and sends DISCONNECT on the way out, also when
    the body raises (the exception propagates)."""
    since = broker.log_size()
    client = make_aio(client_id=client_id)
    assert client.get_mqttsta() == -1
    async with client as entered:
        assert entered is client
        assert client.get_mqttsta() == 0
        assert broker.wait_for_log("New client connected", client_id, since=since)
    assert client.get_mqttsta() == -1
    assert broker.wait_for_log("Received DISCONNECT from", client_id, since=since)

    since = broker.log_size()
    with pytest.raises(KeyError):
        async with client:
            assert client.get_mqttsta() == 0
            raise KeyError("body failed")
    assert client.get_mqttsta() == -1
    assert broker.wait_for_log("Received DISCONNECT from", client_id, since=since)


@pytest.mark.asyncio
async def test_connect_returns_session_present(make_aio, client_id):
    """connect() returns 0 for a new session and 1 when a persistent session is resumed."""
    client = make_aio(client_id=client_id)
    assert await client.connect(clean_session=False) == 0
    await client.subscribe("umqtt-test/aio/session", 1)
    await client.disconnect()
    assert await client.connect(clean_session=False) == 1
    await client.disconnect()
    assert await client.connect(clean_session=True) == 0


@pytest.mark.asyncio
async def test_unsubscribe_stops_delivery(make_aio, peer, topic):
    async with make_aio() as client:
        await client.subscribe(f"{topic}/a", 1)
        await client.subscribe(f"{topic}/b", 1)
        assert await client.unsubscribe(f"{topic}/a") is None
        await in_thread(peer.publish, f"{topic}/a", b"gone", 1)
        await in_thread(peer.publish, f"{topic}/b", b"kept", 1)
        [m] = await receive(client)
        assert (m.topic, m.payload) == (f"{topic}/b", b"kept")
        await asyncio.sleep(0.2)
        assert client._core.pending_messages() == 0


@pytest.mark.asyncio
async def test_ping_is_awaitable_while_connected(make_aio):
    async with make_aio() as client:
        assert await client.ping() is None


@pytest.mark.asyncio
async def test_last_will_on_close(make_aio, peer, topic):
    """close() drops the link without DISCONNECT: the broker publishes the will."""
    peer.subscribe(topic)
    client = make_aio()
    client.set_last_will(topic, b"gone", qos=1)
    await client.connect()
    client.close()
    [m] = await in_thread(peer.wait_for, topic)
    assert m.payload == b"gone"
    assert client.get_mqttsta() == -1


@pytest.mark.asyncio
async def test_iteration_ends_after_disconnect(make_aio, peer, topic):
    """An `async for` running when disconnect() is awaited ends normally; a new one ends at once."""
    client = make_aio()
    await client.connect()
    await client.subscribe(topic, 1)
    collector = Collector(client)
    await in_thread(peer.publish, topic, b"one", 1)
    assert await collector.wait_for(b"one")
    await client.disconnect()
    async with deadline(3):
        await collector.task  # ended, without an exception
    assert collector.payloads() == [b"one"]
    async with deadline(3):
        assert [m async for m in client.messages()] == []
    assert client.get_mqttsta() == -1


# --------------------------------------------------------------------------- cancellation


@pytest.mark.asyncio
async def test_cancel_in_the_middle_of_publish(fresh_broker, make_aio, make_peer, topic, client_id):
    """A QoS 1 publish waiting for a PUBACK the frozen broker cannot send is cancelled: the loop
    kept running meanwhile, the connection survives, the same client publishes and receives, and
    disconnect() is prompt (a leaked in-flight waiter would hold it for ack_timeout = 10 s)."""
    client = make_aio(broker=fresh_broker, client_id=client_id, ack_timeout=10.0)
    await client.connect()
    await client.subscribe(topic, 1)
    fresh_broker.pause()
    try:
        pending = [asyncio.create_task(client.publish(topic, b"cancelled", qos=1))]
        pending += [
            asyncio.create_task(client.publish(f"{topic}/x", b"%d" % i, qos=1 + i % 2))
            for i in range(20)
        ]
        ticks = 0
        for _ in range(30):  # the event loop is not blocked by the waiting publishes
            await asyncio.sleep(0.01)
            ticks += 1
        assert ticks == 30
        assert not any(t.done() for t in pending), "a publish resolved with the broker frozen"
        started = time.monotonic()
        for t in pending:
            t.cancel()
        results = await asyncio.gather(*pending, return_exceptions=True)
        assert all(isinstance(r, asyncio.CancelledError) for r in results), results
        assert time.monotonic() - started < 1.0
    finally:
        fresh_broker.resume()

    assert client.get_mqttsta() == 0
    async with deadline(5):
        await client.publish(topic, b"after", qos=1)
    got = await receive(client, 2)  # the cancelled publish was already on the wire
    assert [m.payload for m in got] == [b"cancelled", b"after"]
    watcher = make_peer(fresh_broker)
    watcher.subscribe(topic)
    await client.publish(topic, b"seen", qos=2)
    assert [m.payload for m in await in_thread(watcher.wait_for, topic)] == [b"seen"]
    [echo] = await receive(client)
    assert echo.payload == b"seen"
    assert client._core.pending_messages() == 0
    assert len(fresh_broker.log_lines("New client connected", client_id)) == 1, "it reconnected"

    started = time.monotonic()
    async with deadline(15):
        await client.disconnect()
    assert time.monotonic() - started < 2.0, "disconnect() waited for a cancelled publish"


@pytest.mark.asyncio
async def test_cancel_in_the_middle_of_receive(make_aio, peer, topic):
    """Cancelling a task in `async for` (and timing out `anext` 20 times) leaves no stray waiter:
    the next message goes to the next reader, and the client still publishes and disconnects."""
    client = make_aio()
    await client.connect()
    await client.subscribe(topic, 1)
    peer.subscribe(topic)

    reader = Collector(client)
    await asyncio.sleep(0.2)
    reader.task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await reader.task
    for _ in range(20):
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(next_message(client), 0.02)

    await in_thread(peer.publish, topic, b"after", 1)
    [m] = await receive(client)
    assert m.payload == b"after"
    assert client._core.pending_messages() == 0
    assert client.get_mqttsta() == 0
    await client.publish(topic, b"still up", qos=1)
    assert b"still up" in [x.payload for x in await in_thread(peer.wait_for, topic, 2)]
    started = time.monotonic()
    async with deadline(15):
        await client.disconnect()
    assert time.monotonic() - started < 2.0


@pytest.mark.asyncio
@pytest.mark.parametrize("version", [4, 5])
async def test_cancelled_receives_lose_no_message(make_aio, topic, version):
    """Receives cancelled by short timeouts while 300 QoS 1 messages stream in: every message is
    still delivered exactly once (a cancelled receive must not swallow one); MQTT 3.1.1 and 5."""
    count = 300
    consumer, producer = make_aio(version=version), make_aio(version=version)
    await consumer.connect()
    await producer.connect()
    await consumer.subscribe(topic, 1)

    async def produce() -> None:
        for i in range(count):
            await producer.publish(topic, b"%d" % i, qos=1)

    rng = random.Random(4)
    got: list[int] = []
    cancels = 0
    async with deadline(30):
        sending = asyncio.create_task(produce())
        while not sending.done():
            try:
                m = await asyncio.wait_for(next_message(consumer), rng.choice([1e-4, 3e-4, 1e-3]))
                got.append(int(m.payload))
            except asyncio.TimeoutError:
                cancels += 1
        await sending
        while True:  # drain what is left, without cancelling anything that could deliver
            try:
                m = await asyncio.wait_for(next_message(consumer), 1.0)
            except asyncio.TimeoutError:
                break
            got.append(int(m.payload))
    missing = sorted(set(range(count)) - set(got))
    assert not missing, (
        f"{len(missing)} of {count} messages lost over {cancels} cancelled receives: "
        f"{missing[:20]}..."
    )
    assert sorted(got) == list(range(count))


# --------------------------------------------------------------------------- the link


@pytest.mark.asyncio
@pytest.mark.slow
async def test_broker_restart_reconnects_and_iteration_goes_on(
    fresh_broker, make_aio, make_peer, topic, client_id
):
    """reconn=True with reconnect_delay=0.2: kill + restart on the same port; get_mqttsta() goes
    1 then 0, the subscription is restored, and the same `async for` keeps yielding."""
    client = make_aio(broker=fresh_broker, client_id=client_id, **FAST_RECONNECT)
    await client.connect()
    assert await client.subscribe(topic, 1) == 1
    collector = Collector(client)
    first = make_peer(fresh_broker)
    await in_thread(first.publish, topic, b"before", 1)
    assert await collector.wait_for(b"before")

    states: list[int] = []

    async def watch() -> None:
        while True:
            s = client.get_mqttsta()
            if not states or states[-1] != s:
                states.append(s)
            await asyncio.sleep(0.005)

    watcher = asyncio.create_task(watch())
    try:
        await in_thread(first.close)
        fresh_broker.kill()
        assert await eventually(lambda: client.get_mqttsta() == 1, 5), states
        await asyncio.sleep(0.5)  # a few failed attempts while the broker is down
        assert not collector.task.done()
        since = fresh_broker.log_size()
        await in_thread(fresh_broker.start)
        assert await eventually(lambda: client.get_mqttsta() == 0, 10), states
        assert await eventually(lambda: states[-1] == 0, 1), states  # the watcher saw it too
    finally:
        watcher.cancel()
    assert states[:3] == [0, 1, 0], states
    assert await in_thread(
        fresh_broker.wait_for_log, "Received SUBSCRIBE from", client_id, since=since
    ), "the subscription was not renewed"
    assert await in_thread(fresh_broker.wait_for_log, topic, "(QoS 1)", since=since)

    second = make_peer(fresh_broker)
    second.subscribe(topic)
    await in_thread(second.publish, topic, b"after", 1)
    assert await collector.wait_for(b"after"), collector.payloads()
    assert not collector.task.done(), "the iterator ended on reconnect"
    await client.publish(topic, b"mine", qos=1)
    assert b"mine" in [m.payload for m in await in_thread(second.wait_for, topic, 2)]
    assert await collector.wait_for(b"mine")
    await collector.stop()


@pytest.mark.asyncio
async def test_reconn_false_iterator_raises_when_broker_dies(fresh_broker, make_aio, topic):
    """reconn=False: the running `async for` raises MQTTConnectionLost (an OSError); ping(),
    publish() and a new iteration raise it too, promptly."""
    client = make_aio(broker=fresh_broker, reconn=False, ack_timeout=5.0)
    await client.connect()
    await client.subscribe(topic, 1)
    collector = Collector(client)
    await asyncio.sleep(0.1)
    fresh_broker.kill()
    async with deadline(5):
        with pytest.raises(MQTTConnectionLost) as excinfo:
            await collector.task
    assert isinstance(excinfo.value, OSError)
    assert isinstance(excinfo.value, MQTTException)
    assert client.get_mqttsta() in (-1, 2)
    with pytest.raises(MQTTConnectionLost):
        await client.ping()
    started = time.monotonic()
    with pytest.raises(MQTTConnectionLost):
        await client.publish(topic, b"x", qos=1)
    assert time.monotonic() - started < 1.0
    async with deadline(3):
        with pytest.raises(MQTTConnectionLost):
            await next_message(client)
    async with deadline(5):
        await client.disconnect()  # returns quietly on a dead link
    async with deadline(3):
        assert [m async for m in client.messages()] == []  # ended by the user now


@pytest.mark.asyncio
@pytest.mark.parametrize("reconn", [True, False])
async def test_publish_on_dead_link_raises_within_ack_timeout(
    fresh_broker, make_aio, topic, reconn
):
    """With the broker killed, a QoS 1 publish raises MQTTConnectionLost or MQTTTimeout within
    ack_timeout (with reconn=True it may wait for the reconnect, but not longer)."""
    client = make_aio(broker=fresh_broker, reconn=reconn, ack_timeout=1.0, **FAST_RECONNECT)
    await client.connect()
    fresh_broker.kill()
    assert await eventually(lambda: client.get_mqttsta() != 0, 5)
    started = time.monotonic()
    async with deadline(10):
        with pytest.raises((MQTTConnectionLost, MQTTTimeout)):
            await client.publish(topic, b"x", qos=1)
    assert time.monotonic() - started < 2.5


@pytest.mark.asyncio
async def test_frozen_broker_publish_times_out_then_recovers(fresh_broker, make_aio, topic):
    """A half-open link (broker SIGSTOPped): publish(qos=1) raises MQTTTimeout after ack_timeout;
    once the broker resumes the same client publishes again."""
    client = make_aio(broker=fresh_broker, ack_timeout=1.0)
    await client.connect()
    await client.subscribe(topic, 1)
    fresh_broker.pause()
    try:
        started = time.monotonic()
        with pytest.raises(MQTTTimeout) as excinfo:
            async with deadline(10):
                await client.publish(topic, b"stuck", qos=1)
        assert 0.8 < time.monotonic() - started < 2.5
        assert isinstance(excinfo.value, TimeoutError)
    finally:
        fresh_broker.resume()
    async with deadline(5):
        await client.publish(topic, b"free", qos=1)
    got = await receive(client, 2)
    assert [m.payload for m in got] == [b"stuck", b"free"]


# --------------------------------------------------------------------------- errors


@pytest.mark.asyncio
async def test_subscribe_refused_raises_mqttexception(auth_broker, make_aio, topic):
    """SUBACK 0x80 raises MQTTException (not a link error); the client goes on working."""
    user, password = ALICE
    async with make_aio(broker=auth_broker, user=user, password=password) as client:
        with pytest.raises(MQTTException) as excinfo:
            await client.subscribe(FORBIDDEN, 1)
        assert not isinstance(excinfo.value, (MQTTConnectionLost, MQTTTimeout))
        assert client.get_mqttsta() == 0
        assert await client.subscribe(topic, 1) == 1
        await client.publish(topic, b"fine", qos=1)
        [m] = await receive(client)
        assert m.payload == b"fine"


@pytest.mark.asyncio
async def test_bad_password_raises_connect_error(auth_broker, make_aio):
    user, _ = ALICE
    client = make_aio(broker=auth_broker, user=user, password="wrong", reconn=False)
    with pytest.raises(MQTTConnectError) as excinfo:
        async with deadline(10):
            await client.connect()
    assert excinfo.value.rc in (4, 5)
    assert isinstance(excinfo.value, ValueError)


@pytest.mark.asyncio
async def test_connect_to_closed_port_raises_connect_error(make_aio):
    """Nothing listens: connect() and `async with` raise MQTTConnectError (a ValueError) fast."""
    port = free_port()
    client = make_aio(port=port, connect_timeout=5.0)
    started = time.monotonic()
    with pytest.raises(MQTTConnectError) as excinfo:
        async with deadline(10):
            await client.connect()
    assert time.monotonic() - started < 3.0
    assert isinstance(excinfo.value, ValueError) and isinstance(excinfo.value, MQTTException)
    assert client.get_mqttsta() == -1
    entered = False
    with pytest.raises(MQTTConnectError):
        async with deadline(10), client:
            entered = True
    assert not entered


@pytest.mark.asyncio
async def test_calls_before_connect_and_after_disconnect_raise(make_aio, topic):
    """Requests before connect() or after disconnect() raise MQTTException; receiving before
    connect() raises too, while after disconnect() the iteration just ends."""
    client = make_aio()
    for call in (
        lambda: client.publish(topic, b"x", qos=1),
        lambda: client.subscribe(topic),
        lambda: client.unsubscribe(topic),
    ):
        with pytest.raises(MQTTException):
            await call()
    with pytest.raises(MQTTException):  # never connected: not "ended by the user" either
        await asyncio.wait_for(next_message(client), 3)
    await client.connect()
    await client.disconnect()
    async with deadline(3):
        assert [m async for m in client.messages()] == []  # ended by disconnect()
    with pytest.raises(MQTTException):
        await client.publish(topic, b"x")
    await client.disconnect()  # twice is fine


T = "umqtt-test/aio-bad-input"
BAD_CONSTRUCTOR = [
    pytest.param({"client_id": 123}, TypeError, id="client_id-int"),
    pytest.param({"server": None}, TypeError, id="server-None"),
    pytest.param({"port": "abc"}, ValueError, id="port-abc"),
    pytest.param({"port": 65536}, ValueError, id="port-65536"),
    pytest.param({"keepalive": 3}, ValueError, id="keepalive-3"),
    pytest.param({"keepalive": "60"}, TypeError, id="keepalive-str"),
    pytest.param({"version": 6}, ValueError, id="version-6"),
    pytest.param({"user": 5}, TypeError, id="user-int"),
    pytest.param({"ssl": True, "ssl_params": {"nonsense": 1}}, ValueError, id="ssl-unknown-key"),
    pytest.param({"max_packet_size": 100}, ValueError, id="max_packet_size-tiny"),
    pytest.param({"ack_timeout": -1.0}, ValueError, id="ack_timeout-negative"),
]
BAD_CALLS = [
    pytest.param(("publish", 123, b"x"), {}, TypeError, id="pub-topic-int"),
    pytest.param(("publish", None, b"x"), {}, TypeError, id="pub-topic-None"),
    pytest.param(("publish", T, None), {}, TypeError, id="pub-msg-None"),
    pytest.param(("publish", T, 123), {}, TypeError, id="pub-msg-int"),
    pytest.param(("publish", T, b"x"), {"qos": 3}, ValueError, id="pub-qos-3"),
    pytest.param(("publish", T, b"x"), {"qos": -1}, ValueError, id="pub-qos-negative"),
    pytest.param(("publish", T, b"x"), {"qos": "1"}, TypeError, id="pub-qos-str"),
    pytest.param(("publish", "a/#", b"x"), {}, ValueError, id="pub-topic-hash"),
    pytest.param(("publish", "a/+", b"x"), {}, ValueError, id="pub-topic-plus"),
    pytest.param(("publish", "", b"x"), {}, ValueError, id="pub-topic-empty"),
    pytest.param(("publish", "a\x00b", b"x"), {}, ValueError, id="pub-topic-NUL"),
    pytest.param(("publish", "x" * 65536, b"x"), {}, ValueError, id="pub-topic-64KiB"),
    pytest.param(("subscribe", 123), {}, TypeError, id="sub-topic-int"),
    pytest.param(("subscribe", ""), {}, ValueError, id="sub-topic-empty"),
    pytest.param(("subscribe", "a/#/b"), {}, ValueError, id="sub-hash-not-last"),
    pytest.param(("subscribe", "a+/b"), {}, ValueError, id="sub-plus-in-level"),
    pytest.param(("subscribe", T, 3), {}, ValueError, id="sub-qos-3"),
    pytest.param(("subscribe", T, "0"), {}, TypeError, id="sub-qos-str"),
    pytest.param(("unsubscribe", 123), {}, TypeError, id="unsub-topic-int"),
    pytest.param(("unsubscribe", ""), {}, ValueError, id="unsub-topic-empty"),
    pytest.param(("set_last_will", "a/#", b"x"), {}, ValueError, id="will-wildcard"),
]


def _check_exception(exc: BaseException, expected: type[BaseException]) -> None:
    assert isinstance(exc, Exception), f"{type(exc).__module__}.{type(exc).__name__}: {exc}"
    assert isinstance(exc, expected), f"expected {expected.__name__}, got {exc!r}"


@pytest.mark.asyncio
@pytest.mark.parametrize(("overrides", "expected"), BAD_CONSTRUCTOR)
async def test_bad_constructor_argument_raises(broker, overrides, expected):
    kw = {"client_id": unique_id("aio"), "server": broker.host, "port": broker.port, **overrides}
    try:
        MQTTClient(**kw)
    except BaseException as exc:
        _check_exception(exc, expected)
    else:
        pytest.fail(f"no exception; expected {expected.__name__}")


@pytest.mark.asyncio
@pytest.mark.parametrize(("call", "kw", "expected"), BAD_CALLS)
async def test_bad_argument_raises_and_client_survives(make_aio, topic, call, kw, expected):
    """A bad argument raises TypeError/ValueError (at the call or on await), never a Rust panic;
    the client goes on working."""
    async with make_aio() as client:
        name, *args = call
        try:
            async with deadline(5):
                result = getattr(client, name)(*args, **kw)
                if isinstance(result, Awaitable):
                    await result
        except BaseException as exc:
            _check_exception(exc, expected)
        else:
            pytest.fail(f"no exception; expected {expected.__name__}")
        await client.subscribe(topic, 1)
        await client.publish(topic, b"still alive", qos=1)
        [m] = await receive(client)
        assert m.payload == b"still alive"


@pytest.mark.asyncio
async def test_payload_over_the_mqtt_limit_raises_value_error(make_aio, topic):
    """Over 256 MiB (MQTT's limit) is ValueError at once; max_packet_size limits only what comes
    in, so a payload over it goes out."""
    async with make_aio(max_packet_size=1024) as client:
        with pytest.raises(ValueError, match="256 MiB"):
            await client.publish(topic, bytes(268_435_455), qos=1)
        await client.publish(topic, b"x" * 2048, qos=1)
        await client.subscribe(topic)
        await client.publish(topic, b"small")
        [m] = await receive(client)
        assert m.payload == b"small"


# --------------------------------------------------------------------------- TLS


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    d = tmp_path_factory.mktemp("aio-pki")
    ca, other = trustme.CA(), trustme.CA()
    server = ca.issue_cert("127.0.0.1", "localhost")
    files = {
        "ca": (ca.cert_pem.bytes(), "ca.pem"),
        "other_ca": (other.cert_pem.bytes(), "other-ca.pem"),
        "cert": (server.cert_chain_pems[0].bytes(), "server.pem"),
        "key": (server.private_key_pem.bytes(), "server.key"),
    }
    out = {}
    for name, (data, filename) in files.items():
        (d / filename).write_bytes(data)
        out[name] = str(d / filename)
    return out


@pytest.fixture(scope="module")
def tls_broker(tmp_path_factory: pytest.TempPathFactory, tls_files) -> Iterator[Mosquitto]:
    """A broker whose only listener speaks TLS (the lines below apply to that listener)."""
    b = Mosquitto(
        tmp_path_factory.mktemp("aio-tls-broker"),
        extra_config=[
            f"cafile {tls_files['ca']}",
            f"certfile {tls_files['cert']}",
            f"keyfile {tls_files['key']}",
        ],
    )
    try:
        yield b
    finally:
        b.kill()


@pytest.mark.asyncio
@pytest.mark.parametrize("form", ["ssl_params", "sslcontext"])
async def test_tls_round_trip(tls_broker, tls_files, make_aio, topic, form):
    """ssl=True with ssl_params, or an ssl.SSLContext, as in the blocking client."""
    if form == "ssl_params":
        options: dict[str, Any] = {"ssl": True, "ssl_params": {"ca_certs": tls_files["ca"]}}
    else:
        options = {"ssl": ssl.create_default_context(cafile=tls_files["ca"])}
    async with make_aio(broker=tls_broker, **options) as client:
        await client.subscribe(topic, 2)
        await client.publish(topic, b"secret", qos=2)
        [m] = await receive(client)
        assert (m.payload, m.qos) == (b"secret", 2)


@pytest.mark.asyncio
async def test_tls_unknown_ca_raises_connect_error(tls_broker, tls_files, make_aio):
    client = make_aio(
        broker=tls_broker, ssl=True, ssl_params={"ca_certs": tls_files["other_ca"]}, reconn=False
    )
    with pytest.raises(MQTTConnectError):
        async with deadline(10):
            await client.connect()
    assert client.get_mqttsta() == -1


# --------------------------------------------------------------------------- two worlds at once


@pytest.mark.asyncio
async def test_blocking_and_asyncio_clients_in_one_process(broker, make_aio, topic):
    """A blocking umqtt.MQTTClient on a worker thread and an asyncio client on the loop exchange
    messages both ways at the same time."""
    aio_client = make_aio()
    await aio_client.connect()
    await aio_client.subscribe(f"{topic}/to-aio", 1)
    blocking_ready = threading.Event()
    received: list[bytes] = []

    def blocking_side() -> list[bytes]:
        c = umqtt.MQTTClient(unique_id("blocking"), broker.host, broker.port)
        c.set_callback(lambda t, m: received.append(m))
        try:
            assert c.connect() == 0
            assert c.subscribe(f"{topic}/to-blocking", 1) is True
            blocking_ready.set()
            for i in range(5):
                assert c.publish(f"{topic}/to-aio", b"b%d" % i, qos=1) is True
            wait_until(lambda: (c.check_msg(), len(received) >= 5)[1], 10)
            return list(received)
        finally:
            c.disconnect()

    async def aio_side() -> list[bytes]:
        assert await eventually(blocking_ready.is_set, 10)
        for i in range(5):
            await aio_client.publish(f"{topic}/to-blocking", b"a%d" % i, qos=1)
        return [m.payload for m in await receive(aio_client, 5, timeout=10)]

    async with deadline(20):
        from_aio, to_aio = await asyncio.gather(asyncio.to_thread(blocking_side), aio_side())
    assert from_aio == [b"a%d" % i for i in range(5)]
    assert to_aio == [b"b%d" % i for i in range(5)]


# --------------------------------------------------------------------------- many clients


@pytest.fixture(scope="module")
def crowd_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mosquitto]:
    """A broker for CROWD clients: no connection cap, and the file-descriptor limit raised (soft
    to hard) in this process first, so the broker inherits it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else max(soft, 65536)
    needed = 2 * CROWD + 256
    if target < needed:
        pytest.skip(f"RLIMIT_NOFILE hard limit {hard} < {needed}")
    resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    b = Mosquitto(tmp_path_factory.mktemp("crowd-broker"), extra_config=["max_connections -1"])
    try:
        limits = Path(f"/proc/{b.pid}/limits").read_text()
        [line] = [x for x in limits.splitlines() if x.startswith("Max open files")]
        assert int(line.split()[3]) >= needed, f"broker fd limit too low: {line}"
        yield b
    finally:
        b.kill()
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


class ThreadPeak:
    """Samples /proc/self/task every few ms on one thread (itself counted in the baseline)."""

    def __init__(self) -> None:
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="thread-peak", daemon=True)
        self._thread.start()
        time.sleep(0.02)
        self.baseline = os_threads()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, os_threads())
            time.sleep(0.002)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(2)


async def crowd_exchange(broker: Mosquitto, topic: str) -> list[MQTTClient]:
    """CROWD clients connect at once, each subscribes to its own topic, client i publishes to
    client i+1, and each receives exactly its neighbour's message. Returns the clients."""
    clients = [
        MQTTClient(unique_id(f"crowd{i}"), broker.host, broker.port, connect_timeout=30)
        for i in range(CROWD)
    ]
    try:
        async with deadline(45):
            assert await asyncio.gather(*(c.connect() for c in clients)) == [0] * CROWD
            granted = await asyncio.gather(
                *(c.subscribe(f"{topic}/{i}", 1) for i, c in enumerate(clients))
            )
            assert granted == [1] * CROWD
            inboxes = [asyncio.create_task(receive(c, 1, timeout=30)) for c in clients]
            await asyncio.gather(
                *(
                    c.publish(f"{topic}/{(i + 1) % CROWD}", b"%d" % i, qos=1)
                    for i, c in enumerate(clients)
                )
            )
            got = await asyncio.gather(*inboxes)
        for i, [m] in enumerate(got):
            assert (m.topic, m.payload) == (f"{topic}/{i}", b"%d" % ((i - 1) % CROWD))
        return clients
    except BaseException:
        await asyncio.gather(*(c.disconnect() for c in clients), return_exceptions=True)
        raise


@pytest.mark.asyncio
@pytest.mark.slow
async def test_thousand_clients_cost_no_os_thread_each(crowd_broker, topic):
    """While 1,000 clients connect and exchange messages, the process's OS thread count
    (/proc/self/task: Python and runtime threads alike) stays within a small constant of where
    it started: the clients share the core's runtime rather than a thread each."""
    sampler = ThreadPeak()
    try:
        clients = await crowd_exchange(crowd_broker, topic)
        idle = os_threads()
        async with deadline(30):
            await asyncio.gather(*(c.disconnect() for c in clients))
    finally:
        sampler.stop()
    assert sampler.peak <= sampler.baseline + THREAD_ALLOWANCE, (
        f"{CROWD} clients: OS threads peaked at {sampler.peak} (baseline {sampler.baseline}, "
        f"{idle} when idle afterwards)"
    )


@pytest.mark.asyncio
@pytest.mark.slow
async def test_thousand_clients_in_one_loop(crowd_broker, topic):
    """1,000 asyncio clients in one event loop connect, exchange a message each and disconnect,
    and no Python thread is started for them."""
    python_threads = threading.active_count()
    started = time.monotonic()
    clients = await crowd_exchange(crowd_broker, topic)
    assert threading.active_count() <= python_threads + 1, threading.enumerate()
    assert all(c.get_mqttsta() == 0 for c in clients)
    async with deadline(30):
        await asyncio.gather(*(c.disconnect() for c in clients))
    assert all(c.get_mqttsta() == -1 for c in clients)
    assert time.monotonic() - started < 30

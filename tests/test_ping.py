"""ping() writes a PINGREQ now, on every dialect (mosquitto's log, `log_type all`, is the witness):
one per call, none more while one waits for its PINGRESP, and never a failed link for it."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import pytest
import umqtt
import umqtt.aio
from umqtt.testing import Mosquitto, unique_id, wait_until

BLOCKING = ["quecpython", "simple", "robust"]


def pingreqs(broker: Mosquitto, client_id: str, since: int = 0) -> int:
    return len(broker.log_lines("Received PINGREQ from", client_id, since=since))


def wait_for_pingreqs(broker: Mosquitto, client_id: str, count: int, since: int = 0) -> int:
    """The number of PINGREQs logged once `count` were (or after a generous deadline)."""
    wait_until(lambda: pingreqs(broker, client_id, since) >= count, 10)
    return pingreqs(broker, client_id, since)


@pytest.fixture
def aio_client(mqtt_broker: Mosquitto) -> Iterator[umqtt.aio.MQTTClient]:
    yield umqtt.aio.MQTTClient(unique_id("aio-ping"), mqtt_broker.host, mqtt_broker.port)


@pytest.mark.parametrize("dialect", BLOCKING)
def test_each_ping_writes_a_pingreq(mqtt_broker, mqtt_client, dialect):
    """Three pings, each answered before the next (a QoS 1 round trip comes after the PINGRESP on
    the same link), are three PINGREQs in the broker's log."""
    client = mqtt_client(dialect=dialect)
    since = mqtt_broker.log_size()
    for _ in range(3):
        assert client.ping() is None
        client.publish(f"ping/{client.client_id}", b"", qos=1)
    assert wait_for_pingreqs(mqtt_broker, client.client_id, 3, since) == 3


@pytest.mark.asyncio
async def test_each_ping_writes_a_pingreq_aio(mqtt_broker, aio_client):
    since = mqtt_broker.log_size()
    async with aio_client as client:
        for _ in range(3):
            assert await client.ping() is None
            await client.publish(f"ping/{client.client_id}", b"", qos=1)
        assert wait_for_pingreqs(mqtt_broker, client.client_id, 3, since) == 3


@pytest.mark.parametrize("dialect", BLOCKING)
def test_a_ping_while_one_waits_sends_nothing_and_does_not_fail(
    mqtt_broker_factory, mqtt_client, dialect
):
    """With the broker stopped (SIGSTOP: the link stays up, nothing answers), three pings are one
    PINGREQ; once the broker goes on, it answers that one and the link is still up."""
    broker = mqtt_broker_factory()
    client = mqtt_client(broker=broker, dialect=dialect, keepalive=60)
    since = broker.log_size()
    broker.pause()
    try:
        for _ in range(3):
            assert client.ping() is None
    finally:
        broker.resume()
    client.publish(f"ping/{client.client_id}", b"after", qos=1)  # the broker read all before it
    assert pingreqs(broker, client.client_id, since) == 1
    assert broker.log_lines("Sending PINGRESP to", client.client_id, since=since)
    client.ping()  # answered: the next one is sent
    assert wait_for_pingreqs(broker, client.client_id, 2, since) == 2


@pytest.mark.asyncio
async def test_a_ping_while_one_waits_sends_nothing_aio(mqtt_broker_factory):
    broker = mqtt_broker_factory()
    async with umqtt.aio.MQTTClient(unique_id("aio-ping"), broker.host, broker.port) as client:
        since = broker.log_size()
        broker.pause()
        try:
            for _ in range(3):
                await client.ping()
        finally:
            broker.resume()
        await client.publish(f"ping/{client.client_id}", b"after", qos=1)
        assert pingreqs(broker, client.client_id, since) == 1
        assert client.get_mqttsta() == 0


def test_pinging_all_the_time_keeps_the_link_up(mqtt_broker, mqtt_client):
    """A reader that pings far more often than keepalive (2 s) for over two keepalive periods: the
    answers keep the link alive, and no ping is ever taken for an unanswered one."""
    client = mqtt_client(dialect="simple", keepalive=2)
    started = time.monotonic()
    since = mqtt_broker.log_size()
    while time.monotonic() - started < 4.5:
        client.ping()
        time.sleep(0.02)
    client.publish(f"ping/{client.client_id}", b"still up", qos=1)
    assert wait_for_pingreqs(mqtt_broker, client.client_id, 10, since) >= 10
    assert not mqtt_broker.log_lines("has exceeded timeout", client.client_id, since=since)
    assert len(mqtt_broker.log_lines("New client connected", client.client_id)) == 1


@pytest.mark.parametrize("dialect", ["quecpython", "simple"])
def test_ping_on_a_lost_link_raises_the_network_error(mqtt_broker_factory, mqtt_client, dialect):
    """reconn=False (simple never reconnects): once the link is gone, ping() raises
    MQTTConnectionLost, an OSError, as 0.1 did; before connect() too."""
    broker = mqtt_broker_factory()
    options: dict[str, Any] = {"reconn": False} if dialect == "quecpython" else {}
    client = mqtt_client(broker=broker, dialect=dialect, connect=False, **options)
    with pytest.raises(umqtt.MQTTConnectionLost):
        client.ping()
    client.connect()
    client.ping()
    broker.kill()
    assert wait_until(lambda: client._core.mqttsta() != 0, 10)
    with pytest.raises(OSError) as excinfo:
        client.ping()
    assert isinstance(excinfo.value, umqtt.MQTTConnectionLost)


def test_ping_while_reconnecting_sends_nothing_and_does_not_raise(mqtt_broker_factory, mqtt_client):
    """QuecPython, reconn=True: while the client reconnects by itself, ping() neither raises nor
    queues a PINGREQ for the next connection (the device pattern: a reader looping ping();
    wait_msg() across an outage)."""
    broker = mqtt_broker_factory()
    client = mqtt_client(broker=broker, reconnect_delay=0.2, reconnect_max_delay=0.5)
    broker.stop()
    assert wait_until(lambda: client.get_mqttsta() == 1, 10)
    assert client.ping() is None
    since = broker.log_size()
    broker.start()
    assert wait_until(lambda: client.get_mqttsta() == 0, 20)
    client.publish(f"ping/{client.client_id}", b"back", qos=1)
    assert pingreqs(broker, client.client_id, since) == 0


@pytest.mark.asyncio
async def test_aio_ping_on_a_lost_link_raises(mqtt_broker_factory):
    broker = mqtt_broker_factory()
    client = umqtt.aio.MQTTClient(unique_id("aio-ping"), broker.host, broker.port, reconn=False)
    with pytest.raises(umqtt.MQTTConnectionLost):
        await client.ping()
    await client.connect()
    await client.ping()
    broker.kill()
    for _ in range(500):
        if client.get_mqttsta() != 0:
            break
        await asyncio.sleep(0.02)
    with pytest.raises(umqtt.MQTTConnectionLost):
        await client.ping()
    await client.disconnect()

"""Packet limits: what goes out is limited by MQTT alone (256 MiB), what comes in by
`max_packet_size` (16 MiB by default); a broker that closes the link on a packet too large for it
is named as the likely cause.

The outgoing cases run under MQTT 3.1.1 and MQTT 5 (the mqtt_version fixture). The others are
MQTT 3.1.1's: under MQTT 5 the client announces `max_packet_size` in its CONNECT, so the broker
does not send what is larger, and the broker announces its own in the CONNACK, so a PUBLISH over
it is a ValueError before anything is sent (tests/test_mqtt5.py)."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import umqtt
import umqtt.aio
from umqtt.testing import Mosquitto, unique_id, wait_until


class Bounded:
    """A call on a thread of its own; join() returns its result (or raises what it raised)."""

    def __init__(self, call: Callable[[], Any]) -> None:
        self._outcome: list[Any] = []
        self._thread = threading.Thread(target=self._run, args=(call,), daemon=True)
        self._thread.start()

    def _run(self, call: Callable[[], Any]) -> None:
        try:
            self._outcome.append((True, call()))
        except BaseException as e:
            self._outcome.append((False, e))

    def join(self, timeout: float) -> Any:
        self._thread.join(timeout)
        assert self._outcome, f"still running after {timeout} s"
        ok, value = self._outcome[0]
        if not ok:
            raise value
        return value


MiB = 1024 * 1024
MQTT_MAX_REMAINING = 268_435_455  # the largest remaining length (four length bytes): 256 MiB
BLOCKING = ["quecpython", "simple", "robust"]
TOO_LARGE = "may not accept packets that large"


def logged_publish(broker: Mosquitto, client_id: str, size: int) -> bool:
    """Whether the broker logged a PUBLISH of `size` bytes from the client (it took it)."""
    return wait_until(
        lambda: broker.log_lines("Received PUBLISH from", client_id, f"({size} bytes))"), 30
    )


@pytest.fixture(scope="module")
def over_the_mqtt_limit() -> Iterator[bytes]:
    """A payload one byte too large for MQTT in a QoS 0 PUBLISH to topic "t" (the topic's
    2-byte length, "t", the payload)."""
    payload = bytes(MQTT_MAX_REMAINING - 3 + 1)
    yield payload
    del payload


@pytest.mark.parametrize("dialect", BLOCKING)
def test_a_16_mib_message_publishes_with_default_options(
    mqtt_broker, mqtt_client, dialect, mqtt_version
):
    client = mqtt_client(version=mqtt_version, dialect=dialect)
    client.publish(f"limits/{client.client_id}", bytes(16 * MiB), qos=1)
    assert logged_publish(mqtt_broker, client.client_id, 16 * MiB)


@pytest.mark.asyncio
async def test_a_16_mib_message_publishes_with_default_options_aio(mqtt_broker, mqtt_version):
    async with umqtt.aio.MQTTClient(
        unique_id("aio"), mqtt_broker.host, mqtt_broker.port, version=mqtt_version
    ) as c:
        await c.publish(f"limits/{c.client_id}", bytes(16 * MiB), qos=1)
        assert logged_publish(mqtt_broker, c.client_id, 16 * MiB)


def test_a_100_mib_message_publishes_and_arrives_whole(mqtt_broker, mqtt_client, mqtt_version):
    """100 MiB out with default options; a subscriber that allows it in gets it intact."""
    payload = bytes(range(256)) * (100 * MiB // 256)
    received: list[bytes] = []
    receiver = mqtt_client(
        version=mqtt_version,
        dialect="simple",
        max_packet_size=101 * MiB,
        callback=lambda t, m: received.append(m),
    )
    topic = f"limits/{receiver.client_id}"
    receiver.subscribe(topic, 1)
    sender = mqtt_client(version=mqtt_version, ack_timeout=120)
    assert sender.publish(topic, payload, qos=1) is True
    assert logged_publish(mqtt_broker, sender.client_id, 100 * MiB)
    receiver.wait_msg()
    assert len(received) == 1 and received[0] == payload


@pytest.mark.parametrize("dialect", BLOCKING)
def test_max_packet_size_limits_only_what_comes_in(mqtt_broker, mqtt_client, dialect, mqtt_version):
    """A client allowing 1 KiB in publishes 1 MiB out."""
    client = mqtt_client(version=mqtt_version, dialect=dialect, max_packet_size=1024)
    client.publish(f"limits/{client.client_id}", bytes(MiB), qos=1)
    assert logged_publish(mqtt_broker, client.client_id, MiB)


@pytest.mark.parametrize("dialect", BLOCKING)
def test_over_256_mib_is_refused_at_once(
    mqtt_broker, mqtt_client, dialect, over_the_mqtt_limit, mqtt_version
):
    """ValueError before anything is sent; the client goes on."""
    client = mqtt_client(version=mqtt_version, dialect=dialect)
    since = mqtt_broker.log_size()
    started = time.monotonic()
    with pytest.raises(ValueError, match="256 MiB"):
        client.publish("t", over_the_mqtt_limit)
    assert time.monotonic() - started < 5
    client.publish(f"limits/{client.client_id}", b"small", qos=1)
    assert logged_publish(mqtt_broker, client.client_id, 5)
    assert len(mqtt_broker.log_lines("Received PUBLISH from", client.client_id, since=since)) == 1


@pytest.mark.asyncio
async def test_over_256_mib_is_refused_at_once_aio(mqtt_broker, over_the_mqtt_limit, mqtt_version):
    async with umqtt.aio.MQTTClient(
        unique_id("aio"), mqtt_broker.host, mqtt_broker.port, version=mqtt_version
    ) as c:
        with pytest.raises(ValueError, match="256 MiB"):
            await c.publish("t", over_the_mqtt_limit)
        await c.publish(f"limits/{c.client_id}", b"small", qos=1)


# --------------------------------------------------------------------------- incoming


@pytest.mark.parametrize("dialect", ["quecpython", "simple"])
def test_an_incoming_packet_over_max_packet_size_ends_the_link_clearly(
    mqtt_broker, mqtt_client, dialect
):
    """A message larger than the receiver's max_packet_size: the link ends, and the error names
    the size and max_packet_size (for QuecPython, the error callback too)."""
    notices: list[str] = []
    options: dict[str, Any] = {"reconn": False} if dialect == "quecpython" else {}
    receiver = mqtt_client(
        dialect=dialect, max_packet_size=64 * 1024, callback=lambda t, m: None, **options
    )
    if dialect == "quecpython":
        receiver.error_register_cb(notices.append)
    topic = f"limits/{receiver.client_id}"
    receiver.subscribe(topic, 0)
    mqtt_client(dialect="simple").publish(topic, bytes(100 * 1024), qos=1)
    with pytest.raises(umqtt.MQTTConnectionLost) as excinfo:
        receiver.wait_msg()
    assert "max_packet_size (65536 bytes)" in str(excinfo.value)
    assert isinstance(excinfo.value, OSError)
    if dialect == "quecpython":
        assert wait_until(lambda: notices, 10)
        assert "max_packet_size" in notices[0]


# --------------------------------------------------------------------------- broker limits


@pytest.fixture
def small_broker(mqtt_broker_factory) -> Mosquitto:
    """A broker that closes the connection of a client sending a packet over 1 MiB."""
    return mqtt_broker_factory(extra_config=["max_packet_size 1048576"])


def test_quecpython_publish_the_broker_closes_on_returns_false_with_the_reason(
    small_broker, mqtt_client, caplog
):
    """reconn=True: False at once (not after ack_timeout, not sent again to be refused again),
    the log names the likely cause; the client reconnects and goes on."""
    client = mqtt_client(broker=small_broker, ack_timeout=30, reconnect_delay=0.2)
    caplog.set_level(logging.WARNING, logger="umqtt")
    started = time.monotonic()
    assert client.publish("limits/big", bytes(2 * MiB), qos=1) is False
    assert time.monotonic() - started < 15
    assert TOO_LARGE in caplog.text and "max_packet_size" in caplog.text
    assert client.publish("limits/small", b"x", qos=1) is True
    closes = small_broker.log_lines("disconnected due to oversize packet", client.client_id)
    assert len(closes) == 1


def test_simple_publish_the_broker_closes_on_raises_oserror_with_the_reason(
    small_broker, mqtt_client
):
    """(umqtt.robust reconnects and publishes again on that OSError, for ever, as on the device.)"""
    client = mqtt_client(broker=small_broker, dialect="simple")
    with pytest.raises(OSError, match=TOO_LARGE):
        client.publish("limits/big", bytes(2 * MiB), qos=1)
    client.connect()
    client.publish("limits/small", b"x", qos=1)


@pytest.mark.asyncio
async def test_aio_publish_the_broker_closes_on_raises_with_the_reason(small_broker):
    client = umqtt.aio.MQTTClient(
        unique_id("aio"), small_broker.host, small_broker.port, reconnect_delay=0.2
    )
    async with client:
        with pytest.raises(umqtt.MQTTConnectionLost, match=TOO_LARGE):
            await client.publish("limits/big", bytes(2 * MiB), qos=1)
        for _ in range(500):
            if client.get_mqttsta() == 0:
                break
            await asyncio.sleep(0.02)
        await client.publish("limits/small", b"x", qos=1)


def test_a_small_publish_lost_with_a_large_one_is_sent_again(small_broker, mqtt_client):
    """Only the large PUBLISH is not sent again: a small QoS 1 one outstanding on the same link
    is sent after the reconnect (at least once), whichever of the two went first."""
    received: list[bytes] = []
    watcher = mqtt_client(broker=small_broker, callback=lambda t, m: received.append(m))
    watcher.subscribe("limits/#", 1)
    client = mqtt_client(broker=small_broker, ack_timeout=30, reconnect_delay=0.2)
    small_broker.pause()  # both are handed over before the broker reads either
    try:
        big = Bounded(lambda: client.publish("limits/big", bytes(2 * MiB), qos=1))
        small = Bounded(lambda: client.publish("limits/small", b"x", qos=1))
        time.sleep(0.3)  # (not needed for the outcome, only for both to be outstanding)
    finally:
        small_broker.resume()
    assert big.join(30) is False
    assert small.join(30) is True
    assert wait_until(lambda: watcher.check_msg() or b"x" in received, 10)

"""client.stats() (issue 23): per-client counters on every dialect, checked after known traffic
against mosquitto: messages and bytes each way (whole MQTT packets, counted exactly, under MQTT
3.1.1 and MQTT 5), reconnects
and the last error across a broker restart, what is in flight and queued while the broker is
stopped (SIGSTOP), and what arrived unread."""

from __future__ import annotations

import asyncio
import threading
from typing import Any, Callable

import pytest
import umqtt
import umqtt.aio
import umqtt.simple
from broker import Mosquitto, free_port, unique_id, wait_until

KEYS = {
    "messages_sent": int,
    "messages_received": int,
    "bytes_sent": int,
    "bytes_received": int,
    "reconnects": int,
    "last_error": type(None),
    "inflight": int,
    "queued": int,
    "unread": int,
    "outbox_refused": int,
}


def packet(remaining: int) -> int:
    """The size of an MQTT packet: its fixed header (type byte and remaining length) and rest."""
    length_bytes = 1
    while remaining >= 128**length_bytes:
        length_bytes += 1
    return 1 + length_bytes + remaining


@pytest.mark.parametrize("dialect", ["quecpython", "simple", "robust", "aio"])
def test_every_dialect_has_stats(mqtt_client: Callable[..., Any], dialect: str) -> None:
    client = mqtt_client(dialect=dialect, connect=False)
    stats = client.stats()
    assert {key: type(value) for key, value in stats.items()} == KEYS
    assert set(stats.values()) == {0, None}


@pytest.mark.parametrize("version", [4, 5])
def test_messages_and_bytes_after_known_traffic(
    broker: Mosquitto, topic: str, version: int
) -> None:
    """A subscribe and N QoS 1 publishes to the client's own topic: each way, N PUBLISHes and N
    PUBACKs, plus CONNECT/SUBSCRIBE out and CONNACK/SUBACK in, byte for byte. MQTT 5 packets
    carry their properties' length (0 here but for the CONNECT's maximum packet size and the
    CONNACK's receive maximum and topic alias maximum) and a SUBACK its reason code; a PUBACK
    that accepts, without properties, is as short as MQTT 3.1.1's."""
    count, payload = 20, b"0123456789"
    client_id = unique_id("stats")
    got: list[bytes] = []
    c = umqtt.MQTTClient(client_id, broker.host, broker.port, keepalive=60, version=version)
    c.set_callback(lambda t, m: got.append(m))
    c.connect()
    assert c.subscribe(topic, 1)
    for _ in range(count):
        assert c.publish(topic, payload, qos=1)
    assert wait_until(lambda: (c.check_msg(), len(got) >= count)[1], 10)

    properties = 1 if version == 5 else 0  # their length: 0 bytes of properties
    # 3.1.1 variable header (MQTT 5: then the properties, a maximum packet size), the client id
    connect = packet(10 + (1 + 5) * properties + 2 + len(client_id))
    subscribe = packet(2 + properties + 2 + len(topic) + 1)
    publish = packet(2 + len(topic) + 2 + properties + len(payload))
    puback = 4
    sent = connect + subscribe + count * (publish + puback)
    connack = packet(2 + (1 + 3 + 3) * properties)
    suback = packet(2 + properties + 1)
    received = connack + suback + count * (publish + puback)
    # Our PUBACKs leave once the callback has run: wait for the last one.
    assert wait_until(lambda: c.stats()["bytes_sent"] == sent, 10), (c.stats(), sent)
    stats = c.stats()
    assert stats["messages_sent"] == count and stats["messages_received"] == count
    assert stats["bytes_received"] == received
    assert (stats["inflight"], stats["queued"], stats["unread"]) == (0, 0, 0)
    c.disconnect()
    assert c.stats()["bytes_sent"] == sent + 2  # DISCONNECT


def test_reconnects_and_the_last_error(
    fresh_broker: Mosquitto, mqtt_client: Callable[..., Any]
) -> None:
    c = mqtt_client(broker=fresh_broker, reconnect_delay=0.2, reconnect_max_delay=0.5)
    fresh_broker.stop()
    assert wait_until(lambda: c.stats()["last_error"] is not None, 10)
    error = c.stats()["last_error"]
    assert f"127.0.0.1:{fresh_broker.port}" in error and "lost" in error, error
    fresh_broker.start()
    assert wait_until(lambda: c.stats()["reconnects"] == 1, 15), c.stats()
    assert c.get_mqttsta() == 0


def test_a_failed_connect_is_the_last_error() -> None:
    c = umqtt.MQTTClient(unique_id(), "127.0.0.1", free_port(), reconn=False)
    with pytest.raises(umqtt.MQTTConnectError) as failed:
        c.connect()
    assert c.stats()["last_error"] == str(failed.value)


def test_unread_messages(mqtt_client: Callable[..., Any], topic: str) -> None:
    c = mqtt_client(callback=lambda t, m: None)
    assert c.subscribe(topic, 0)
    for i in range(3):
        assert c.publish(topic, b"%d" % i)
    assert wait_until(lambda: c.stats()["unread"] == 3, 10), c.stats()
    c.check_msg()
    assert c.stats()["unread"] == 0


def test_in_flight_and_queued_while_the_broker_is_stopped(
    fresh_broker: Mosquitto, topic: str
) -> None:
    """With the broker stopped (SIGSTOP), QoS 1 PUBLISHes are written but not acknowledged: the
    first 100 (rumqttc's window) are in flight, the rest queued. All are acknowledged once it
    resumes. The asyncio client: one task per publish, no thread each."""
    total, window = 110, 100

    async def run() -> list[dict[str, Any]]:
        seen: list[dict[str, Any]] = []
        async with umqtt.aio.MQTTClient(
            unique_id(), fresh_broker.host, fresh_broker.port, ack_timeout=60
        ) as c:
            fresh_broker.pause()
            try:
                tasks = [asyncio.ensure_future(c.publish(topic, b"x", qos=1)) for _ in range(total)]
                for _ in range(1000):
                    stats = c.stats()
                    if (stats["inflight"], stats["queued"]) == (window, total - window):
                        break
                    await asyncio.sleep(0.01)
                seen.append(c.stats())
            finally:
                fresh_broker.resume()
            await asyncio.gather(*tasks)
            seen.append(c.stats())
        return seen

    during, after = asyncio.run(run())
    assert (during["inflight"], during["queued"]) == (window, total - window), during
    assert (after["inflight"], after["queued"]) == (0, 0), after
    assert after["messages_sent"] == total


def test_with_an_outbox_the_waiting_messages_are_in_the_outbox_not_queued(
    fresh_broker: Mosquitto, topic: str, tmp_path: Any
) -> None:
    """With persistence=, publish() returns once the message is stored; the outbox hands rumqttc
    what its window of 100 packet ids allows. With the broker stopped (SIGSTOP): 100 in flight,
    the rest waiting in the outbox (outbox_size() counts all 110), none in the core's queue."""
    total, window = 110, 100
    c = umqtt.simple.MQTTClient(
        unique_id(), fresh_broker.host, fresh_broker.port, persistence=tmp_path / "o.sqlite"
    )
    c.connect()
    fresh_broker.pause()
    try:
        for _ in range(total):
            c.publish(topic, b"x", qos=1)
        assert c.outbox_size() == total
        assert wait_until(lambda: c.stats()["inflight"] == window, 10), c.stats()
        assert c.stats()["queued"] == 0 and c.outbox_size() == total
    finally:
        fresh_broker.resume()
    c.flush(30)
    assert (c.stats()["inflight"], c.outbox_size()) == (0, 0)
    assert c.stats()["messages_sent"] == total
    c.disconnect()


@pytest.mark.parametrize("end", ["lost", "disconnect"])
def test_nothing_is_in_flight_once_the_link_ends(
    fresh_broker: Mosquitto, topic: str, end: str
) -> None:
    """QoS 1 PUBLISHes in flight (the broker stopped with SIGSTOP, so they stay unacknowledged)
    fail when the link ends, lost (the broker killed as it is; no reconnect here) or by
    disconnect() (which waits for them up to ack_timeout): the counter says 0 then, not what was
    in flight before. A publish that timed out is still in flight until then."""

    async def run() -> tuple[dict[str, Any], dict[str, Any], list[Any]]:
        c = umqtt.aio.MQTTClient(
            unique_id(), fresh_broker.host, fresh_broker.port, reconn=False, ack_timeout=2
        )
        await c.connect()
        try:
            fresh_broker.pause()
            tasks = [asyncio.ensure_future(c.publish(topic, b"x", qos=1)) for _ in range(5)]
            for _ in range(1000):
                if c.stats()["inflight"] == 5:
                    break
                await asyncio.sleep(0.01)
            during = c.stats()
            if end == "lost":
                assert fresh_broker.proc is not None
                fresh_broker.proc.kill()  # SIGKILL needs no SIGCONT: it never answers them
                fresh_broker.proc.wait(10)
            else:
                await c.disconnect()
            outcomes = await asyncio.gather(*tasks, return_exceptions=True)
            return during, c.stats(), outcomes
        finally:
            await c.disconnect()
            fresh_broker.resume()

    during, after, outcomes = asyncio.run(run())
    assert during["inflight"] == 5, during
    assert all(isinstance(o, umqtt.MQTTException) for o in outcomes), outcomes
    assert after["inflight"] == 0, after


def test_stats_from_another_thread_while_publishing(mqtt_client: Callable[..., Any]) -> None:
    """Reading the counters never blocks the client, and they only grow."""
    c = mqtt_client()
    stop = threading.Event()
    seen: list[int] = []

    def read() -> None:
        while not stop.is_set():
            seen.append(c.stats()["bytes_sent"])

    reader = threading.Thread(target=read)
    reader.start()
    try:
        for _ in range(2000):
            assert c.publish("stats/load", b"x" * 32)
    finally:
        stop.set()
        reader.join(10)
    assert seen == sorted(seen)
    assert wait_until(lambda: c.stats()["messages_sent"] == 2000, 10)

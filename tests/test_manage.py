"""manage=True: after a reconnect the subscriptions are sent again about 3 s later, not at once
(the device's osTimer); manage=False sends them at once."""

from __future__ import annotations

import time

import pytest
from umqtt.testing import Mosquitto, wait_until

DELAY = 3.0  # the device's


def first_seen(broker: Mosquitto, *needles: str, since: int, timeout: float) -> float | None:
    """When (time.monotonic()) a log line with all `needles` was first seen, polling every 10 ms."""
    if wait_until(lambda: broker.log_lines(*needles, since=since), timeout, interval=0.01):
        return time.monotonic()
    return None


@pytest.mark.parametrize("manage", [True, False])
def test_resubscription_after_a_reconnect(mqtt_broker_factory, mqtt_client, manage):
    broker = mqtt_broker_factory()
    received: list[bytes] = []
    client = mqtt_client(
        broker=broker,
        manage=manage,
        reconnect_delay=0.2,
        reconnect_max_delay=0.5,
        callback=lambda t, m: received.append(m),
    )
    topic = f"manage/{client.client_id}"
    assert client.subscribe(topic, 1) is True
    assert client.manage is manage
    broker.stop()
    since = broker.log_size()
    broker.start()  # persistence off: the broker forgot the subscription
    connected = first_seen(
        broker, "New client connected", client.client_id, since=since, timeout=30
    )
    assert connected is not None
    subscribed = first_seen(
        broker, "Received SUBSCRIBE from", client.client_id, since=since, timeout=30
    )
    assert subscribed is not None
    gap = subscribed - connected
    if manage:
        assert gap >= DELAY - 1.0, f"re-subscribed {gap:.2f} s after reconnecting"
        assert gap < DELAY + 10
    else:
        assert gap < DELAY - 1.0, f"re-subscribed {gap:.2f} s after reconnecting"
    publisher = mqtt_client(broker=broker, dialect="simple")
    publisher.publish(topic, b"after the restart", qos=1)
    assert wait_until(lambda: client.check_msg() or received, 10)
    assert received == [b"after the restart"]


def test_managed_resubscription_is_dropped_when_the_link_goes_first(
    mqtt_broker_factory, mqtt_client
):
    """A link lost again within the 3 s: that connection's re-subscription is not sent on the
    next one, which sends its own, 3 s after it came up (one SUBSCRIBE, not two)."""
    broker = mqtt_broker_factory()
    client = mqtt_client(
        broker=broker,
        manage=True,
        reconnect_delay=0.2,
        reconnect_max_delay=0.5,
        callback=lambda t, m: None,
    )
    assert client.subscribe(f"manage/{client.client_id}", 1) is True
    broker.stop()
    since = broker.log_size()
    broker.start()
    assert first_seen(broker, "New client connected", client.client_id, since=since, timeout=30)
    broker.stop()  # within the 3 s
    since = broker.log_size()
    broker.start()
    connected = first_seen(
        broker, "New client connected", client.client_id, since=since, timeout=30
    )
    assert connected is not None
    subscribed = first_seen(
        broker, "Received SUBSCRIBE from", client.client_id, since=since, timeout=30
    )
    assert subscribed is not None and subscribed - connected >= DELAY - 1.0
    time.sleep(1.0)  # a second SUBSCRIBE, if one were coming, would be in the log by now
    assert len(broker.log_lines("Received SUBSCRIBE from", client.client_id, since=since)) == 1

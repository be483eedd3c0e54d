"""The outbox on disk at `version=5` (issues 24 and 25): a message the broker refuses for good (an
MQTT 5 reason code of 0x80 or above) is removed from the outbox, logged and counted
(`stats()["outbox_refused"]`), never sent again, and the messages after it go on; the packet log
shows the refusal's reason code.

mosquitto's dynamic-security plugin refuses publishes to `nopub/#` (tests/test_mqtt5.py's
`acl_broker`): a QoS 1 PUBLISH gets PUBACK 0x87, a QoS 2 PUBLISH PUBREC 0x87. The witness is a
paho MQTT 5 subscriber of everything. What works at version=5 as at version=4 (the order, the
limits, flush(), QoS 2 exactly once, kill -9 with the properties kept) is in test_outbox.py and
test_outbox_faults.py, parametrized over the version."""

from __future__ import annotations

import logging
import re

import pytest
from broker import BOB, unique_id, wait_until
from test_mqtt5 import acl_broker  # noqa: F401 - a fixture
from test_outbox import rows


@pytest.mark.parametrize("qos", [1, 2])
def test_a_refused_message_is_removed_logged_counted_and_never_sent_again(
    acl_broker,  # noqa: F811 - the fixture imported above
    make_client,
    make_peer,
    tmp_path,
    umqtt_log,
    qos,
):
    allowed, refused = f"allowed/{unique_id()}", f"nopub/{unique_id()}"
    peer = make_peer(acl_broker, username=BOB[0], password=BOB[1], mqtt5=True)
    peer.subscribe(f"{allowed}/#", 2)
    path = tmp_path / "o.sqlite"
    c = make_client(broker=acl_broker, persistence=path, version=5, reconnect_delay=0.2)
    properties = {"user_properties": [("k", "v")]}
    for topic in (f"{allowed}/before", refused, f"{allowed}/after"):
        assert c.publish(topic, b"x", qos=qos, properties=properties) is True
    assert c.outbox_size() == 3
    c.connect()
    assert c.flush(30) is True
    assert c.outbox_size() == 0
    assert c.stats()["outbox_refused"] == 1
    target = f"127.0.0.1:{acl_broker.port}"
    said = (
        f'{target} refused the outbox\'s message to "{refused}" with 0x87 Not authorized: '
        "removed from the outbox, not sent again"
    )
    warnings = [r.getMessage() for r in umqtt_log.records(logging.WARNING)]
    assert said in warnings, warnings
    # The packet log (DEBUG) shows the acknowledgement with its reason code.
    refusal = "PUBACK" if qos == 1 else "PUBREC"
    packets = [r.getMessage() for r in umqtt_log.records() if r.name == "umqtt.packets"]
    assert any(
        re.fullmatch(rf"Received {refusal} \(Mid: \d+\) reasonCode=0x87 Not authorized", line)
        for line in packets
    ), packets
    expected = [f"{allowed}/before", f"{allowed}/after"]
    assert wait_until(lambda: [m.topic for m in peer.received()] == expected, 10)
    assert all(m.properties["user_properties"] == [("k", "v")] for m in peer.received())
    # Not in the file either: nothing is left to send after a restart.
    assert rows(path) == []

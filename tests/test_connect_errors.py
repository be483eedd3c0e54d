"""What connect() refuses before sending anything (what MQTT 3.1.1 and 3.1 forbid) is the
dialect's connect error: MQTTConnectError, both a ValueError and an MQTTException, in every
dialect (for umqtt.simple/robust it is not an OSError, so umqtt.robust does not retry it), with a
message that says why; the broker sees no connection at all."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import umqtt
import umqtt.aio
import umqtt.robust
import umqtt.simple
from umqtt.testing import Mosquitto

CLASSES = {
    "quecpython": umqtt.MQTTClient,
    "simple": umqtt.simple.MQTTClient,
    "robust": umqtt.robust.MQTTClient,
    "aio": umqtt.aio.MQTTClient,
}
REFUSALS = [
    pytest.param({"client_id": ""}, False, "client_id is empty", id="empty-client_id-persistent"),
    pytest.param({"password": "secret"}, True, "password without a user name", id="password-only"),
    pytest.param(
        {"user": "", "password": b"secret"}, True, "password without a user name", id="empty-user"
    ),
]


def connect(client: Any, clean_session: bool) -> Any:
    if isinstance(client, umqtt.aio.MQTTClient):
        return asyncio.run(client.connect(clean_session))
    return client.connect(clean_session)


@pytest.mark.parametrize(("options", "clean_session", "reason"), REFUSALS)
@pytest.mark.parametrize("dialect", CLASSES)
def test_refused_before_sending(mqtt_broker_factory, dialect, options, clean_session, reason):
    broker: Mosquitto = mqtt_broker_factory()
    options = {"client_id": "refused", **options}
    client = CLASSES[dialect](server=broker.host, port=broker.port, **options)
    since = broker.log_size()
    with pytest.raises(umqtt.MQTTConnectError) as excinfo:
        connect(client, clean_session)
    error = excinfo.value
    assert isinstance(error, ValueError) and isinstance(error, umqtt.MQTTException)
    assert not isinstance(error, OSError)
    assert reason in str(error) and "nothing was sent" in str(error)
    assert error.rc is None
    # (Not "New connection": the broker's readiness probe may be logged late.)
    assert not broker.log_lines("New client connected", since=since)
    assert not broker.log_lines("protocol error", since=since)


def test_robust_reconnect_does_not_retry_a_refusal_before_sending(mqtt_broker):
    """reconnect() retries OSErrors for ever; this one it lets through at once."""
    client = umqtt.robust.MQTTClient("", mqtt_broker.host, mqtt_broker.port)
    client.DELAY = 0
    with pytest.raises(umqtt.MQTTConnectError, match="client_id is empty"):
        client.reconnect()  # connect(False)


@pytest.mark.parametrize("dialect", ["quecpython", "simple"])
def test_the_same_client_connects_once_the_cause_is_gone(mqtt_broker, dialect):
    client = CLASSES[dialect]("", mqtt_broker.host, mqtt_broker.port)
    with pytest.raises(umqtt.MQTTConnectError):
        client.connect(False)
    assert client.connect(True) == 0
    client.disconnect()

"""version=3 is MQTT 3.1 on the wire (protocol name MQIsdp, level 3: mosquitto logs it as "p1"),
version=4 MQTT 3.1.1 ("p2"), version=5 MQTT 5 ("p5"), on every dialect and in the CLI's -V;
anything else is refused."""

from __future__ import annotations

import threading

import pytest
import umqtt
import umqtt.aio
import umqtt.robust
import umqtt.simple
from umqtt import cli
from umqtt.testing import Mosquitto, unique_id, wait_until

BLOCKING = ["quecpython", "simple", "robust"]
CLASSES = [umqtt.MQTTClient, umqtt.simple.MQTTClient, umqtt.robust.MQTTClient, umqtt.aio.MQTTClient]
LEVELS = [(3, "p1"), (4, "p2"), (5, "p5")]


def protocol(broker: Mosquitto, client_id: str) -> str:
    """The protocol of the client's last CONNECT as mosquitto logged it: p1 (3.1), p2 (3.1.1),
    p5 (5)."""
    return broker.connect_flags(client_id).split(", ")[0]


@pytest.mark.parametrize(("version", "logged"), LEVELS)
@pytest.mark.parametrize("dialect", BLOCKING)
def test_version_is_the_protocol_level_and_messages_go_round(
    mqtt_broker, mqtt_client, dialect, version, logged
):
    received: list[tuple[bytes, bytes]] = []
    client = mqtt_client(
        dialect=dialect, version=version, callback=lambda t, m: received.append((t, m))
    )
    assert protocol(mqtt_broker, client.client_id) == logged
    topic = f"mqtt31/{client.client_id}"
    client.subscribe(topic, 1)
    client.publish(topic, b"over MQTT %d" % version, qos=1)
    while not received:
        client.wait_msg()
    assert received == [(topic.encode(), b"over MQTT %d" % version)]


@pytest.mark.asyncio
@pytest.mark.parametrize(("version", "logged"), LEVELS)
async def test_version_is_the_protocol_level_aio(mqtt_broker, version, logged):
    client_id = unique_id("aio-v")
    async with umqtt.aio.MQTTClient(
        client_id, mqtt_broker.host, mqtt_broker.port, version=version
    ) as client:
        assert protocol(mqtt_broker, client_id) == logged
        topic = f"mqtt31/{client_id}"
        await client.subscribe(topic, 1)
        await client.publish(topic, b"aio", qos=1)
        async for message in client.messages():
            assert (message.topic, message.payload) == (topic, b"aio")
            break


def test_mqtt31_keeps_a_session(mqtt_broker, mqtt_client):
    """clean_session=False under MQTT 3.1: the broker keeps the subscription and the QoS 1
    message sent while the client was away."""
    received: list[bytes] = []
    client = mqtt_client(version=3, clean_session=False, callback=lambda t, m: received.append(m))
    topic = f"mqtt31/{client.client_id}"
    assert client.subscribe(topic, 1) is True
    client.disconnect()
    other = mqtt_client(dialect="simple", version=3)
    other.publish(topic, b"kept", qos=1)
    client.connect(False)
    assert wait_until(lambda: client.check_msg() or received, 10)
    assert received == [b"kept"]


def test_a_long_client_id_is_the_brokers_to_refuse(mqtt_broker, mqtt_client):
    """MQTT 3.1 allows 23-byte client ids; a longer one is sent as it is (mosquitto takes it)."""
    client_id = unique_id("a-client-id-longer-than-23-bytes")
    assert len(client_id) > 23
    mqtt_client(client_id=client_id, version=3)
    assert protocol(mqtt_broker, client_id) == "p1"


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__module__)
@pytest.mark.parametrize("version", [0, 1, 2, 6, -4, 311])
def test_other_versions_are_refused_naming_3_4_and_5(mqtt_broker, cls, version):
    with pytest.raises(ValueError) as excinfo:
        cls("x", mqtt_broker.host, mqtt_broker.port, version=version)
    text = str(excinfo.value)
    assert "version" in text and all(n in text for n in ("3", "4", "5")), text


@pytest.mark.parametrize("dialect", BLOCKING)
def test_version_none_counts_as_not_given(mqtt_broker, mqtt_client, dialect):
    """None is MQTT 3.1.1, the default (as for other arguments, None counts as not given)."""
    client = mqtt_client(dialect=dialect, version=None)
    assert protocol(mqtt_broker, client.client_id) == "p2"


@pytest.mark.parametrize("version", ["4", 4.0, b"4"])
def test_version_must_be_an_int(mqtt_broker, version):
    with pytest.raises(TypeError, match="version"):
        umqtt.MQTTClient("x", mqtt_broker.host, mqtt_broker.port, version=version)


def test_quecpython_version_is_positional(mqtt_broker, mqtt_client):
    """The device's order: ..., reconn, version, pingmaxnum, manage, ipvtype."""
    client_id = unique_id()
    client = umqtt.MQTTClient(
        client_id, mqtt_broker.host, mqtt_broker.port, None, None, 60, False, {}, True, 3
    )
    try:
        client.connect()
        assert client.version == 3
        assert protocol(mqtt_broker, client_id) == "p1"
    finally:
        client.disconnect()


@pytest.mark.parametrize(
    ("flag", "logged"),
    [
        *[("mqttv31", "p1"), ("31", "p1"), ("3", "p1")],
        *[("mqttv311", "p2"), ("311", "p2"), ("4", "p2")],
        *[("mqttv5", "p5"), ("5", "p5")],
    ],
)
def test_cli_pub_takes_mosquittos_protocol_names(mqtt_broker, flag, logged):
    """mosquitto_pub's names of the versions, and their numbers in the protocol (3, 4, 5)."""
    client_id = unique_id("cli")
    where = ["-h", mqtt_broker.host, "-p", str(mqtt_broker.port), "-i", client_id]
    assert (
        cli.main(["pub", *where, "-V", flag, "-t", f"cli/{client_id}", "-m", "x", "-q", "1"]) == 0
    )
    assert protocol(mqtt_broker, client_id) == logged


def test_cli_sub_speaks_mqtt31(mqtt_broker, mqtt_client, capsysbinary):
    client_id = unique_id("cli")
    topic = f"cli/{client_id}"
    where = ["-h", mqtt_broker.host, "-p", str(mqtt_broker.port), "-i", client_id]
    publisher = mqtt_client(dialect="simple")

    def publish_once_subscribed() -> None:
        wait_until(lambda: mqtt_broker.log_lines("Received SUBSCRIBE from", client_id), 10)
        publisher.publish(topic, b"3.1 works", qos=1)

    feeder = threading.Thread(target=publish_once_subscribed, daemon=True)
    feeder.start()
    assert (
        cli.main(
            ["sub", *where, "--protocol-version", "mqttv31", "-t", topic, "-C", "1", "-W", "20"]
        )
        == 0
    )
    feeder.join(10)
    assert capsysbinary.readouterr().out == b"3.1 works\n"
    assert protocol(mqtt_broker, client_id) == "p1"


def test_cli_refuses_an_unknown_protocol_version(capsys):
    with pytest.raises(SystemExit) as excinfo:
        cli.main(["pub", "-V", "mqttv4", "-t", "t", "-m", "x"])
    assert excinfo.value.code == 2
    assert "mqttv311" in capsys.readouterr().err

"""MQTT 5 (`version=5`, issue 25) on every dialect: the session (assigned client id, CONNACK
properties, clean_session as session expiry), reason codes (refused requests, CONNACK refusals, a
broker's DISCONNECT), the broker's limits obeyed before sending, MQTT 5-only arguments refused
under 3.1.1, and what already worked at version=4 (reconnect and re-subscribe, manual acks,
ping, Ctrl-C).

Witnesses: mosquitto's log (protocol p5, CONNECT flags, SUBSCRIBE, PUBACK), a paho MQTT 5 peer
and, for refusals and DISCONNECT reasons, mosquitto's dynamic-security plugin (it refuses
publishes and subscriptions per ACL and disconnects a client on `disableClient`). Properties on
the wire are tests/test_mqtt5_properties.py's.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from collections.abc import Iterator
from typing import Any, Callable

import pytest
import umqtt
import umqtt.aio
import umqtt.robust
import umqtt.simple
import wire
from broker import (
    ALICE,
    BOB,
    FORBIDDEN,
    Mosquitto,
    assert_ctrl_c_interrupts,
    bounded,
    unique_id,
    wait_until,
)
from conftest import paho_properties
from paho.mqtt.packettypes import PacketTypes
from test_micropython import CTRL_C_SCRIPT
from umqtt import MQTTConnectError, MQTTConnectionLost, MQTTException

V5 = {"version": 5}
FAST = {"reconnect_delay": 0.2, "reconnect_max_delay": 1.0}
BLOCKING = ["quecpython", "simple", "robust"]
NO_PUBLISH = "nopub/#"  # acl_broker refuses publishes here (PUBACK 0x87)


@pytest.fixture(scope="module")
def acl_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mosquitto]:
    """ALICE and BOB; dynsec refuses SUBSCRIBE to forbidden/# and PUBLISH to nopub/#, and takes
    commands on $CONTROL/dynamic-security/v1 (disableClient)."""
    b = Mosquitto(
        tmp_path_factory.mktemp("acl-broker"),
        users=dict([ALICE, BOB]),
        deny_subscribe=[FORBIDDEN],
        deny_publish=[NO_PUBLISH],
        dynsec_control=True,
    )
    try:
        yield b
    finally:
        b.kill()


@pytest.fixture(scope="module")
def limits_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mosquitto]:
    """A broker with small limits, which MQTT 5 announces in its CONNACK."""
    b = Mosquitto(
        tmp_path_factory.mktemp("limits-broker"),
        extra_config=[
            "max_packet_size 400",
            "max_qos 1",
            "retain_available false",
            "max_inflight_messages 2",
            "max_keepalive 10",
        ],
    )
    try:
        yield b
    finally:
        b.kill()


def dynsec(broker: Mosquitto, command: str, username: str) -> None:
    """A dynamic-security command (sent as ALICE): disableClient disconnects `username`'s
    clients (DISCONNECT 0x98) and refuses them until enableClient."""
    admin = umqtt.simple.MQTTClient(
        unique_id("admin"), broker.host, broker.port, user=ALICE[0], password=ALICE[1], **V5
    )
    admin.connect()
    commands = {"commands": [{"command": command, "username": username}]}
    admin.publish("$CONTROL/dynamic-security/v1", json.dumps(commands), qos=1)
    admin.disconnect()


# --------------------------------------------------------------------------- the session


@pytest.mark.parametrize("dialect", BLOCKING)
def test_an_empty_client_id_becomes_the_assigned_one_and_is_reused(
    fresh_broker, make_client, dialect
):
    """The broker assigns an id to an empty client_id: it is client.client_id, and the
    reconnect after the broker restarted sends it (mosquitto logs the same id again)."""
    options = FAST if dialect == "quecpython" else {}
    c = make_client(broker=fresh_broker, dialect=dialect, client_id="", **V5, **options)
    c.set_callback(lambda t, m: None)
    c.connect()
    assigned = c.connack_properties["assigned_client_identifier"]
    assert c.client_id == assigned and assigned.startswith("auto-")
    assert c._core.client_id == assigned
    mark = fresh_broker.log_size()
    fresh_broker.restart()
    if dialect != "quecpython":
        c.connect()  # MicroPython's dialects reconnect when told
    assert fresh_broker.wait_for_log(f"as {assigned} (p5", timeout=20, since=mark)
    assert c.client_id == assigned


def test_connack_properties_are_the_brokers_and_empty_under_mqtt_311(broker, make_client):
    c5 = make_client(**V5)
    c5.connect()
    props = c5.connack_properties
    assert props["receive_maximum"] >= 1 and "topic_alias_maximum" in props
    c4 = make_client()
    c4.connect()
    assert c4.connack_properties == {}


@pytest.mark.parametrize(("clean_session", "flags"), [(True, "c1"), (False, "c0")])
def test_clean_session_is_clean_start_and_false_keeps_the_session(
    broker, make_client, make_peer, topic, client_id, clean_session, flags
):
    """clean_session maps to clean start; False asks for a session that outlives the connection
    (expiry 0xFFFFFFFF): a QoS 1 message sent while the client was away is delivered."""
    got: list[bytes] = []
    c = make_client(client_id=client_id, **V5)
    c.set_callback(lambda t, m: got.append(m))
    c.connect(clean_session)
    assert flags in broker.connect_flags(client_id).split(", ")
    assert c.subscribe(topic, 1) is True
    c.disconnect()
    make_peer(broker, mqtt5=True).publish(topic, b"while away", qos=1)
    try:
        present = c.connect(clean_session)
        if clean_session:
            assert present == 0
            return
        assert present == 1
        assert wait_until(lambda: c.check_msg() or got, 10)
        assert got == [b"while away"]
    finally:
        c.connect(True)  # drop the session from the shared broker


def test_connect_properties_session_expiry_overrides_clean_session(broker, make_client, topic):
    """session_expiry_interval=0 with clean_session=False: the broker keeps no session."""
    cid = unique_id("expiry")
    c = make_client(client_id=cid, connect_properties={"session_expiry_interval": 0}, **V5)
    c.set_callback(lambda t, m: None)
    c.connect(False)
    c.subscribe(topic, 1)
    c.disconnect()
    assert c.connect(False) == 0


# --------------------------------------------------------------------------- MQTT 5 only


@pytest.mark.parametrize("version", [3, 4])
@pytest.mark.parametrize(
    "call",
    [
        lambda c, t: c.publish(t, b"x", properties={"content_type": "x"}),
        lambda c, t: c.subscribe(t, 1, no_local=True),
        lambda c, t: c.subscribe(t, 1, retain_as_published=True),
        lambda c, t: c.subscribe(t, 1, retain_handling=1),
        lambda c, t: c.subscribe(t, 1, properties={"subscription_identifier": 1}),
        lambda c, t: c.set_last_will(t, b"x", properties={"will_delay_interval": 1}),
    ],
    ids=["publish", "no_local", "retain_as_published", "retain_handling", "sub-ids", "will"],
)
def test_mqtt5_arguments_need_version_5(broker, make_client, topic, version, call):
    c = make_client(version=version)
    c.set_callback(lambda t, m: None)
    c.connect()
    with pytest.raises(ValueError, match="needs version=5"):
        call(c, topic)


@pytest.mark.parametrize("dialect", ["quecpython", "simple", "aio"])
def test_connect_properties_need_version_5(broker, make_client, dialect):
    with pytest.raises(ValueError, match="connect_properties needs version=5"):
        make_client(dialect=dialect, connect=False, connect_properties={})


@pytest.mark.asyncio
async def test_request_needs_version_5(broker, make_aio, topic):
    async with make_aio() as client:
        with pytest.raises(ValueError, match=r"request\(\) needs version=5"):
            await client.request(topic, b"x")


@pytest.mark.parametrize(
    ("properties", "error", "words"),
    [
        ({"nope": 1}, ValueError, "unknown key 'nope'"),
        ({"message_expiry_interval": "60"}, TypeError, "'message_expiry_interval'.*an int"),
        ({"message_expiry_interval": -1}, ValueError, "'message_expiry_interval'.*between"),
        ({"topic_alias": 0}, ValueError, "'topic_alias'.*between 1 and 65535"),
        ({"payload_format_indicator": 2}, ValueError, "'payload_format_indicator'"),
        ({"correlation_data": 5}, TypeError, "'correlation_data'"),
        ({"response_topic": "a/+"}, ValueError, "'response_topic'.*wildcards"),
        ({"user_properties": {"a": "b"}}, TypeError, "'user_properties'.*pairs"),
        ({"user_properties": [("a", "b", "c")]}, TypeError, r"'user_properties'\]\[0\]"),
        ({"user_properties": [("a", 1)]}, TypeError, r"\[0\]\[1\] must be str"),
        ({"content_type": "a\x00b"}, ValueError, "'content_type'.*NUL"),
        ([("content_type", "x")], TypeError, "must be a dict"),
    ],
)
def test_bad_property_values_name_the_key(broker, make_client, topic, properties, error, words):
    c = make_client(**V5)
    c.connect()
    with pytest.raises(error, match=words):
        c.publish(topic, b"x", properties=properties)


@pytest.mark.parametrize(
    ("call", "words"),
    [
        (lambda c, t: c.subscribe(t, 1, retain_handling=3), "retain_handling"),
        (lambda c, t: c.subscribe(t, 1, properties={"subscription_identifier": 0}), "'subscr"),
        (lambda c, t: c.subscribe(t, 1, properties={"user_properties": 1}), "'user_propert"),
        (lambda c, t: c.set_last_will(t, b"x", properties={"topic_alias": 1}), "unknown key"),
        (lambda c, t: c.set_last_will(t, b"x", properties={"will_delay_interval": 2**32}), "'will"),
    ],
)
def test_bad_subscribe_and_will_arguments_name_them(broker, make_client, topic, call, words):
    c = make_client(**V5)
    c.set_callback(lambda t, m: None)
    c.connect()
    with pytest.raises((TypeError, ValueError), match=words):
        call(c, topic)


@pytest.mark.parametrize(
    ("connect_properties", "words"),
    [
        ({"receive_maximum": 0}, "'receive_maximum'"),
        ({"maximum_packet_size": 0}, "'maximum_packet_size'"),
        ({"session_expiry_interval": 2**32}, "'session_expiry_interval'"),
        ({"request_response_information": 3}, "'request_response_information'"),
        ({"authentication_method": "x"}, "unknown key"),
    ],
)
def test_bad_connect_properties_name_the_key(broker, connect_properties, words):
    with pytest.raises((TypeError, ValueError), match=words):
        umqtt.MQTTClient(
            "x", broker.host, broker.port, version=5, connect_properties=connect_properties
        )


# --------------------------------------------------------------------------- reason codes


def test_quecpython_refusals_return_false_and_log_code_and_name(acl_broker, make_client, umqtt_log):
    c = make_client(broker=acl_broker, **V5)
    c.set_callback(lambda t, m: None)
    c.connect()
    assert c.publish("nopub/x", b"1", qos=1) is False
    assert c.subscribe(f"{FORBIDDEN[:-2]}/x", 1) is False
    assert c.publish(f"allowed/{unique_id()}", b"1", qos=2) is True
    warnings = "\n".join(r.getMessage() for r in umqtt_log.records(logging.WARNING))
    assert "PUBACK 0x87 Not authorized" in warnings, warnings
    assert "SUBACK 0x87 Not authorized" in warnings, warnings


@pytest.mark.parametrize("dialect", ["simple", "robust"])
@pytest.mark.parametrize(
    "call",
    [
        lambda c: c.publish("nopub/a", b"1", qos=1),
        lambda c: c.publish("nopub/b", b"1", qos=2),
        lambda c: c.subscribe("forbidden/c", 1),
    ],
    ids=["puback", "pubrec", "suback"],
)
def test_micropython_refusals_raise_mqttexception_with_the_code(
    acl_broker, make_client, dialect, call
):
    c = make_client(broker=acl_broker, dialect=dialect, **V5)
    c.set_callback(lambda t, m: None)
    c.connect()
    with pytest.raises(MQTTException) as excinfo:
        call(c)
    assert excinfo.value.args == (0x87,)
    assert excinfo.value.reason_code == excinfo.value.rc == 0x87
    assert not isinstance(excinfo.value, OSError)  # robust does not retry it
    c.publish(f"allowed/{unique_id()}", b"after", qos=1)  # the client goes on


@pytest.mark.asyncio
async def test_aio_refusals_raise_mqttexception_with_code_and_name(acl_broker, make_aio):
    async with make_aio(broker=acl_broker, **V5) as client:
        for call in (
            client.publish("nopub/a", b"1", qos=1),
            client.publish("nopub/b", b"1", qos=2),
            client.subscribe("forbidden/c", 1),
        ):
            with pytest.raises(MQTTException) as excinfo:
                await call
            assert excinfo.value.reason_code == 0x87
            assert "0x87 Not authorized" in str(excinfo.value)
        await client.publish(f"allowed/{unique_id()}", b"after", qos=1)


def refuse_the_unsubscribe(b: wire.ScriptedBroker) -> None:
    """A scripted broker's answer to the client's first UNSUBSCRIBE: UNSUBACK 0x87 (mosquitto
    2.0.11 refuses no UNSUBSCRIBE unless told by a plugin)."""
    body = b.expect(0xA2)
    b.send(wire.packet(0xB0, body[:2] + b"\x00" + b"\x87"))  # id, no properties, the reason


@pytest.mark.parametrize("dialect", [*BLOCKING, "aio"])
def test_an_unsuback_refusal_is_reported_per_dialect(scripted_broker, umqtt_log, dialect):
    """QuecPython: False, logged with the name; MicroPython: MQTTException(0x87); aio:
    MQTTException with .reason_code."""
    b = scripted_broker(refuse_the_unsubscribe, handshake=wire.connack5())
    if dialect == "aio":

        async def attempt() -> None:
            async with umqtt.aio.MQTTClient("unsub", b.host, b.port, **V5) as client:
                with pytest.raises(MQTTException) as excinfo:
                    await client.unsubscribe("a/b")
                assert excinfo.value.reason_code == 0x87
                assert "0x87 Not authorized" in str(excinfo.value)

        asyncio.run(attempt())
        return
    classes = {"quecpython": umqtt.MQTTClient, "simple": umqtt.simple.MQTTClient}
    c = classes.get(dialect, umqtt.robust.MQTTClient)("unsub", b.host, b.port, **V5)
    c.connect()
    if dialect == "quecpython":
        assert c.unsubscribe("a/b") is False
        warnings = "\n".join(r.getMessage() for r in umqtt_log.records(logging.WARNING))
        assert "UNSUBACK 0x87 Not authorized" in warnings, warnings
    else:
        with pytest.raises(MQTTException) as excinfo:
            c.unsubscribe("a/b")
        assert excinfo.value.args == (0x87,)
        assert excinfo.value.reason_code == 0x87


@pytest.mark.parametrize("dialect", BLOCKING)
def test_connack_refusal_carries_the_reason_code(acl_broker, make_client, dialect):
    c = make_client(broker=acl_broker, dialect=dialect, connect=False, password="wrong", **V5)
    with pytest.raises(MQTTException) as excinfo:
        c.connect()
    assert excinfo.value.reason_code == 0x87
    if dialect == "quecpython":
        assert isinstance(excinfo.value, (MQTTConnectError, ValueError))
        assert "reason code 0x87 Not authorized" in str(excinfo.value)
    else:
        assert excinfo.value.args == (0x87,)


def test_quecpython_hears_a_brokers_disconnect_reason_then_reconnects(
    acl_broker, make_client, errors
):
    c = make_client(broker=acl_broker, user=BOB[0], password=BOB[1], **V5, **FAST)
    c.set_callback(lambda t, m: None)
    c.error_register_cb(errors.callback)
    c.connect()
    try:
        dynsec(acl_broker, "disableClient", BOB[0])
        assert errors.wait_for("reconnect_start")
        reason = [t for t in errors.texts if "DISCONNECT" in t]
        assert reason and "0x98 Administrative action" in reason[0], errors.texts
        assert errors.texts.index(reason[0]) < errors.texts.index("reconnect_start")
    finally:
        dynsec(acl_broker, "enableClient", BOB[0])
    assert errors.wait_for("reconnect_success", 20)


@pytest.mark.parametrize("dialect", ["quecpython", "simple"])
def test_without_reconnect_a_brokers_disconnect_raises_with_its_code(
    acl_broker, make_client, dialect
):
    options = {"reconn": False} if dialect == "quecpython" else {}
    c = make_client(
        broker=acl_broker, dialect=dialect, user=BOB[0], password=BOB[1], **V5, **options
    )
    c.set_callback(lambda t, m: None)
    c.connect()
    try:
        dynsec(acl_broker, "disableClient", BOB[0])
        with pytest.raises(MQTTConnectionLost) as excinfo:
            bounded(c.wait_msg, 10)
    finally:
        dynsec(acl_broker, "enableClient", BOB[0])
    assert excinfo.value.reason_code == 0x98
    assert "DISCONNECT 0x98 Administrative action" in str(excinfo.value)
    assert isinstance(excinfo.value, OSError)


@pytest.mark.asyncio
async def test_aio_messages_raise_a_brokers_disconnect_reason(acl_broker, make_aio):
    client = make_aio(broker=acl_broker, user=BOB[0], password=BOB[1], reconn=False, **V5)
    await client.connect()
    loop = asyncio.get_running_loop()
    try:
        await loop.run_in_executor(None, dynsec, acl_broker, "disableClient", BOB[0])
        with pytest.raises(MQTTConnectionLost) as excinfo:
            await asyncio.wait_for(client.messages().__anext__(), 10)
    finally:
        dynsec(acl_broker, "enableClient", BOB[0])
    assert excinfo.value.reason_code == 0x98
    assert "0x98 Administrative action" in str(excinfo.value)


def test_a_session_takeover_ends_the_older_connection(broker, make_client, client_id):
    """mosquitto 2.0.11 closes the older connection (without DISCONNECT 0x8E): with reconn=False
    the first client's wait_msg() raises and its state is "closed by the server"."""
    first = make_client(client_id=client_id, reconn=False, **V5)
    first.set_callback(lambda t, m: None)
    first.connect()
    second = make_client(client_id=client_id, reconn=False, **V5)
    second.connect()
    with pytest.raises(MQTTConnectionLost):
        bounded(first.wait_msg, 10)
    assert first.get_mqttsta() == 2
    assert second.get_mqttsta() == 0


@pytest.mark.parametrize("dialect", ["quecpython", "simple"])
def test_a_disconnect_for_a_session_taken_over_says_so(scripted_broker, dialect):
    """mosquitto closes a taken-over connection without a word; a broker that sends DISCONNECT
    0x8E (a scripted one) has its reason raised by wait_msg(), with the name."""
    b = scripted_broker(handshake=wire.connack5())
    if dialect == "quecpython":
        c = umqtt.MQTTClient("taken", b.host, b.port, reconn=False, **V5)
    else:
        c = umqtt.simple.MQTTClient("taken", b.host, b.port, **V5)
    c.set_callback(lambda t, m: None)
    c.connect()
    b.send(bytes([0xE0, 0x01, 0x8E]))  # DISCONNECT, reason 0x8E, no properties
    with pytest.raises(MQTTConnectionLost) as excinfo:
        bounded(c.wait_msg, 10)
    assert excinfo.value.reason_code == 0x8E
    assert "DISCONNECT 0x8e Session taken over" in str(excinfo.value)  # codes as {:#04x}


def test_quecpython_hears_a_session_taken_over_then_reconnects(scripted_broker, errors):
    """reconn=True: DISCONNECT 0x8E reaches the error callback with its name, before
    reconnect_start."""
    b = scripted_broker(handshake=wire.connack5())
    c = umqtt.MQTTClient("taken", b.host, b.port, reconnect_delay=0.2, **V5)
    c.error_register_cb(errors.callback)
    c.connect()
    try:
        b.send(bytes([0xE0, 0x01, 0x8E]))
        assert errors.wait_for("reconnect_start")
        reason = [t for t in errors.texts if "DISCONNECT" in t]
        assert reason and "0x8e Session taken over" in reason[0], errors.texts
        assert errors.texts.index(reason[0]) < errors.texts.index("reconnect_start")
    finally:
        c.close()


# --------------------------------------------------------------------------- the broker's limits


def test_connack_announces_the_limits(limits_broker, make_client):
    c = make_client(broker=limits_broker, **V5)
    c.connect()
    props = c.connack_properties
    assert props["maximum_qos"] == 1
    assert props["retain_available"] is False
    assert props["maximum_packet_size"] == 400
    assert props["receive_maximum"] == 2


def test_server_keep_alive_replaces_the_keepalive(limits_broker, make_client):
    """keepalive=60 to a broker whose max_keepalive is 10 (mosquitto's least): its CONNACK says 10
    and the client pings at that pace (a PINGREQ long before 60 s; one connection all along)."""
    c = make_client(broker=limits_broker, keepalive=60, **V5)
    c.connect()
    assert c.connack_properties["server_keep_alive"] == 10
    mark = limits_broker.log_size()
    pinged = f"Received PINGREQ from {c.client_id}"
    assert limits_broker.wait_for_log(pinged, timeout=45, since=mark)
    assert c.get_mqttsta() == 0
    assert len(limits_broker.log_lines(f"as {c.client_id} (p5")) == 1


@pytest.mark.parametrize("dialect", [*BLOCKING, "aio"])
@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"qos": 2}, "accepts QoS 1 at most"),
        ({"retain": True}, "does not keep retained messages"),
        ({"msg": b"x" * 500}, "400 bytes at most"),
    ],
    ids=["maximum_qos", "retain_available", "maximum_packet_size"],
)
def test_a_publish_beyond_the_limits_fails_before_sending(
    limits_broker, make_client, topic, dialect, kwargs, words
):
    c = make_client(broker=limits_broker, dialect=dialect, **V5)
    arguments = {"topic": topic, "msg": b"x", "qos": 1, "retain": False, **kwargs}
    mark = limits_broker.log_size()
    if dialect == "aio":

        async def attempt() -> None:
            async with c:
                with pytest.raises(ValueError, match=words):
                    await c.publish(**arguments)

        asyncio.run(attempt())
    else:
        c.connect()
        with pytest.raises(ValueError, match=words):
            c.publish(**arguments)
    assert limits_broker.log_lines("Received PUBLISH", since=mark) == []


@pytest.mark.asyncio
async def test_receive_maximum_is_flow_control(limits_broker, make_aio, topic):
    """50 QoS 1 publishes at once to a broker that allows 2 in flight: each waits for a free
    slot; the broker never has to disconnect for 0x93 (receive maximum exceeded)."""
    async with make_aio(broker=limits_broker, **V5, **FAST) as client:
        mark = limits_broker.log_size()
        await asyncio.wait_for(
            asyncio.gather(*(client.publish(topic, b"%d" % i, qos=1) for i in range(50))), 30
        )
        assert client.get_mqttsta() == 0
        acks = limits_broker.log_lines(f"Sending PUBACK to {client.client_id}", since=mark)
        assert len(acks) == 50
    # One connection all along: the broker never closed it for exceeding its receive maximum.
    assert len(limits_broker.log_lines(f"as {client.client_id} (p5")) == 1


# --------------------------------------------------------------------------- as at version=4


def test_reconnect_resubscribes_with_the_mqtt5_options(
    fresh_broker, make_client, make_peer, topic, errors
):
    """After the broker restarted (the session lost), the client re-subscribes by itself with
    the subscription's identifier: messages come again, carrying it."""
    got: list[tuple[bytes, Any]] = []
    c = make_client(broker=fresh_broker, **V5, **FAST)
    c.set_callback(lambda t, m, p: got.append((m, p)), properties=True)
    c.error_register_cb(errors.callback)
    c.connect()
    assert c.subscribe(topic, 1, properties={"subscription_identifier": 42}) is True
    fresh_broker.restart()
    assert errors.wait_for("reconnect_success", 20)
    peer = make_peer(fresh_broker, mqtt5=True)
    assert wait_until(lambda: fresh_broker.log_lines("Received SUBSCRIBE from", c.client_id), 10)
    peer.publish(topic, b"again", qos=1)
    assert wait_until(lambda: c.check_msg() or got, 10)
    assert got == [(b"again", {"subscription_identifiers": [42]})]


def test_a_message_is_acknowledged_only_after_the_callback(broker, make_client, make_peer, topic):
    """Manual acks at version=5: no PUBACK while the callback runs."""
    entered, release = threading.Event(), threading.Event()
    c = make_client(**V5)
    c.set_callback(lambda t, m: (entered.set(), release.wait(10)))
    c.connect()
    assert c.subscribe(topic, 1) is True
    mark = broker.log_size()
    make_peer(broker, mqtt5=True).publish(topic, b"slow", qos=1)
    reader = threading.Thread(target=c.wait_msg, daemon=True)
    reader.start()
    assert entered.wait(5)
    time.sleep(0.5)
    assert broker.log_lines(f"Received PUBACK from {c.client_id}", since=mark) == []
    release.set()
    reader.join(5)
    assert broker.wait_for_log(f"Received PUBACK from {c.client_id}", since=mark)


@pytest.mark.parametrize("dialect", BLOCKING)
def test_ping_writes_a_pingreq(broker, make_client, dialect):
    c = make_client(dialect=dialect, keepalive=0, **V5)
    c.connect()
    mark = broker.log_size()
    c.ping()
    assert broker.wait_for_log(f"Received PINGREQ from {c.client_id}", since=mark)


def test_a_keepalive_of_zero_is_allowed(broker, make_client):
    """MicroPython's default keepalive=0 at version=5: no pings (mosquitto logs k0)."""
    c = make_client(dialect="simple", **V5)
    c.connect()
    assert "k0" in broker.connect_flags(c.client_id).split(", ")


def test_ctrl_c_interrupts_wait_msg(broker):
    """umqtt.simple's wait_msg() at version=5 (test_micropython's script, told the version)."""
    host, port = broker.host, str(broker.port)
    assert_ctrl_c_interrupts(CTRL_C_SCRIPT, host, port, unique_id("ctrl-c5"), "5")


# --------------------------------------------------------------------------- request/response


async def serve(server: umqtt.aio.MQTTClient, respond: Callable[[bytes], bytes]) -> None:
    """Answers every request on the topics `server` subscribed to, as a responder does."""
    async for message in server.messages():
        properties = message.properties
        await server.publish(
            properties["response_topic"],
            respond(message.payload),
            qos=1,
            properties={"correlation_data": properties["correlation_data"]},
        )


@pytest.mark.asyncio
async def test_request_returns_the_correlated_reply(broker, make_aio, topic):
    async with make_aio(**V5) as server, make_aio(**V5) as client:
        await server.subscribe(topic, 1)
        responder = asyncio.create_task(serve(server, lambda p: p.upper()))
        try:
            reply = await client.request(topic, b"hello")
            assert reply.payload == b"HELLO"
            assert reply.topic.startswith(f"umqtt/resp/{client.client_id}/")
            replies = await asyncio.gather(*(client.request(topic, b"r%d" % i) for i in range(20)))
            assert [r.payload for r in replies] == [b"R%d" % i for i in range(20)]
            assert (await client.request(topic, b"exactly once", qos=2)).payload == b"EXACTLY ONCE"
        finally:
            responder.cancel()
    subscribes = broker.log_lines(f"{client.client_id} 1 umqtt/resp/")
    assert len(subscribes) == 1, subscribes  # one subscription per client, on first use


@pytest.mark.asyncio
async def test_request_response_topic_override_and_timeout(broker, make_aio, topic):
    async with make_aio(**V5) as server, make_aio(**V5) as client:
        await server.subscribe(topic, 1)
        responder = asyncio.create_task(serve(server, lambda p: p[::-1]))
        try:
            mine = f"{topic}/replies"
            reply = await client.request(topic, b"abc", response_topic=mine, qos=0)
            assert (reply.topic, reply.payload) == (mine, b"cba")
        finally:
            responder.cancel()
        with pytest.raises(umqtt.aio.MQTTTimeout):
            await client.request(f"{topic}/nobody", b"x", timeout=0.5)
        with pytest.raises(ValueError, match="response_topic"):
            await client.request(topic, b"x", properties={"correlation_data": b"mine"})


@pytest.mark.asyncio
async def test_a_late_reply_is_not_a_message(broker, make_aio, make_peer, topic):
    """A reply that comes after its request gave up is dropped, not delivered by messages()."""
    async with make_aio(**V5) as client:
        with pytest.raises(umqtt.aio.MQTTTimeout):
            await client.request(topic, b"x", timeout=0.2)
        own = broker.log_lines(f"{client.client_id} 1 umqtt/resp/")[0].split()[-1]
        peer = make_peer(broker, mqtt5=True)
        stale = paho_properties(PacketTypes.PUBLISH, correlation_data=b"not a request of mine")
        peer.publish(own, b"late", qos=1, properties=stale)
        await client.subscribe(topic, 1)
        peer.publish(topic, b"marker", qos=1)
        message = await asyncio.wait_for(client.messages().__anext__(), 10)
        assert message.payload == b"marker"

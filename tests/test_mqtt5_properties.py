"""MQTT 5 properties and subscription options as they really arrive (issue 25): a paho MQTT 5
peer on mosquitto checks what umqtt sent and sends what umqtt must receive; a scripted broker
(tests/wire.py) shows topic aliases on the wire, where mosquitto hides them.

Publish properties (user properties in order, repeats kept), received properties on every
dialect (aio `Message.properties`, `set_callback(f, properties=True)`), subscription
identifiers, no_local, retain_as_published, retain_handling, message expiry, will properties
and the will delay, topic aliases both ways.
"""

from __future__ import annotations

import asyncio
import socket
import time
from typing import Any

import pytest
import umqtt
import umqtt.aio
import wire
from broker import bounded, unique_id, wait_until
from conftest import paho_properties
from paho.mqtt.packettypes import PacketTypes

V5 = {"version": 5}
USER_PROPERTIES = [("trace", "a1"), ("schema", "v2"), ("trace", "b2")]  # order and a repeat
PUBLISH_PROPERTIES: dict[str, Any] = {
    "payload_format_indicator": 1,
    "message_expiry_interval": 3600,
    "response_topic": "replies/here",
    "correlation_data": b"\x00\x01corr",
    "user_properties": USER_PROPERTIES,
    "content_type": "application/json",
}


@pytest.mark.parametrize("dialect", ["quecpython", "simple", "robust", "aio"])
def test_publish_properties_arrive_as_sent(broker, make_client, make_peer, topic, dialect):
    peer = make_peer(broker, mqtt5=True)
    peer.subscribe(topic, 1)
    c = make_client(dialect=dialect, **V5)
    if dialect == "aio":

        async def publish() -> None:
            async with c:
                await c.publish(topic, b"{}", qos=1, properties=PUBLISH_PROPERTIES)

        asyncio.run(publish())
    else:
        c.connect()
        c.publish(topic, b"{}", qos=1, properties=PUBLISH_PROPERTIES)
    [message] = peer.wait_for(topic)
    expected = dict(PUBLISH_PROPERTIES)
    got = dict(message.properties)
    # The broker counts the expiry down while it holds the message.
    assert 0 < got.pop("message_expiry_interval") <= expected.pop("message_expiry_interval")
    assert got == expected


@pytest.mark.parametrize("dialect", ["quecpython", "simple", "robust"])
def test_received_properties_reach_a_callback_that_asks_for_them(
    broker, make_client, make_peer, topic, dialect
):
    got: list[tuple[bytes, bytes, dict[str, Any]]] = []
    c = make_client(dialect=dialect, **V5)
    c.set_callback(lambda t, m, p: got.append((t, m, p)), properties=True)
    c.connect()
    c.subscribe(topic, 1, properties={"subscription_identifier": 9})
    peer = make_peer(broker, mqtt5=True)
    sent = paho_properties(PacketTypes.PUBLISH, **PUBLISH_PROPERTIES)
    peer.publish(topic, b"with", qos=1, properties=sent)
    peer.publish(topic, b"without", qos=1)
    assert wait_until(lambda: (c.check_msg(), len(got) >= 2)[1], 10)
    (t1, m1, p1), (_, m2, p2) = got
    assert (t1, m1, m2) == (topic.encode(), b"with", b"without")
    assert 0 < p1.pop("message_expiry_interval") <= 3600
    expected = {k: v for k, v in PUBLISH_PROPERTIES.items() if k != "message_expiry_interval"}
    assert p1 == {**expected, "subscription_identifiers": [9]}
    assert p2 == {"subscription_identifiers": [9]}


def test_a_callback_without_properties_and_mqtt_311_properties(broker, make_client, topic):
    """set_callback(f): f(topic, msg) at version=5 too; properties=True at version=4: {}."""
    plain: list[tuple[bytes, bytes]] = []
    c5 = make_client(**V5)
    c5.set_callback(lambda t, m: plain.append((t, m)))
    c5.connect()
    c5.subscribe(topic, 1)
    c5.publish(topic, b"5", qos=1, properties={"content_type": "x"})
    assert wait_until(lambda: c5.check_msg() or plain, 10)
    assert plain == [(topic.encode(), b"5")]
    with_properties: list[Any] = []
    c4 = make_client()
    c4.set_callback(lambda t, m, p: with_properties.append(p), properties=True)
    c4.connect()
    c4.subscribe(topic, 1)
    c4.publish(topic, b"4", qos=1)
    assert wait_until(lambda: c4.check_msg() or with_properties, 10)
    assert with_properties == [{}]


@pytest.mark.asyncio
async def test_aio_messages_carry_their_properties(broker, make_aio, make_peer, topic):
    async with make_aio(**V5) as client:
        await client.subscribe(topic, 1, properties={"subscription_identifier": 5})
        await client.subscribe(f"{topic}/#", 1, properties={"subscription_identifier": 6})
        peer = make_peer(broker, mqtt5=True)
        user = [("k", "1"), ("k", "2"), ("a", "")]
        properties = paho_properties(PacketTypes.PUBLISH, user_properties=user)
        peer.publish(topic, b"x", qos=1, properties=properties)
        # mosquitto delivers it once per matching subscription, each with its identifier.
        messages = client.messages()
        first = await asyncio.wait_for(messages.__anext__(), 10)
        second = await asyncio.wait_for(messages.__anext__(), 10)
        assert first.properties["user_properties"] == second.properties["user_properties"] == user
        ids = (
            first.properties["subscription_identifiers"]
            + second.properties["subscription_identifiers"]
        )
        assert sorted(ids) == [5, 6]
    async with make_aio() as v4:  # MQTT 3.1.1: no properties
        await v4.subscribe(topic, 1)
        await v4.publish(topic, b"y", qos=1)
        message = await asyncio.wait_for(v4.messages().__anext__(), 10)
        assert message.properties == {}


# --------------------------------------------------------------------------- the CONNECT


def connect_as_sent(b: wire.ScriptedBroker, clean_session: bool, **options: Any) -> Any:
    """The CONNECT a version=5 client with `options` sent to `b`: (flags, keepalive, {identifier:
    [values as encoded, in order]})."""
    c = umqtt.MQTTClient("connect-props", b.host, b.port, version=5, **options)
    try:
        c.connect(clean_session)
    finally:
        c.close()
    flags, keepalive, props = wire.parse_connect5(b.connect_body)
    values: dict[int, list[bytes]] = {}
    for identifier, value in props:
        values.setdefault(identifier, []).append(value)
    return flags, keepalive, values


def test_the_connect_carries_session_expiry_packet_size_and_user_properties(scripted_broker):
    """clean_session=False asks for a session that outlives the connection (expiry 0xFFFFFFFF);
    max_packet_size is announced as the client's maximum packet size; connect_properties go as
    given, user properties in order with a repeat."""
    b = scripted_broker(handshake=wire.connack5())
    user = [("a", "1"), ("b", "2"), ("a", "3")]
    given = {"receive_maximum": 10, "topic_alias_maximum": 4, "user_properties": user}
    flags, _, values = connect_as_sent(b, False, max_packet_size=50_000, connect_properties=given)
    assert not flags & 0x02  # no clean start
    assert values[wire.SESSION_EXPIRY_INTERVAL] == [b"\xff\xff\xff\xff"]
    assert values[wire.MAXIMUM_PACKET_SIZE] == [(50_000).to_bytes(4, "big")]
    assert values[wire.RECEIVE_MAXIMUM] == [(10).to_bytes(2, "big")]
    assert values[wire.TOPIC_ALIAS_MAXIMUM] == [(4).to_bytes(2, "big")]
    assert values[wire.USER_PROPERTY] == [wire.utf8_pair(k, v) for k, v in user]


def test_a_clean_session_asks_for_none_and_connect_properties_win(scripted_broker):
    """clean_session=True: clean start and no session expiry (0, the default, or absent);
    connect_properties' maximum_packet_size wins over max_packet_size."""
    b = scripted_broker(handshake=wire.connack5())
    given = {"maximum_packet_size": 1000}
    flags, _, values = connect_as_sent(b, True, max_packet_size=50_000, connect_properties=given)
    assert flags & 0x02  # clean start
    assert values.get(wire.SESSION_EXPIRY_INTERVAL, [b"\x00" * 4]) == [b"\x00" * 4]
    assert values[wire.MAXIMUM_PACKET_SIZE] == [(1000).to_bytes(4, "big")]


# --------------------------------------------------------------------------- subscribe options


def collect(client: Any) -> list[Any]:
    got: list[Any] = []
    client.set_callback(lambda t, m, p: got.append((t, m, p)), properties=True)
    return got


def test_no_local_leaves_out_the_clients_own_messages(broker, make_client, make_peer, topic):
    c = make_client(**V5)
    got = collect(c)
    c.connect()
    assert c.subscribe(topic, 1, no_local=True) is True
    c.publish(topic, b"own", qos=1)
    make_peer(broker, mqtt5=True).publish(topic, b"peer", qos=1)
    assert wait_until(lambda: c.check_msg() or got, 10)
    time.sleep(0.3)
    c.check_msg()
    assert [m for _, m, _ in got] == [b"peer"]


@pytest.mark.parametrize("retain_as_published", [False, True])
def test_retain_as_published_keeps_the_retain_flag_live(
    broker, make_client, make_peer, topic, retain_as_published
):
    c = make_client(dialect="simple", **V5)
    headers: list[int | None] = []
    c.set_callback(lambda t, m: None)
    c.connect()
    c.subscribe(topic, 1, retain_as_published=retain_as_published)
    make_peer(broker, mqtt5=True).publish(topic, b"kept", qos=1, retain=True)
    headers.append(bounded(c.wait_msg, 10))
    make_peer(broker, mqtt5=True).publish(topic, b"", qos=1, retain=True)  # clear it
    assert headers[0] is not None
    assert bool(headers[0] & 0x01) is retain_as_published


@pytest.mark.parametrize(("handling", "first", "again"), [(0, 1, 1), (1, 1, 0), (2, 0, 0)])
def test_retain_handling(broker, make_client, make_peer, topic, handling, first, again):
    """0: retained messages at every SUBSCRIBE; 1: only when the subscription is new; 2: never.
    A live marker published after each SUBSCRIBE arrives after any retained message."""
    peer = make_peer(broker, mqtt5=True)
    peer.publish(topic, b"retained", qos=1, retain=True)
    c = make_client(**V5)
    got = collect(c)
    c.connect()
    try:
        counts = []
        for marker in (b"m1", b"m2"):
            assert c.subscribe(topic, 1, retain_handling=handling) is True
            peer.publish(topic, marker, qos=1)
            assert wait_until(lambda m=marker: c.check_msg() or m in [p for _, p, _ in got], 10)
            counts.append([p for _, p, _ in got].count(b"retained"))
            got.clear()
        assert counts == [first, again]
    finally:
        peer.publish(topic, b"", qos=1, retain=True)


def test_message_expiry_drops_a_retained_message_once_expired(
    broker, make_client, make_peer, topic
):
    """A retained message with a 1 s expiry is gone 2 s later; one with an hour is delivered
    with the expiry counted down."""
    c = make_client(**V5)
    c.connect()
    c.publish(f"{topic}/short", b"s", qos=1, retain=True, properties={"message_expiry_interval": 1})
    c.publish(
        f"{topic}/long", b"l", qos=1, retain=True, properties={"message_expiry_interval": 3600}
    )
    time.sleep(2.2)
    peer = make_peer(broker, mqtt5=True)
    peer.subscribe(f"{topic}/#", 1)
    peer.publish(f"{topic}/marker", b"m", qos=1)
    assert wait_until(lambda: peer.received(f"{topic}/marker"), 10)
    assert peer.received(f"{topic}/short") == []
    [long] = peer.received(f"{topic}/long")
    assert 0 < long.properties["message_expiry_interval"] <= 3600
    c.publish(f"{topic}/long", b"", qos=1, retain=True)


def test_the_will_with_its_properties_comes_after_its_delay(broker, make_client, make_peer, topic):
    """close() drops the link: the broker publishes the will with its properties, not before
    will_delay_interval (1 s) has passed (the session lasts 60 s, longer than the delay)."""
    peer = make_peer(broker, mqtt5=True)
    peer.subscribe(topic, 1)
    c = make_client(connect_properties={"session_expiry_interval": 60}, **V5)
    properties = {
        "will_delay_interval": 1,
        "content_type": "text/plain",
        "user_properties": [("why", "gone"), ("why", "really")],
    }
    c.set_last_will(topic, b"bye", qos=1, properties=properties)
    c.connect()
    closed = time.monotonic()
    c.close()
    [will] = peer.wait_for(topic, timeout=10)
    assert time.monotonic() - closed >= 0.9
    assert will.payload == b"bye"
    assert will.properties == {
        "content_type": "text/plain",
        "user_properties": [("why", "gone"), ("why", "really")],
    }


def test_a_will_delayed_past_a_reconnect_is_not_published(broker, make_client, make_peer, topic):
    """The client comes back within the will delay: no will (a marker shows the broker has
    passed that point)."""
    peer = make_peer(broker, mqtt5=True)
    peer.subscribe(topic, 1)
    cid = unique_id("will-delay")
    options = {"connect_properties": {"session_expiry_interval": 60}, **V5}
    c = make_client(client_id=cid, **options)
    c.set_last_will(topic, b"will", qos=1, properties={"will_delay_interval": 30})
    c.connect(False)
    c.close()
    c.connect(False)
    peer.publish(topic, b"marker", qos=1)
    assert wait_until(lambda: peer.received(topic), 10)
    assert [m.payload for m in peer.received(topic)] == [b"marker"]
    c.set_last_will(None, b"")
    c.connect(True)


# --------------------------------------------------------------------------- topic aliases


def aliased(broker: wire.ScriptedBroker, count: int) -> list[tuple[bytes, int | None, bytes]]:
    """The next `count` PUBLISHes the client sent: (topic, topic alias, payload)."""
    sent = []
    for _ in range(count):
        first, body = broker.read()
        topic, alias, _, payload = wire.parse_publish5(first, body)
        sent.append((topic, alias, payload))
    return sent


def test_topic_aliases_on_the_wire_topic_once_then_again_after_a_reconnect(scripted_broker):
    """The broker allows 5 aliases: the first publish with an alias carries the topic, the next
    ones only the alias; after a reconnect the topic goes again; alias 9 (above the broker's
    maximum) is not used: the full topic goes, without an alias."""
    listener = socket.create_server(("127.0.0.1", 0))
    handshake = wire.connack5(wire.properties(wire.u16_property(wire.TOPIC_ALIAS_MAXIMUM, 5)))
    first = scripted_broker(handshake=handshake, listener=listener)
    port = listener.getsockname()[1]
    c = umqtt.MQTTClient("aliases", "127.0.0.1", port, version=5, reconnect_delay=0.2)
    try:
        c.connect()
        topic = "a/long/topic/name/for/aliases"
        for n in (1, 2, 3):
            c.publish(topic, b"%d" % n, properties={"topic_alias": 1})
        c.publish(topic, b"9", properties={"topic_alias": 9})
        assert aliased(first, 4) == [
            (topic.encode(), 1, b"1"),
            (b"", 1, b"2"),
            (b"", 1, b"3"),
            (topic.encode(), None, b"9"),
        ]
        second = scripted_broker(handshake=handshake, listener=listener)
        first.hang_up()
        assert second.connected.wait(20)
        assert wait_until(lambda: c.get_mqttsta() == 0, 10)
        c.publish(topic, b"4", properties={"topic_alias": 1})
        c.publish(topic, b"5", properties={"topic_alias": 1})
        assert aliased(second, 2) == [(topic.encode(), 1, b"4"), (b"", 1, b"5")]
    finally:
        c.close()
        listener.close()


def test_topic_aliases_the_broker_sends_are_resolved(scripted_broker):
    got: list[tuple[bytes, bytes]] = []
    handshake = wire.connack5()
    b = scripted_broker(handshake=handshake)
    c = umqtt.MQTTClient(
        "aliased-in", b.host, b.port, version=5, connect_properties={"topic_alias_maximum": 4}
    )
    c.set_callback(lambda t, m: got.append((t, m)))
    c.connect()
    b.send(wire.publish5("sensors/1/temperature", b"21", alias=2))
    b.send(wire.publish5("", b"22", alias=2))
    assert wait_until(lambda: c.check_msg() or len(got) >= 2, 10)
    assert got == [(b"sensors/1/temperature", b"21"), (b"sensors/1/temperature", b"22")]
    c.close()


def test_topic_aliases_through_mosquitto(broker, make_client, make_peer, topic):
    """End to end: a subscriber gets every message of an aliased stream on its topic."""
    peer = make_peer(broker, mqtt5=True)
    peer.subscribe(topic, 1)
    c = make_client(**V5)
    c.connect()
    for n in range(5):
        c.publish(topic, b"%d" % n, qos=1, properties={"topic_alias": 3})
    received = peer.wait_for(topic, count=5)
    assert [m.payload for m in received] == [b"%d" % n for n in range(5)]


@pytest.mark.asyncio
async def test_request_uses_the_response_information_of_the_connack(scripted_broker):
    """A broker that sends response information: request() publishes with it as the response
    topic (and subscribes to it first)."""
    info = "replies/for/you"
    encoded = bytes([0x1A]) + len(info).to_bytes(2, "big") + info.encode()
    b = scripted_broker(handshake=wire.connack5(wire.properties(encoded)))
    client = umqtt.aio.MQTTClient(
        "rr",
        b.host,
        b.port,
        version=5,
        connect_properties={"request_response_information": True},
    )
    await client.connect()
    request = asyncio.ensure_future(client.request("svc", b"q", qos=0, timeout=10))
    loop = asyncio.get_running_loop()
    first, body = await loop.run_in_executor(None, b.read)
    assert first == 0x82 and info.encode() in body  # SUBSCRIBE to the response information
    b.send(bytes([0x90, 4]) + body[:2] + b"\x00\x01")  # SUBACK, granted QoS 1
    first, body = await loop.run_in_executor(None, b.read)
    topic, _, props, _ = wire.parse_publish5(first, body)
    assert topic == b"svc" and info.encode() in props
    request.cancel()
    client.close()

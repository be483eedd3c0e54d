"""The QuecPython dialect (`umqtt.MQTTClient`), promise by promise, against a real mosquitto.

Each test checks one bullet of the contract's "QuecPython dialect" section (or of docs/api.md);
the paho peer and the broker log are the independent witnesses of what reached the broker.
"""

from __future__ import annotations

import logging
import os
import re
import socket
import threading
import time

import pytest
import umqtt
import umqtt.simple
from broker import (
    ALICE,
    BOB,
    Bounded,
    Mosquitto,
    bounded,
    disconnect_all,
    free_port,
    unique_id,
    wait_until,
)

KEEPALIVE_TEXT = "inport parameter error : keepalive >= 5S"  # the device's words, typo included
TEXT = "héllo wörld ✓"  # non-ASCII: byte length != character length
CONSTRUCTOR_ORDER = [
    "client_id",
    "server",
    "port",
    "user",
    "password",
    "keepalive",
    "ssl",
    "ssl_params",
    "reconn",
    "version",
    "pingmaxnum",
    "manage",
    "ipvtype",
]


def as_kind(text: str, kind: type):
    """`text` converted to str, bytes, bytearray or memoryview."""
    return text if kind is str else kind(text.encode())


# --------------------------------------------------------------------------- constructor


def test_positional_arguments_follow_device_order(auth_broker, client_id):
    """All 13 constructor arguments work positionally, in the device's order."""
    user, password = ALICE
    c = umqtt.MQTTClient(
        client_id, auth_broker.host, auth_broker.port, user, password, 17,
        False, {}, False, 4, 0, False, 0,
    )  # fmt: skip
    try:
        assert c.connect() == 0
        assert auth_broker.connect_flags(client_id) == f"p2, c1, k17, u'{user}'"
    finally:
        disconnect_all([c])


def test_keyword_argument_names(auth_broker, make_client, client_id):
    """Every constructor parameter is accepted by its device name, as real scripts call it."""
    user, password = ALICE
    values = [client_id, auth_broker.host, auth_broker.port, user, password, 23]
    values += [False, {}, True, 4, 0, False, 0]
    c = make_client(**dict(zip(CONSTRUCTOR_ORDER, values)))
    assert c.connect() == 0
    assert auth_broker.connect_flags(client_id) == f"p2, c1, k23, u'{user}'"


def test_extensions_are_keyword_only(broker):
    """A 14th positional argument is refused: extensions exist only as keywords."""
    args = [unique_id(), broker.host, broker.port, None, None, 60, False, {}, True, 4, 0, False, 0]
    with pytest.raises(TypeError):
        umqtt.MQTTClient(*args, 5.0)


def test_documented_extension_keywords(make_client):
    """connect_timeout, ack_timeout, max_packet_size and the reconnect delays are accepted."""
    c = make_client(
        connect_timeout=5.0,
        ack_timeout=5.0,
        max_packet_size=1024 * 1024,
        reconnect_delay=0.5,
        reconnect_max_delay=5.0,
    )
    assert c.connect() == 0


def test_port_as_decimal_string(broker, make_client):
    """port='18830'-style strings work, as in the seed's test.py."""
    c = make_client(port=str(broker.port))
    assert c.connect() == 0


def test_bytes_server_client_id_user_password(auth_broker, make_client, client_id):
    """server, client_id, user and password may be bytes (mixed with a str port)."""
    user, password = ALICE
    c = make_client(
        client_id=client_id.encode(),
        server=auth_broker.host.encode(),
        port=str(auth_broker.port),
        user=user.encode(),
        password=password.encode(),
    )
    assert c.connect() == 0
    assert auth_broker.connect_flags(client_id) == f"p2, c1, k60, u'{user}'"


def test_port_zero_means_1883(tmp_path, make_client):
    """port=0 (and the default) connect to 1883."""
    try:
        b = Mosquitto(tmp_path, port=1883, start=False)
        b.start(timeout=2)
    except RuntimeError:
        pytest.skip("port 1883 is in use on this machine")
    try:
        assert make_client(client_id=unique_id(), server=b.host, port=0).connect() == 0
        assert make_client(client_id=unique_id(), server=b.host).connect() == 0
    finally:
        b.kill()


def test_empty_client_id_with_clean_session(broker, make_client):
    """An empty client id with a clean session connects (the broker assigns an id)."""
    c = make_client(client_id="", server=broker.host, port=broker.port)
    assert c.connect() == 0
    assert c.get_mqttsta() == 0


@pytest.mark.parametrize("keepalive", [1, 2, 3, 4])
def test_keepalive_below_5_rejected_with_device_text(broker, keepalive):
    """keepalive 1..4 raise ValueError with the device's verbatim text."""
    with pytest.raises(ValueError) as excinfo:
        umqtt.MQTTClient(unique_id(), broker.host, broker.port, keepalive=keepalive)
    assert str(excinfo.value) == KEEPALIVE_TEXT


@pytest.mark.parametrize("keepalive", [0, 5, 1200, 65535])
def test_keepalive_reaches_the_broker(broker, make_client, client_id, keepalive):
    """The keepalive given (0 = off, up to 65535) is the one in the CONNECT the broker sees."""
    c = make_client(client_id=client_id, keepalive=keepalive)
    assert c.connect() == 0
    assert broker.connect_flags(client_id) == f"p2, c1, k{keepalive}"


@pytest.mark.slow
def test_keepalive_pings_are_sent_in_background(broker, make_client, client_id):
    """With keepalive=5 and an idle client, PINGREQs reach the broker without any call."""
    c = make_client(client_id=client_id, keepalive=5)
    assert c.connect() == 0
    assert broker.wait_for_log(f"Received PINGREQ from {client_id}", timeout=9)


def test_version_3_is_mqtt_31(broker, make_client, client_id):
    """version=3 connects with protocol level 3 (MQTT 3.1, logged as p1; tests/test_mqtt31.py)."""
    assert make_client(client_id=client_id, version=3).connect() == 0
    assert broker.connect_flags(client_id).startswith("p1,")


def test_version_4_is_mqtt_311(broker, make_client, client_id):
    """version=4 connects with protocol level 4 (MQTT 3.1.1, logged as p2)."""
    assert make_client(client_id=client_id, version=4).connect() == 0
    assert broker.connect_flags(client_id).startswith("p2,")


def test_device_only_options_accepted(make_client):
    """pingmaxnum and manage are accepted and the client connects."""
    assert make_client(pingmaxnum=2, manage=True).connect() == 0


# --------------------------------------------------------------------------- connect errors


def test_wrong_password_raises_connect_error_rc5(auth_broker, make_client):
    """A CONNACK refusal raises MQTTConnectError (a ValueError and MQTTException) with rc 5."""
    c = make_client(broker=auth_broker, user=ALICE[0], password="wrong")
    with pytest.raises(umqtt.MQTTConnectError) as excinfo:
        bounded(c.connect, 15)
    err = excinfo.value
    assert isinstance(err, ValueError)
    assert isinstance(err, umqtt.MQTTException)
    assert err.rc == 5
    assert "authori" in str(err).lower(), f"message does not name the CONNACK code: {err}"


def test_refused_tcp_raises_quickly(make_client):
    """connect() to a port nobody listens on raises MQTTConnectError within a few seconds."""
    c = make_client(port=free_port())
    start = time.monotonic()
    with pytest.raises(umqtt.MQTTConnectError) as excinfo:
        bounded(c.connect, 15)
    assert time.monotonic() - start < 3
    assert excinfo.value.rc is None
    assert "refused" in str(excinfo.value).lower()


def test_unresolvable_host_raises(make_client):
    """A host name that does not resolve raises MQTTConnectError saying so."""
    c = make_client(client_id=unique_id(), server="no-such-host.invalid", port=1883)
    with pytest.raises(umqtt.MQTTConnectError) as excinfo:
        bounded(c.connect, 30)
    message = str(excinfo.value).lower()
    assert excinfo.value.rc is None
    assert any(w in message for w in ("dns", "resolv", "lookup", "name", "no-such-host")), message


def test_silent_server_times_out(make_client):
    """A server that accepts TCP but never sends CONNACK raises within connect_timeout."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(5)
        c = make_client(
            client_id=unique_id(),
            server="127.0.0.1",
            port=silent.getsockname()[1],
            connect_timeout=1.0,
        )
        start = time.monotonic()
        with pytest.raises(umqtt.MQTTConnectError) as excinfo:
            bounded(c.connect, 15)
    assert time.monotonic() - start < 5
    assert "time" in str(excinfo.value).lower()


def test_password_never_logged_or_in_repr(auth_broker, make_client, umqtt_log):
    """Passwords appear neither in logs, nor in repr(client), nor in connect errors."""
    user, password = BOB
    good = make_client(broker=auth_broker, user=user, password=password)
    assert good.connect() == 0
    assert good.publish("umqtt-test/secrets", b"x", qos=1) is True
    bad = make_client(broker=auth_broker, user=user, password=password + "-wrong")
    with pytest.raises(umqtt.MQTTConnectError) as excinfo:
        bad.connect()
    for text in (umqtt_log.text(), repr(good), repr(bad), str(excinfo.value), repr(excinfo.value)):
        assert password not in text


# --------------------------------------------------------------------------- publish


@pytest.mark.parametrize(
    ("topic_kind", "msg_kind"),
    [(str, bytes), (bytes, str), (str, str), (bytes, bytes), (str, bytearray), (bytes, memoryview)],
)
def test_publish_accepts_str_and_bytes(
    client, client_id, broker, peer, topic, topic_kind, msg_kind
):
    """Topic and message may each be str or bytes (message also bytearray/memoryview); UTF-8."""
    topic = f"{topic}/ü"
    peer.subscribe(topic)
    assert client.publish(as_kind(topic, topic_kind), as_kind(TEXT, msg_kind)) is True
    assert [m.payload for m in peer.wait_for(topic)] == [TEXT.encode()]
    byte_length = f"({len(TEXT.encode())} bytes)"
    assert broker.wait_for_log(f"Received PUBLISH from {client_id}", f"'{topic}'", byte_length)


@pytest.mark.parametrize("empty", [b"", ""])
def test_empty_payload(client, peer, topic, empty):
    """An empty message is published and arrives empty."""
    peer.subscribe(topic)
    assert client.publish(topic, empty, qos=1) is True
    assert [m.payload for m in peer.wait_for(topic)] == [b""]


@pytest.mark.parametrize(
    "template", ["$oc/devices/{}/sys/messages/up", "$sys/{}/p", "$aws/things/{}/shadow/update"]
)
def test_dollar_topics(client, inbox, peer, template):
    """Topics starting with $ (other than $SYS) can be published and subscribed."""
    topic = template.format(unique_id("dev"))
    peer.subscribe(topic)
    assert client.subscribe(topic, 1) is True
    assert client.publish(topic, b"cloud", qos=1) is True
    assert [m.payload for m in peer.wait_for(topic)] == [b"cloud"]
    assert inbox.pump(client, topic=topic) == [b"cloud"]


def test_qos_in_retain_slot_means_retain(client, client_id, broker, make_peer, topic):
    """publish(t, m, 1) sets RETAIN at QoS 0, exactly as on the device."""
    assert client.publish(topic, b"kept", 1) is True
    assert broker.wait_for_log(f"Received PUBLISH from {client_id} (d0, q0, r1,")
    late = make_peer(broker)
    late.subscribe(topic, qos=1)
    [got] = late.wait_for(topic)
    assert (got.payload, got.qos, got.retain) == (b"kept", 0, True)
    late.publish(topic, b"", retain=True)  # clear the retained message


@pytest.mark.parametrize("qos", [0, 1, 2])
def test_publish_each_qos_returns_true_and_arrives(client, client_id, broker, peer, topic, qos):
    """publish() at QoS 0, 1 and 2 returns True and the peer gets the message at that QoS."""
    peer.subscribe(topic, qos=2)
    assert client.publish(topic, b"q%d" % qos, qos=qos) is True
    [got] = peer.wait_for(topic)
    assert (got.payload, got.qos, got.retain) == (b"q%d" % qos, qos, False)
    assert broker.wait_for_log(f"Received PUBLISH from {client_id} (d0, q{qos}, r0,")
    if qos == 2:
        assert broker.wait_for_log(f"Received PUBREL from {client_id}")


def test_publish_keyword_arguments(client, peer, topic):
    """publish(topic=..., msg=..., retain=..., qos=...) works by name."""
    peer.subscribe(topic)
    assert client.publish(topic=topic, msg=b"by-name", retain=False, qos=1) is True
    assert [m.payload for m in peer.wait_for(topic)] == [b"by-name"]


def test_one_mib_payload_round_trip(client, inbox, peer, topic):
    """A 1 MiB payload goes out and comes back byte for byte."""
    payload = os.urandom(1024 * 1024)
    peer.subscribe(topic, qos=1)
    assert client.subscribe(topic, 1) is True
    assert client.publish(topic, payload, qos=1) is True
    assert [m.payload == payload for m in peer.wait_for(topic, timeout=10)] == [True]
    got = inbox.pump(client, topic=topic, timeout=10)
    assert len(got) == 1 and got[0] == payload


def test_payload_over_the_incoming_limit_goes_out(make_client, peer, topic):
    """A payload over the default max_packet_size (16 MiB, the limit on what comes in) goes out
    with default options."""
    big = os.urandom(20 * 1024 * 1024)
    default = make_client()
    assert default.connect() == 0
    peer.subscribe(topic, qos=1)
    assert bounded(lambda: default.publish(topic, big, qos=1), 30) is True
    assert [m.payload == big for m in peer.wait_for(topic, timeout=20)] == [True]


@pytest.mark.parametrize("state", ["never connected", "after disconnect"])
def test_publish_when_not_connected_raises(make_client, topic, state):
    """publish() before connect() or after disconnect() raises MQTTException."""
    c = make_client()
    if state == "after disconnect":
        c.connect()
        c.disconnect()
    with pytest.raises(umqtt.MQTTException):
        bounded(lambda: c.publish(topic, b"x"))


# --------------------------------------------------------------------------- subscribe


@pytest.mark.parametrize("qos", [0, 1, 2])
def test_subscribe_each_qos_receives(client, client_id, inbox, broker, peer, topic, qos):
    """subscribe() at QoS 0/1/2 returns True; the callback gets (bytes, bytes) on this thread."""
    assert client.subscribe(topic, qos) is True
    assert broker.wait_for_log(f"\t{topic} (QoS {qos})")
    peer.publish(topic, b"to-device", qos=2)
    assert inbox.pump(client, topic=topic) == [b"to-device"]
    [delivery] = inbox.items
    assert type(delivery.topic) is bytes and type(delivery.msg) is bytes
    assert delivery.topic == topic.encode()
    assert delivery.thread == threading.get_ident()
    assert broker.wait_for_log(f"Sending PUBLISH to {client_id} (d0, q{qos}, r0,")


def test_subscribe_keyword_arguments(client, inbox, peer, topic):
    """subscribe(topic=..., qos=...) works by name."""
    assert client.subscribe(topic=topic, qos=1) is True
    peer.publish(topic, b"kw")
    assert inbox.pump(client, topic=topic) == [b"kw"]


@pytest.mark.parametrize("wildcard", ["+", "#"])
def test_subscribe_wildcard_filters(client, inbox, peer, topic, wildcard):
    """Filters with + and # are accepted and match."""
    assert client.subscribe(f"{topic}/{wildcard}", 1) is True
    peer.publish(f"{topic}/leaf", b"w")
    assert inbox.pump(client, topic=f"{topic}/leaf") == [b"w"]


@pytest.mark.parametrize("length", [123, 300, 4000])
def test_subscribe_long_topics(client, inbox, peer, topic, length):
    """Topics of any length work (the device breaks at 123 bytes)."""
    long_topic = f"{topic}/".ljust(length, "x")
    assert client.subscribe(long_topic, 1) is True
    peer.publish(long_topic, b"long")
    assert inbox.pump(client, topic=long_topic) == [b"long"]


def test_subscribe_refusal_returns_false_and_logs(auth_broker, make_client, inbox, umqtt_log):
    """A SUBACK 0x80 makes subscribe() return False, logs a warning, and the client goes on."""
    c = make_client(broker=auth_broker, user=ALICE[0], password=ALICE[1])
    c.set_callback(inbox.callback)
    assert c.connect() == 0
    assert c.subscribe(f"forbidden/{unique_id()}", 1) is False
    assert wait_until(lambda: umqtt_log.records(logging.WARNING), 2), "refusal not logged"
    assert c.subscribe(f"allowed/{unique_id()}", 1) is True


def test_subscribe_without_callback_raises_assertion(make_client, topic):
    """subscribe() before set_callback() raises AssertionError with the device's text."""
    c = make_client()
    c.connect()
    with pytest.raises(AssertionError, match="Subscribe callback is not set"):
        c.subscribe(topic)


def test_unsubscribe_stops_delivery(client, client_id, inbox, broker, peer, topic):
    """After unsubscribe() returns True, messages on that topic are no longer delivered."""
    gone, kept = f"{topic}/gone", f"{topic}/kept"
    assert client.subscribe(gone, 1) is True
    assert client.subscribe(kept, 1) is True
    peer.publish(gone, b"before")
    assert inbox.pump(client, topic=gone) == [b"before"]
    assert client.unsubscribe(gone) is True
    assert broker.wait_for_log(f"Received UNSUBSCRIBE from {client_id}")
    peer.publish(gone, b"after")
    peer.publish(kept, b"marker")  # same publisher, same QoS: arrives after "after" would
    assert inbox.pump(client, topic=kept) == [b"marker"]
    client.check_msg()
    assert inbox.payloads(gone) == [b"before"]


# --------------------------------------------------------------------------- receiving


def test_check_msg_never_blocks(client, topic):
    """check_msg() returns at once when nothing is queued."""
    assert client.subscribe(topic, 1) is True
    durations = []
    for _ in range(20):
        start = time.monotonic()
        bounded(client.check_msg, 2)
        durations.append(time.monotonic() - start)
    assert max(durations) < 0.2 and sum(durations) < 1.0, durations


@pytest.mark.parametrize("method", ["check_msg", "wait_msg"])
def test_one_call_delivers_everything_that_arrived(
    client, client_id, inbox, broker, peer, topic, method
):
    """Arrived messages wait (no hidden thread runs the callback, nothing is acknowledged before
    it ran); one check_msg()/wait_msg() delivers all of them, in order, on the calling thread."""
    assert client.subscribe(topic, 1) is True
    mark = broker.log_size()
    sent = [b"m%d" % i for i in range(5)]
    for m in sent:
        peer.publish(topic, m, qos=1)
    deliveries = f"Sending PUBLISH to {client_id}"
    pubacks = f"Received PUBACK from {client_id}"
    assert wait_until(lambda: len(broker.log_lines(deliveries, since=mark)) == len(sent), 5)
    time.sleep(0.3)
    assert inbox.items == [], "the callback ran outside check_msg()/wait_msg()"
    assert broker.log_lines(pubacks, since=mark) == [], "PUBACK sent before the callback ran"
    call = Bounded(getattr(client, method), method)
    call.join(5)
    assert inbox.payloads(topic) == sent
    assert {d.thread for d in inbox.items} == {call.thread.ident}
    assert wait_until(lambda: len(broker.log_lines(pubacks, since=mark)) == len(sent), 5)


def test_wait_msg_blocks_until_a_message_arrives(client, inbox, peer, topic):
    """wait_msg() blocks while nothing arrives, then delivers on its own thread and returns."""
    assert client.subscribe(topic, 1) is True
    waiter = Bounded(client.wait_msg, "wait_msg")
    time.sleep(0.5)
    assert not waiter.done, "wait_msg() returned with nothing to deliver"
    peer.publish(topic, b"wake up")
    waiter.join(5)
    assert inbox.payloads(topic) == [b"wake up"]
    assert inbox.items[0].thread == waiter.thread.ident


def test_callback_exception_is_logged_and_client_goes_on(client, peer, topic, umqtt_log):
    """An exception raised by the callback is logged on 'umqtt' and later messages still arrive."""
    seen = []

    def callback(t, m):
        seen.append(m)
        if m == b"first":
            raise RuntimeError("callback boom")

    client.set_callback(callback)
    assert client.subscribe(topic, 1) is True
    peer.publish(topic, b"first")
    bounded(client.wait_msg)
    assert wait_until(lambda: "callback boom" in umqtt_log.text(), 2), "exception not logged"
    peer.publish(topic, b"second")
    bounded(client.wait_msg)
    assert seen == [b"first", b"second"]
    assert client.publish(topic, b"still fine", qos=1) is True


# --------------------------------------------------------------------------- sessions


def test_session_present_flag(make_client, inbox, peer, topic, client_id):
    """connect(clean_session=False) returns 0 for a new session, 1 for a kept one; clean -> 0."""
    first = make_client(client_id=client_id)
    first.set_callback(inbox.callback)
    assert first.connect(clean_session=False) == 0
    assert first.subscribe(topic, 1) is True
    first.disconnect()
    peer.publish(topic, b"while away", qos=1)

    second = make_client(client_id=client_id)
    second.set_callback(inbox.callback)
    assert second.connect(clean_session=False) == 1
    assert inbox.pump(second, topic=topic) == [b"while away"]  # no re-subscribe needed
    second.disconnect()

    third = make_client(client_id=client_id)
    assert third.connect(clean_session=True) == 0


def test_session_flags_reach_the_broker(broker, make_client, client_id):
    """clean_session=False is sent as such (logged as c0)."""
    assert make_client(client_id=client_id).connect(clean_session=False) == 0
    assert broker.connect_flags(client_id).startswith("p2, c0,")


# ------------------------------------------------------------------ will, close, disconnect


def test_close_publishes_last_will(make_client, client_id, broker, peer, topic):
    """set_last_will() then close(): the broker publishes the will to the peer."""
    c = make_client(client_id=client_id)
    c.set_last_will(topic, b"gone", retain=False, qos=1)
    assert c.connect() == 0
    assert broker.wait_for_log("Will message specified (4 bytes) (r0, q1).")
    peer.subscribe(topic)
    c.close()
    [got] = peer.wait_for(topic)
    assert (got.payload, got.qos) == (b"gone", 1)


def test_disconnect_sends_no_will_and_connect_works_again(
    make_client, client_id, broker, peer, topic
):
    """disconnect() sends DISCONNECT (no will); connect() afterwards works on the same object."""
    will = f"{topic}/will"
    c = make_client(client_id=client_id)
    c.set_last_will(will, b"gone")
    assert c.connect() == 0
    peer.subscribe(will)
    peer.subscribe(topic)
    c.disconnect()
    assert broker.wait_for_log(f"Received DISCONNECT from {client_id}")
    time.sleep(0.3)
    assert peer.received(will) == []
    assert c.connect() == 0
    assert c.publish(topic, b"back", qos=1) is True
    assert [m.payload for m in peer.wait_for(topic)] == [b"back"]


def test_close_then_connect_again(client, peer, topic):
    """close() then connect() on the same object works."""
    peer.subscribe(topic)
    client.close()
    assert client.connect() == 0
    assert client.publish(topic, b"again", qos=1) is True
    assert [m.payload for m in peer.wait_for(topic)] == [b"again"]


def test_disconnect_sends_queued_messages_first(client, peer, topic):
    """disconnect() right after many QoS 0 publishes still delivers every one of them."""
    peer.subscribe(topic)
    sent = [b"%d" % i for i in range(200)]
    assert all(client.publish(topic, m) for m in sent)
    client.disconnect()
    assert [m.payload for m in peer.wait_for(topic, count=len(sent))] == sent


def test_disconnect_never_raises(make_client):
    """disconnect() before connect() and twice in a row does not raise."""
    c = make_client()
    bounded(c.disconnect)
    assert c.connect() == 0
    bounded(c.disconnect)
    bounded(c.disconnect)


def test_get_mqttsta_lifecycle(make_client):
    """get_mqttsta(): -1 before connect, 0 connected, -1 after disconnect."""
    c = make_client()
    assert c.get_mqttsta() == -1
    assert c.connect() == 0
    assert c.get_mqttsta() == 0
    c.disconnect()
    assert c.get_mqttsta() == -1


def test_ping(make_client):
    """ping() raises MQTTException before connect(), and returns None once connected."""
    c = make_client()
    with pytest.raises(umqtt.MQTTException):
        c.ping()
    assert c.connect() == 0
    assert bounded(c.ping) is None


def test_exception_hierarchy():
    """The exception classes have the documented bases."""
    assert issubclass(umqtt.MQTTException, Exception)
    assert issubclass(umqtt.MQTTConnectError, ValueError)
    assert issubclass(umqtt.MQTTConnectError, umqtt.MQTTException)
    assert issubclass(umqtt.MQTTConnectionLost, ConnectionError)
    assert issubclass(umqtt.MQTTConnectionLost, umqtt.MQTTException)


def test_last_will_can_be_retained(make_client, client_id, broker, make_peer, topic):
    """set_last_will(..., retain=True) makes the will a retained message."""
    c = make_client(client_id=client_id)
    c.set_last_will(topic, "last words", retain=True, qos=0)
    assert c.connect() == 0
    assert broker.wait_for_log("Will message specified (10 bytes) (r1, q0).")
    c.close()
    assert broker.wait_for_log(f"Client {client_id} ", "closed its connection")
    late = make_peer(broker)
    late.subscribe(topic)
    [got] = late.wait_for(topic)
    assert (got.payload, got.retain) == (b"last words", True)
    late.publish(topic, b"", retain=True)


@pytest.mark.parametrize("server", ["127.0.0.1", "::1"])
def test_repr_names_the_broker_as_error_messages_do(server):
    """repr() writes host:port as the core's messages do: an IPv6 address in brackets."""
    port = free_port()
    shown = f"[::1]:{port}" if server == "::1" else f"127.0.0.1:{port}"
    for cls in (umqtt.MQTTClient, umqtt.simple.MQTTClient):
        c = cls("repr-test", server, port)
        assert f"server='{shown}'" in repr(c)
    with pytest.raises(OSError, match=re.escape(shown)):
        umqtt.simple.MQTTClient("repr-test", server, port, connect_timeout=2).connect()

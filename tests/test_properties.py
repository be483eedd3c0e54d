"""Property-based tests (issue 7): whatever is published arrives byte-for-byte identical, and
whatever is rejected is rejected at once with a clear error.

One publisher/subscriber pair of `umqtt.MQTTClient`s (reconn=False, so a dropped link is a
failure, not a silent reconnect) and a paho peer are connected to the shared broker for the whole
module and reused by every example; a helper reconnects them if an example broke them, so
hypothesis can shrink a failure. Each example subscribes both receivers to the exact topic, so
any topic is received, then unsubscribes.

Topics starting with `$SYS` or `$share` are left out of the round trips: mosquitto keeps
client publishes to `$SYS` to itself and treats `$share` as a shared-subscription prefix; other
`$` topics are generated.
"""

from __future__ import annotations

import threading
import unicodedata
from collections.abc import Iterator
from typing import Any

import pytest
import umqtt
import umqtt.simple
from broker import Mosquitto, unique_id, wait_until
from conftest import Peer
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

MAX_PAYLOAD = 64 * 1024
LIMIT = 1024 * 1024  # max_packet_size of the pair: every generated message fits

SETTINGS = settings(
    deadline=None,
    max_examples=60,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
QUICK = settings(deadline=None, max_examples=150)


def is_noncharacter(ch: str) -> bool:
    cp = ord(ch)
    return 0xFDD0 <= cp <= 0xFDEF or (cp & 0xFFFE) == 0xFFFE


def broker_safe(topic: str) -> bool:
    """Characters MQTT 3.1.1 §1.5.3 says SHOULD NOT be sent (controls, non-characters) are left to
    test_any_topic_is_delivered_or_rejected_up_front; here only what every broker must take."""
    return not any(unicodedata.category(ch) == "Cc" or is_noncharacter(ch) for ch in topic)


def special_prefix(topic: str) -> bool:
    return topic.startswith(("$SYS", "$share"))


# Any text without surrogates (which UTF-8 cannot encode), wildcards or NUL, 1..200 bytes.
topic_chars = st.characters(exclude_categories=("Cs",), exclude_characters="+#\x00")
topics = (
    st.text(topic_chars, min_size=1, max_size=80)
    .filter(lambda t: len(t.encode()) <= 200)
    .filter(broker_safe)
    .filter(lambda t: not special_prefix(t))
)
payloads = st.one_of(
    st.binary(max_size=256),
    st.binary(min_size=256, max_size=MAX_PAYLOAD),
    st.integers(0, MAX_PAYLOAD).map(lambda n: bytes(range(256)) * (n // 256) + bytes(n % 256)),
)
qoses = st.sampled_from([0, 1, 2])


# --------------------------------------------------------------------------- the pair


class Pair:
    """A umqtt publisher, a umqtt subscriber and a paho peer, reused across examples."""

    def __init__(self, broker: Mosquitto) -> None:
        self.broker = broker
        self.received: list[tuple[bytes, bytes]] = []
        self.lock = threading.Lock()
        self.pub: Any = None
        self.sub: Any = None
        self.peer = Peer(broker)
        self.connect()

    def _client(self) -> Any:
        return umqtt.MQTTClient(
            unique_id("prop"),
            self.broker.host,
            self.broker.port,
            reconn=False,
            max_packet_size=LIMIT,
            ack_timeout=5,
        )

    def connect(self) -> None:
        for c in (self.pub, self.sub):
            if c is not None:
                c.close()
        self.pub, self.sub = self._client(), self._client()
        self.pub.set_callback(lambda t, m: None)
        self.sub.set_callback(self._on_message)
        assert self.pub.connect() == 0
        assert self.sub.connect() == 0

    def _on_message(self, topic: bytes, msg: bytes) -> None:
        with self.lock:
            self.received.append((topic, msg))

    def healthy(self) -> bool:
        return self.pub.get_mqttsta() == 0 and self.sub.get_mqttsta() == 0

    def ensure(self) -> None:
        if not self.healthy():
            self.connect()
        with self.lock:
            self.received.clear()
        self.peer.messages.clear()

    def listen(self, topic: str, peer: bool = True) -> None:
        assert self.sub.subscribe(topic, 2) is True, f"subscribe to {topic!r} refused"
        if peer:
            self.peer.subscribe(topic, 2)

    def forget(self, topic: str, peer: bool = True) -> None:
        self.sub.unsubscribe(topic)
        if peer:
            self.peer.client.unsubscribe(topic)

    def wait(
        self, count: int = 1, timeout: float = 5.0, peer: bool = True
    ) -> list[tuple[bytes, bytes]]:
        def arrived() -> bool:
            self.sub.check_msg()
            return len(self.received) >= count and (not peer or len(self.peer.messages) >= count)

        wait_until(arrived, timeout)
        with self.lock:
            return list(self.received)

    def close(self) -> None:
        for c in (self.pub, self.sub):
            c.disconnect()
        self.peer.close()


@pytest.fixture(scope="module")
def pair(broker: Mosquitto) -> Iterator[Pair]:
    p = Pair(broker)
    yield p
    p.close()


def as_type(data: bytes, kind: str) -> Any:
    return {"bytes": data, "bytearray": bytearray(data), "memoryview": memoryview(data)}[kind]


# --------------------------------------------------------------------------- round trips


@SETTINGS
@given(
    topic=topics,
    payload=payloads,
    qos=qoses,
    topic_as_bytes=st.booleans(),
    kind=st.sampled_from(["bytes", "bytearray", "memoryview"]),
)
@example(topic="$oc/devices/x", payload=b"", qos=1, topic_as_bytes=False, kind="bytes")
@example(topic="/", payload=b"\x00" * 65536, qos=2, topic_as_bytes=True, kind="memoryview")
@example(
    topic="é/\U0001f600/\u2028",
    payload=bytes(range(256)),
    qos=0,
    topic_as_bytes=False,
    kind="bytearray",
)
def test_published_message_arrives_identical(pair, topic, payload, qos, topic_as_bytes, kind):
    """A message published to any topic (str or UTF-8 bytes) with any payload (bytes, bytearray,
    memoryview, 0..64 KiB) at any QoS arrives once, topic and payload byte-for-byte identical, at a
    umqtt subscriber and at a paho peer."""
    pair.ensure()
    pair.listen(topic)
    try:
        sent_topic = topic.encode() if topic_as_bytes else topic
        assert pair.pub.publish(sent_topic, as_type(payload, kind), False, qos) is True
        got = pair.wait()
        assert got == [(topic.encode(), payload)], (
            f"umqtt subscriber got {[(t, len(m)) for t, m in got]}"
        )
        peer_got = [(m.topic, m.payload) for m in pair.peer.messages]
        assert peer_got == [(topic, payload)], f"paho got {[(t, len(m)) for t, m in peer_got]}"
        assert pair.healthy()
    finally:
        if pair.healthy():
            pair.forget(topic)


@SETTINGS
@given(
    text=st.text(
        st.characters(exclude_categories=("Cs",), exclude_characters="\x00+#"), max_size=2000
    ),
    qos=qoses,
)
def test_str_payload_arrives_as_its_utf8(pair, text, qos):
    """A str payload is sent as its UTF-8 encoding."""
    pair.ensure()
    topic = f"umqtt-test/prop/{unique_id()}"
    pair.listen(topic)
    try:
        assert pair.pub.publish(topic, text, False, qos) is True
        assert pair.wait() == [(topic.encode(), text.encode())]
    finally:
        if pair.healthy():
            pair.forget(topic)


@SETTINGS
@given(topic=st.text(st.characters(exclude_categories=("Cs",)), max_size=40))
@example(topic="a\tb")
@example(topic="a\uffffb")
@example(topic="a/+")
@example(topic="")
def test_any_topic_is_delivered_or_rejected_up_front(pair, topic):
    """Whatever the topic text, publish() either delivers it (identical) or raises ValueError or
    TypeError with a message before sending anything; it never costs the connection."""
    assume(not special_prefix(topic))
    pair.ensure()
    try:
        subscribed = pair.sub.subscribe(topic, 2)
    except (ValueError, TypeError) as e:
        assert str(e).strip(), f"{e!r} has no message"  # a filter rejected at once: fine
        subscribed = None
    assert subscribed is not False, (
        f"subscribe({topic!r}) was accepted by the client, then refused or the connection dropped "
        f"(state {pair.sub._core.state}): the client should have rejected the topic with ValueError"
    )
    try:
        published = pair.pub.publish(topic, b"p", False, 1)
    except (ValueError, TypeError) as e:
        assert str(e).strip(), f"{e!r} has no message"
        assert pair.healthy(), f"{topic!r}: rejected, but the link dropped too"
        return
    finally:
        if subscribed and pair.healthy():
            pair.forget(topic, peer=False)
    assert published is True, (
        f"publish({topic!r}) was accepted by the client but not by the broker (state "
        f"{pair.pub._core.state}): the client should have rejected the topic with ValueError"
    )
    assert subscribed, f"publish({topic!r}) was accepted, subscribe() to it was rejected"
    assert pair.wait(peer=False) == [(topic.encode(), b"p")]


# --------------------------------------------------------------------------- rejections


def _rejects(
    call: Any, exc: type[BaseException] | tuple[type[BaseException], ...], word: str | None = None
) -> BaseException:
    try:
        call()
    except BaseException as e:
        assert isinstance(e, Exception), f"not an Exception: {type(e).__module__}.{e!r}"
        assert isinstance(e, exc), f"expected {exc}, got {e!r}"
        text = " ".join([str(e), *getattr(e, "__notes__", ())])
        assert str(e).strip(), f"{e!r} has no message"
        if word is not None:
            assert word.lower() in text.lower(), f"{word!r} not in {text!r}"
        return e
    raise AssertionError("no exception")


wildcard_topics = st.builds(
    lambda a, w, b: a + w + b,
    st.text(topic_chars, max_size=10),
    st.sampled_from(["+", "#"]),
    st.text(topic_chars, max_size=10),
)


@QUICK
@given(topic=wildcard_topics, as_bytes=st.booleans())
def test_wildcard_topics_are_rejected(pair, topic, as_bytes):
    t = topic.encode() if as_bytes else topic
    _rejects(lambda: pair.pub.publish(t, b"x"), ValueError, "wildcard")
    _rejects(lambda: pair.pub.set_last_will(t, b"x"), ValueError, "wildcard")


@QUICK
@given(before=st.text(topic_chars, max_size=10), after=st.text(topic_chars, max_size=10))
def test_nul_in_topics_is_rejected(pair, before, after):
    topic = before + "\x00" + after
    _rejects(lambda: pair.pub.publish(topic, b"x"), ValueError, "NUL")
    _rejects(lambda: pair.pub.set_last_will(topic, b"x"), ValueError, "NUL")
    _rejects(lambda: pair.sub.subscribe(topic), ValueError, "NUL")


@QUICK
@given(raw=st.binary(min_size=1, max_size=40))
def test_invalid_utf8_topics_are_rejected(pair, raw):
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        pass
    else:
        assume(False)
    _rejects(lambda: pair.pub.publish(raw, b"x"), ValueError, "UTF-8")
    _rejects(lambda: pair.sub.subscribe(raw), ValueError, "UTF-8")
    _rejects(lambda: pair.pub.set_last_will(raw, b"x"), ValueError, "UTF-8")


@settings(deadline=None, max_examples=20)
@given(extra=st.integers(1, 5000), char=st.sampled_from(["x", "é", "\u20ac", "\U0001f600"]))
def test_topics_over_65535_bytes_are_rejected(pair, extra, char):
    width = len(char.encode())
    topic = char * ((65535 + extra + width - 1) // width)
    assert len(topic.encode()) > 65535
    _rejects(lambda: pair.pub.publish(topic, b"x"), ValueError, "65535")
    _rejects(lambda: pair.sub.subscribe(topic), ValueError, "65535")


@QUICK
@given(qos=st.integers().filter(lambda q: q not in (0, 1, 2)))
def test_qos_outside_0_to_2_is_rejected(pair, qos):
    _rejects(lambda: pair.pub.publish("umqtt-test/prop/q", b"x", False, qos), ValueError, "qos")
    _rejects(lambda: pair.sub.subscribe("umqtt-test/prop/q", qos), ValueError, "qos")
    _rejects(
        lambda: pair.pub.set_last_will("umqtt-test/prop/q", b"x", False, qos), ValueError, "qos"
    )


@QUICK
@given(qos=st.one_of(st.floats(), st.text(max_size=3), st.binary(max_size=3), st.lists(st.none())))
def test_qos_of_other_types_is_rejected(pair, qos):
    _rejects(lambda: pair.pub.publish("umqtt-test/prop/q", b"x", False, qos), TypeError, "qos")


@QUICK
@given(port=st.integers().filter(lambda p: not 0 <= p <= 65535), as_str=st.booleans())
def test_ports_out_of_range_are_rejected(broker, port, as_str):
    value = str(port) if as_str else port
    for cls in (umqtt.MQTTClient, umqtt.simple.MQTTClient):
        _rejects(lambda cls=cls: cls("x", broker.host, value), ValueError, "port")


@QUICK
@given(port=st.text(max_size=8).filter(lambda s: not s.strip().isdigit()))
def test_non_decimal_port_strings_are_rejected(broker, port):
    try:
        int(port.strip())
    except ValueError:
        pass
    else:
        assume(False)  # "+5", "٣" (Unicode digits) and the like: int() takes them; skip
    _rejects(lambda: umqtt.MQTTClient("x", broker.host, port), ValueError, "port")


@QUICK
@given(keepalive=st.integers().filter(lambda k: not 0 <= k <= 65535))
def test_keepalive_out_of_range_is_rejected(broker, keepalive):
    for cls in (umqtt.MQTTClient, umqtt.simple.MQTTClient):
        _rejects(
            lambda cls=cls: cls("x", broker.host, 1883, keepalive=keepalive),
            ValueError,
            "keepalive",
        )


@QUICK
@given(size=st.integers().filter(lambda n: not 1024 <= n <= 268_435_460))
def test_max_packet_size_out_of_range_is_rejected(broker, size):
    _rejects(
        lambda: umqtt.MQTTClient("x", broker.host, 1883, max_packet_size=size),
        ValueError,
        "max_packet_size",
    )


# --------------------------------------------------------------------------- options round-trip


# Controls and non-characters left out: MQTT 3.1.1 §1.5.3 says they SHOULD NOT be sent, so a
# client may reject them; Python's str.strip() and Rust's trim() also disagree on \x1c-\x1f.
plain_chars = st.characters(exclude_categories=("Cs", "Cc")).filter(
    lambda c: not is_noncharacter(c)
)
ids = st.text(plain_chars, max_size=40)
hosts = st.text(plain_chars, min_size=1, max_size=40).filter(lambda s: s.strip() != "")


@QUICK
@given(
    client_id=ids,
    as_bytes=st.booleans(),
    server=hosts,
    port=st.integers(0, 65535),
    port_as_str=st.booleans(),
    keepalive=st.one_of(st.just(0), st.integers(5, 65535)),
    ssl=st.booleans(),
)
def test_options_round_trip(client_id, as_bytes, server, port, port_as_str, keepalive, ssl):
    """What the constructor took is what the client reports: client id, server, port (0 -> the
    default for the transport), keepalive."""
    cid = client_id.encode() if as_bytes else client_id
    params = {"cert_reqs": 0} if ssl else {}
    c = umqtt.MQTTClient(
        cid,
        server,
        str(port) if port_as_str else port,
        keepalive=keepalive,
        ssl=ssl,
        ssl_params=params,
    )
    assert c._core.client_id == client_id
    assert c._core.server == server.strip()
    assert c.port == (port or (8883 if ssl else 1883))
    assert c._core.port == c.port
    assert c._core.keepalive == keepalive
    assert c.keepalive == keepalive
    assert c.get_mqttsta() == -1
    assert repr(c)

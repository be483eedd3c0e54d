"""Bad input: every wrong argument raises an Exception (never a Rust panic), never hangs, and
leaves the client usable."""

from __future__ import annotations

import pytest
import umqtt
from broker import bounded, unique_id


@pytest.fixture(scope="module")
def victim(broker):
    """One connected client that every bad call is thrown at."""
    c = umqtt.MQTTClient(unique_id("victim"), broker.host, broker.port)
    c.set_callback(lambda t, m: None)
    assert c.connect() == 0
    yield c
    c.disconnect()


@pytest.fixture
def new(make_client):
    """Build a client for the shared broker with some constructor arguments overridden."""
    return make_client


def ctor(**overrides):
    return lambda client, new: new(**overrides)


def method(name, *args, **kwargs):
    return lambda client, new: getattr(client, name)(*args, **kwargs)


T = "umqtt-test/bad-input"
BAD_CONSTRUCTOR = [
    pytest.param(ctor(client_id=123), TypeError, id="client_id-int"),
    pytest.param(ctor(client_id=None), TypeError, id="client_id-None"),
    pytest.param(ctor(server=None), TypeError, id="server-None"),
    pytest.param(ctor(server=123), TypeError, id="server-int"),
    pytest.param(ctor(user=123), TypeError, id="user-int"),
    pytest.param(ctor(password=123), TypeError, id="password-int"),
    pytest.param(ctor(port=1.5), TypeError, id="port-float"),
    pytest.param(ctor(port=[1883]), TypeError, id="port-list"),
    pytest.param(ctor(port="abc"), ValueError, id="port-abc"),
    pytest.param(ctor(port=""), ValueError, id="port-empty-str"),
    pytest.param(ctor(port="0x75b"), ValueError, id="port-hex-str"),
    pytest.param(ctor(port=-1), ValueError, id="port-negative"),
    pytest.param(ctor(port=65536), ValueError, id="port-65536"),
    pytest.param(ctor(port="65536"), ValueError, id="port-str-65536"),
    pytest.param(ctor(keepalive="60"), TypeError, id="keepalive-str"),
    pytest.param(ctor(keepalive=-1), ValueError, id="keepalive-negative"),
    pytest.param(ctor(keepalive=65536), ValueError, id="keepalive-65536"),
    pytest.param(ctor(version=6), ValueError, id="version-6"),
    pytest.param(ctor(version=2), ValueError, id="version-2"),
    pytest.param(ctor(max_packet_size=100), ValueError, id="max_packet_size-tiny"),
    pytest.param(ctor(max_packet_size=2**30), ValueError, id="max_packet_size-huge"),
]
BAD_PUBLISH = [
    pytest.param(method("publish", 123, b"x"), TypeError, id="topic-int"),
    pytest.param(method("publish", None, b"x"), TypeError, id="topic-None"),
    pytest.param(method("publish", T, None), TypeError, id="msg-None"),
    pytest.param(method("publish", T, 123), TypeError, id="msg-int"),
    pytest.param(method("publish", T, {"a": 1}), TypeError, id="msg-dict"),
    pytest.param(method("publish", T, b"x", qos=3), ValueError, id="qos-3"),
    pytest.param(method("publish", T, b"x", qos=-1), ValueError, id="qos-negative"),
    pytest.param(method("publish", T, b"x", qos="1"), TypeError, id="qos-str"),
    pytest.param(method("publish", "a/+", b"x"), ValueError, id="topic-plus"),
    pytest.param(method("publish", "a/#", b"x"), ValueError, id="topic-hash"),
    pytest.param(method("publish", "#", b"x"), ValueError, id="topic-only-hash"),
    pytest.param(method("publish", b"a/+/b", b"x"), ValueError, id="topic-bytes-plus"),
    pytest.param(method("publish", "", b"x"), ValueError, id="topic-empty"),
    pytest.param(method("publish", b"", b"x"), ValueError, id="topic-empty-bytes"),
    pytest.param(method("publish", "a\x00b", b"x"), ValueError, id="topic-NUL"),
    pytest.param(method("publish", b"a\x00b", b"x"), ValueError, id="topic-NUL-bytes"),
    pytest.param(method("publish", "x" * 65536, b"x"), ValueError, id="topic-64KiB"),
]
BAD_SUBSCRIBE = [
    pytest.param(method("subscribe", 123), TypeError, id="sub-topic-int"),
    pytest.param(method("subscribe", ""), ValueError, id="sub-topic-empty"),
    pytest.param(method("subscribe", "a/#/b"), ValueError, id="sub-hash-not-last"),
    pytest.param(method("subscribe", "a/b#"), ValueError, id="sub-hash-in-level"),
    pytest.param(method("subscribe", "a+/b"), ValueError, id="sub-plus-in-level"),
    pytest.param(method("subscribe", "a\x00b"), ValueError, id="sub-NUL"),
    pytest.param(method("subscribe", "$share"), ValueError, id="sub-share-bare"),
    pytest.param(method("subscribe", "$share/group"), ValueError, id="sub-share-no-filter"),
    pytest.param(method("subscribe", T, 3), ValueError, id="sub-qos-3"),
    pytest.param(method("subscribe", T, -1), ValueError, id="sub-qos-negative"),
    pytest.param(method("subscribe", T, "0"), TypeError, id="sub-qos-str"),
    pytest.param(method("unsubscribe", 123), TypeError, id="unsub-topic-int"),
    pytest.param(method("unsubscribe", ""), ValueError, id="unsub-topic-empty"),
]
BAD_OTHER = [
    pytest.param(method("set_callback", 42), TypeError, id="callback-int"),
    pytest.param(method("set_callback", "f"), TypeError, id="callback-str"),
    pytest.param(method("error_register_cb", 42), TypeError, id="error-cb-int"),
    pytest.param(method("set_last_will", "a/#", b"x"), ValueError, id="will-wildcard"),
    pytest.param(method("set_last_will", "", b"x"), ValueError, id="will-empty-topic"),
    pytest.param(method("set_last_will", T, b"x", False, 3), ValueError, id="will-qos-3"),
    pytest.param(method("set_last_will", 123, b"x"), TypeError, id="will-topic-int"),
    pytest.param(method("set_last_will", T, 123), TypeError, id="will-msg-int"),
    pytest.param(
        lambda client, new: new(client_id="").connect(clean_session=False),
        ValueError,
        id="empty-client_id-persistent-session",
    ),
]


@pytest.mark.parametrize(
    ("call", "expected"), BAD_CONSTRUCTOR + BAD_PUBLISH + BAD_SUBSCRIBE + BAD_OTHER
)
def test_bad_argument_raises_and_client_survives(victim, new, topic, peer, call, expected):
    """A bad argument raises the documented Exception at once; the client goes on working."""
    try:
        bounded(lambda: call(victim, new), 5)
    except pytest.fail.Exception:
        raise  # it hung
    except BaseException as exc:
        assert isinstance(exc, Exception), f"{type(exc).__module__}.{type(exc).__name__}: {exc}"
        assert isinstance(exc, expected), f"expected {expected.__name__}, got {exc!r}"
    else:
        pytest.fail(f"no exception; expected {expected.__name__}")
    peer.subscribe(topic)
    assert bounded(lambda: victim.publish(topic, b"still alive", qos=1), 10) is True
    assert [m.payload for m in peer.wait_for(topic)] == [b"still alive"]


def test_payload_over_packet_limit_goes_out(new, peer, topic):
    """max_packet_size limits what comes in: a payload larger than it still goes out, and so do
    smaller ones (over 256 MiB, MQTT's own limit, is ValueError: tests/test_limits.py)."""
    c = new(max_packet_size=1024)
    assert c.connect() == 0
    peer.subscribe(topic)
    assert bounded(lambda: c.publish(topic, b"x" * 2048, qos=1)) is True
    assert c.publish(topic, b"small", qos=1) is True
    assert [m.payload for m in peer.wait_for(topic, 2)] == [b"x" * 2048, b"small"]

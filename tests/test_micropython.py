"""The MicroPython dialects (`umqtt.simple`, `umqtt.robust`), promise by promise.

Each test checks one bullet of the contract's "MicroPython dialects" and "Every dialect" sections
against a real mosquitto; the paho peer and the broker log are the independent witnesses.
micropython-lib's own behaviour (umqtt.simple 1.8, umqtt.robust 1.0) is the reference.
"""

from __future__ import annotations

import inspect
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Any, Callable

import paho.mqtt.client as paho
import pytest
import umqtt
import umqtt.robust
import umqtt.simple
from broker import (
    ALICE,
    FORBIDDEN,
    Bounded,
    Mosquitto,
    assert_ctrl_c_interrupts,
    bounded,
    free_port,
    unique_id,
    wait_until,
)
from conftest import Inbox

FAST = 0.2  # robust.DELAY in these tests (the default is 2 s)

# A child process blocked in umqtt.simple's wait_msg(), reporting when KeyboardInterrupt arrives.
CTRL_C_SCRIPT = textwrap.dedent(
    """
    import sys, time
    from umqtt.simple import MQTTClient
    host, port, cid = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    version = int(sys.argv[4]) if len(sys.argv) > 4 else 4
    c = MQTTClient(cid, host, port, version=version)
    c.set_callback(lambda t, m: None)
    c.connect()
    c.subscribe("umqtt-test/ctrl-c/" + cid)
    print("ready", flush=True)
    try:
        c.wait_msg()
    except KeyboardInterrupt:
        print("interrupted", time.monotonic(), flush=True)
        sys.exit(0)
    print("returned", flush=True)
    sys.exit(3)
    """
)


# --------------------------------------------------------------------------- local fixtures


@pytest.fixture
def simple_client(make_client: Callable[..., Any], inbox: Inbox) -> Any:
    """A connected umqtt.simple client on the shared broker, recording into inbox."""
    c = make_client(dialect="simple")
    c.set_callback(inbox.callback)
    assert c.connect() == 0
    return c


def link_gone(c: Any) -> bool:
    """True once the client knows its link is down (simple's ping() raises OSError then)."""
    try:
        c.ping()
    except OSError:
        return True
    return False


def restart_later(b: Mosquitto, after: float = 1.0) -> threading.Timer:
    timer = threading.Timer(after, b.start)
    timer.daemon = True
    timer.start()
    return timer


class Robust(umqtt.robust.MQTTClient):
    DELAY = FAST


# --------------------------------------------------------------------------- umqtt.simple


def test_constructor_signature_and_defaults(broker):
    """simple.MQTTClient(client_id, server, port=0, user=None, password=None, keepalive=0, ssl=None,
    ssl_params={}): same names, order and defaults as micropython-lib; port 0 means 1883/8883."""
    params = inspect.signature(umqtt.simple.MQTTClient).parameters
    positional = [n for n, p in params.items() if p.kind is p.POSITIONAL_OR_KEYWORD]
    defaults = {
        "port": 0,
        "user": None,
        "password": None,
        "keepalive": 0,
        "ssl": None,
        "ssl_params": {},
    }
    assert positional == ["client_id", "server", *defaults]
    assert {n: params[n].default for n in positional[2:]} == defaults
    assert umqtt.simple.MQTTClient("x", broker.host).port == 1883
    assert umqtt.simple.MQTTClient("x", broker.host, ssl=True).port == 8883
    c = umqtt.simple.MQTTClient(
        client_id=unique_id("kw"),
        server=broker.host,
        port=broker.port,
        user=None,
        password=None,
        keepalive=0,
        ssl=None,
        ssl_params={},
    )
    assert (c.keepalive, c.ssl, c.port) == (0, None, broker.port)
    assert c.connect() == 0
    c.disconnect()


def test_keepalive_zero_is_sent_as_zero(make_client, broker):
    """The default keepalive=0 reaches the broker as k0 (no keepalive)."""
    c = make_client(dialect="simple")
    assert c.connect() == 0
    assert "k0" in broker.connect_flags(c.client_id).split(", ")


def test_keepalive_pings_are_automatic(make_client, broker):
    """simple with keepalive=1 pings by itself while idle (MicroPython leaves that to the app):
    three PINGREQs reach the broker within 10 s (about 3 s at one a second; none without)."""
    c = make_client(dialect="simple", keepalive=1)
    assert c.connect() == 0
    since = broker.log_size()

    def pings() -> int:
        return len(broker.log_lines("Received PINGREQ from", c.client_id, since=since))

    assert wait_until(lambda: pings() >= 3, 10), f"{pings()} PINGREQs in 10 s with keepalive=1"
    c.ping()  # still connected


def test_connect_returns_session_present(make_client, broker):
    """connect(clean_session=True, timeout=None) returns the session-present flag: 0, then 1."""
    params = inspect.signature(umqtt.simple.MQTTClient.connect).parameters
    assert [(n, p.default) for n, p in params.items() if n != "self"] == [
        ("clean_session", True),
        ("timeout", None),
    ]
    c = make_client(dialect="simple")
    assert c.connect(clean_session=False) == 0
    c.disconnect()
    assert c.connect(False, timeout=5) == 1
    assert "c0" in broker.connect_flags(c.client_id).split(", ")
    c.disconnect()
    assert c.connect() == 0  # a clean session is never present
    assert "c1" in broker.connect_flags(c.client_id).split(", ")


def test_connack_refusal_raises_mqttexception_with_rc(auth_broker, make_client):
    """A wrong password raises MQTTException with args[0] == 5 (not authorized), not OSError."""
    assert umqtt.simple.MQTTException is umqtt.MQTTException
    assert umqtt.robust.MQTTException is umqtt.MQTTException
    c = make_client(
        dialect="simple", broker=auth_broker, user=ALICE[0], password="wrong-" + ALICE[1]
    )
    with pytest.raises(umqtt.simple.MQTTException) as excinfo:
        bounded(c.connect, 10)
    assert excinfo.value.args[0] == 5
    assert not isinstance(excinfo.value, OSError)
    ok = make_client(dialect="simple", broker=auth_broker, user=ALICE[0], password=ALICE[1])
    assert ok.connect() == 0


def test_network_failure_raises_oserror(broker):
    """connect() to a closed port raises OSError (MicroPython lets the socket error through)."""
    c = umqtt.simple.MQTTClient(unique_id(), broker.host, free_port())
    with pytest.raises(OSError):
        bounded(c.connect, 10)


@pytest.mark.parametrize("qos", [0, 1, 2])
def test_publish_returns_none_and_peer_receives(simple_client, peer, topic, qos):
    """publish() returns None at QoS 0, 1 and 2 (QoS 2 works here) and the peer receives it."""
    peer.subscribe(topic)
    assert simple_client.publish(topic, b"hello %d" % qos, False, qos) is None
    assert simple_client.publish(topic=topic, msg="text", retain=False, qos=qos) is None
    got = peer.wait_for(topic, 2)
    assert [(m.payload, m.qos) for m in got] == [(b"hello %d" % qos, qos), (b"text", qos)]


@pytest.mark.parametrize("qos", [0, 1, 2])
def test_publish_on_dead_link_raises_oserror(fresh_broker, make_client, topic, qos):
    """publish() after the broker died raises OSError (an MQTTException too), at every QoS."""
    c = make_client(dialect="simple", broker=fresh_broker, ack_timeout=2)
    assert c.connect() == 0
    fresh_broker.kill()
    assert wait_until(lambda: link_gone(c), 10)
    with pytest.raises(OSError) as excinfo:
        bounded(lambda: c.publish(topic, b"lost", qos=qos), 10)
    assert isinstance(excinfo.value, umqtt.MQTTException)


def test_publish_ack_timeout_on_frozen_broker(fresh_broker, make_client, topic):
    """With the broker frozen, a QoS 1 publish raises OSError after ack_timeout (MicroPython
    would block forever waiting for the PUBACK)."""
    c = make_client(dialect="simple", broker=fresh_broker, ack_timeout=1)
    assert c.connect() == 0
    fresh_broker.pause()
    try:
        started = time.monotonic()
        with pytest.raises(OSError):
            bounded(lambda: c.publish(topic, b"frozen", qos=1), 10)
        assert time.monotonic() - started < 5
    finally:
        fresh_broker.resume()


def test_subscribe_returns_none_and_delivers(simple_client, inbox, peer, topic):
    """subscribe() returns None once SUBACKed; what the peer then publishes is delivered."""
    assert simple_client.subscribe(topic, 1) is None
    assert simple_client.subscribe(topic=topic + "/kw", qos=0) is None
    peer.publish(topic, b"one", qos=1)
    assert bounded(simple_client.wait_msg, 5) == 0x32
    assert inbox.pairs() == [(topic.encode(), b"one")]


def test_subscribe_without_callback_asserts(make_client, topic):
    """subscribe() with no callback set raises AssertionError, as micropython-lib does."""
    c = make_client(dialect="simple")
    c.connect()
    with pytest.raises(AssertionError):
        c.subscribe(topic)


def test_subscribe_refusal_raises_0x80(auth_broker, make_client, inbox):
    """A SUBACK refusal raises MQTTException(0x80) with args[0] == 0x80; the client stays usable."""
    c = make_client(dialect="simple", broker=auth_broker, user=ALICE[0], password=ALICE[1])
    c.set_callback(inbox.callback)
    assert c.connect() == 0
    with pytest.raises(umqtt.simple.MQTTException) as excinfo:
        bounded(lambda: c.subscribe(FORBIDDEN.replace("#", "x"), 1), 10)
    assert excinfo.value.args[0] == 0x80
    assert c.subscribe("allowed/" + unique_id(), 1) is None


def test_unsubscribe_stops_delivery(simple_client, inbox, peer, topic):
    """After unsubscribe(), messages on that topic are no longer delivered."""
    marker = topic + "/marker"
    simple_client.subscribe(topic, 1)
    simple_client.subscribe(marker, 1)
    peer.publish(topic, b"before", qos=1)
    bounded(simple_client.wait_msg, 5)
    assert simple_client.unsubscribe(topic) is None
    peer.publish(topic, b"after", qos=1)
    peer.publish(marker, b"marker", qos=1)
    bounded(simple_client.wait_msg, 5)
    assert simple_client.check_msg() is None
    assert inbox.pairs() == [(topic.encode(), b"before"), (marker.encode(), b"marker")]


def test_wait_msg_one_message_per_call_returns_header(simple_client, inbox, peer, topic):
    """wait_msg() delivers exactly one message per call and returns 0x30 | qos << 1 | retain."""
    simple_client.subscribe(topic, 2)
    for qos in (0, 1, 2):
        peer.publish(topic, b"q%d" % qos, qos=qos)
    # all three are at the client before the first call
    assert wait_until(lambda: simple_client._core.pending_messages() == 3, 10)
    for n, qos in enumerate((0, 1, 2), start=1):
        assert bounded(simple_client.wait_msg, 5) == 0x30 | qos << 1
        assert inbox.payloads() == [b"q0", b"q1", b"q2"][:n]
    assert simple_client.check_msg() is None


def test_wait_msg_header_has_retain_bit(simple_client, inbox, peer, topic):
    """A retained message delivered on subscribe returns a header with the retain bit (0x33)."""
    peer.publish(topic, b"kept", qos=1, retain=True)
    try:
        simple_client.subscribe(topic, 1)
        assert bounded(simple_client.wait_msg, 5) == 0x33
        assert inbox.pairs() == [(topic.encode(), b"kept")]
    finally:
        peer.publish(topic, b"", qos=1, retain=True)  # clear it from the shared broker


def test_check_msg_returns_none_at_once_when_idle(simple_client, topic):
    """check_msg() returns None at once when no message is waiting."""
    simple_client.subscribe(topic, 1)
    started = time.monotonic()
    for _ in range(10):
        assert simple_client.check_msg() is None
    assert time.monotonic() - started < 0.5


def test_callback_error_propagates_and_nothing_is_lost(simple_client, peer, topic):
    """The callback's exception propagates out of wait_msg(); the next call delivers the next."""
    seen: list[bytes] = []

    def cb(t: bytes, m: bytes) -> None:
        seen.append(m)
        if m == b"bad":
            raise ValueError("callback failed")

    simple_client.set_callback(cb)
    simple_client.subscribe(topic, 1)
    for m in (b"bad", b"good", b"also good"):
        peer.publish(topic, m, qos=1)
    with pytest.raises(ValueError, match="callback failed"):
        bounded(simple_client.wait_msg, 5)
    assert bounded(simple_client.wait_msg, 5) == 0x32
    assert bounded(simple_client.wait_msg, 5) == 0x32
    assert seen == [b"bad", b"good", b"also good"]


def test_wait_msg_raises_oserror_when_broker_killed(fresh_broker, make_client, inbox, topic):
    """A wait_msg() blocked when the broker dies raises OSError, and again on the next call."""
    c = make_client(dialect="simple", broker=fresh_broker)
    c.set_callback(inbox.callback)
    c.connect()
    c.subscribe(topic, 1)
    waiter = Bounded(c.wait_msg, "wait_msg")
    time.sleep(0.3)
    fresh_broker.kill()
    with pytest.raises(OSError):
        waiter.join(10)
    with pytest.raises(OSError):
        bounded(c.wait_msg, 5)


def test_simple_does_not_reconnect(fresh_broker, make_client, topic):
    """simple never reconnects by itself: after a broker restart publish() raises OSError until
    connect() is called again."""
    c = make_client(dialect="simple", broker=fresh_broker, ack_timeout=2)
    assert c.connect() == 0
    fresh_broker.kill()
    assert wait_until(lambda: link_gone(c), 10)
    since = fresh_broker.log_size()
    fresh_broker.start()
    time.sleep(2.0)  # a reconnecting client would be back by now
    assert not fresh_broker.log_lines("New client connected", c.client_id, since=since)
    with pytest.raises(OSError):
        bounded(lambda: c.publish(topic, b"x", qos=1), 10)
    with pytest.raises(OSError):
        c.ping()
    assert c.connect() == 0
    assert c.publish(topic, b"x", qos=1) is None
    c.ping()


def test_tls_verifies_server_by_default(tmp_path, make_client):
    """ssl=True verifies the server certificate: an unknown CA fails (OSError); giving the CA in
    ssl_params works (devices never verify)."""
    trustme = pytest.importorskip("trustme")
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    chain, key, ca_file = tmp_path / "chain.pem", tmp_path / "key.pem", tmp_path / "ca.pem"
    cert.private_key_and_cert_chain_pem.write_to_path(str(chain))
    cert.private_key_pem.write_to_path(str(key))
    ca.cert_pem.write_to_path(str(ca_file))
    tls = Mosquitto(tmp_path, extra_config=[f"certfile {chain}", f"keyfile {key}"])
    try:
        untrusting = make_client(dialect="simple", broker=tls, ssl=True)
        with pytest.raises(OSError):
            bounded(untrusting.connect, 15)
        trusting = make_client(
            dialect="simple", broker=tls, ssl=True, ssl_params={"ca_certs": str(ca_file)}
        )
        assert bounded(trusting.connect, 15) == 0
        trusting.disconnect()
    finally:
        tls.kill()


# --------------------------------------------------------------------------- umqtt.robust


def test_robust_attributes_and_delay():
    """robust has DELAY = 2 and DEBUG = False; delay(i) sleeps DELAY seconds whatever i is."""
    assert umqtt.robust.MQTTClient.DELAY == 2
    assert umqtt.robust.MQTTClient.DEBUG is False
    assert issubclass(umqtt.robust.MQTTClient, umqtt.simple.MQTTClient)
    c = umqtt.robust.MQTTClient("x", "127.0.0.1")
    c.DELAY = FAST
    for i in (1, 7):
        started = time.monotonic()
        c.delay(i)
        assert FAST * 0.9 <= time.monotonic() - started < FAST + 0.3


def test_robust_log_prints_only_when_debug(capsys):
    """log(in_reconnect, e) prints nothing unless DEBUG; then "mqtt reconnect: ..."/"mqtt: ..."."""
    c = umqtt.robust.MQTTClient("x", "127.0.0.1")
    c.log(True, OSError(-1))
    c.log(False, OSError(-1))
    assert capsys.readouterr().out == ""
    c.DEBUG = True
    c.log(True, OSError(-1))
    c.log(False, OSError(-1))
    lines = capsys.readouterr().out.splitlines()
    assert lines == [f"mqtt reconnect: {OSError(-1)!r}", f"mqtt: {OSError(-1)!r}"]


def test_robust_publish_survives_broker_restart(fresh_broker, make_client, make_peer, topic):
    """robust publish() across a broker kill + restart reconnects, retries and returns None; the
    broker has the message (a retained one, seen by a peer connecting afterwards)."""
    c = make_client(client_class=Robust, broker=fresh_broker, ack_timeout=2)
    assert c.connect() == 0
    fresh_broker.kill()
    timer = restart_later(fresh_broker)
    try:
        assert bounded(lambda: c.publish(topic, b"survived", True, 1), 20) is None
    finally:
        timer.join(10)
    assert "c0" in fresh_broker.connect_flags(c.client_id).split(
        ", "
    )  # reconnect(): connect(False)
    peer = make_peer(fresh_broker)
    peer.subscribe(topic)
    got = peer.wait_for(topic)
    assert [(m.payload, m.retain) for m in got] == [(b"survived", True)]


class Resubscribing(Robust):
    """micropython-lib's example_resubscribe_robust.py pattern, verbatim signatures: connect()
    without timeout re-subscribes when no session was present; subscribe(topic) remembers."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.topics: list[Any] = []

    def connect(self, clean_session=True):
        if not super().connect(clean_session):
            for topic in self.topics:
                self.subscribe(topic)
            return False
        return True

    def subscribe(self, topic):
        super().subscribe(topic)
        if topic not in self.topics:
            self.topics.append(topic)


def test_robust_wait_msg_waits_across_restart(fresh_broker, make_client, make_peer, inbox, topic):
    """robust wait_msg() keeps waiting across a broker restart and delivers a message published
    after it (the subclass re-subscribes in connect(): the restarted broker lost the session)."""
    c = make_client(client_class=Resubscribing, broker=fresh_broker, ack_timeout=2)
    c.set_callback(inbox.callback)
    assert c.connect() is False
    c.subscribe(topic)
    waiter = Bounded(c.wait_msg, "robust-wait_msg")
    time.sleep(0.3)
    since = fresh_broker.log_size()
    fresh_broker.kill()
    timer = restart_later(fresh_broker)
    try:
        assert fresh_broker.wait_for_log("Sending SUBACK to", c.client_id, since=since, timeout=15)
    finally:
        timer.join(10)
    assert not waiter.done
    make_peer(fresh_broker).publish(topic, b"after restart", qos=1)
    assert waiter.join(10) == 0x30  # subscribe(topic) is QoS 0
    assert inbox.pairs() == [(topic.encode(), b"after restart")]


def test_robust_reconnect_calls_overridden_connect(broker, make_client, make_peer, topic):
    """reconnect() calls the subclass's connect(False), so a last will set inside it is used."""
    calls: list[bool] = []

    class WithWill(Robust):
        def connect(self, clean_session: bool = True, timeout: float | None = None) -> int:
            calls.append(clean_session)
            self.set_last_will(topic, b"gone", qos=1)
            return super().connect(clean_session, timeout)

    c = make_client(client_class=WithWill)
    assert c.connect() == 0
    c.disconnect()
    since = broker.log_size()
    assert c.reconnect() == 0  # a clean session is dropped on disconnect: nothing present
    assert calls == [True, False]
    assert "c0" in broker.connect_flags(c.client_id).split(", ")
    assert broker.log_lines("Will message specified", since=since)
    # The will is live: taking the client id over drops the link without DISCONNECT.
    watcher = make_peer(broker)
    watcher.subscribe(topic)
    thief = paho.Client(
        paho.CallbackAPIVersion.VERSION2, client_id=c.client_id, protocol=paho.MQTTv311
    )
    thief.connect(broker.host, broker.port)
    thief.loop_start()
    try:
        got = watcher.wait_for(topic)
        assert [m.payload for m in got] == [b"gone"]
    finally:
        thief.disconnect()
        thief.loop_stop()


def test_robust_check_msg(fresh_broker, make_client, inbox, topic):
    """check_msg(attempts=2) returns None when idle, and reconnects (connect(False)) on OSError."""
    assert inspect.signature(umqtt.robust.MQTTClient.check_msg).parameters["attempts"].default == 2
    c = make_client(client_class=Robust, broker=fresh_broker, ack_timeout=2)
    c.set_callback(inbox.callback)
    assert c.connect() == 0
    started = time.monotonic()
    assert c.check_msg() is None
    assert time.monotonic() - started < 0.5
    fresh_broker.kill()
    assert wait_until(lambda: link_gone(c), 10)
    fresh_broker.start()
    since = fresh_broker.log_size()
    assert bounded(c.check_msg, 15) is None
    assert fresh_broker.log_lines("New client connected", c.client_id, since=since)
    assert "c0" in fresh_broker.connect_flags(c.client_id).split(", ")
    c.ping()  # connected again
    c.subscribe(topic, 1)
    c.publish(topic, b"back", qos=1)
    assert wait_until(lambda: c.check_msg() or inbox.items, 5)
    assert inbox.pairs() == [(topic.encode(), b"back")]


def test_robust_does_not_catch_mqttexception(auth_broker, make_client, inbox):
    """robust does not retry an MQTTException (a SUBACK refusal propagates at once)."""
    c = make_client(client_class=Robust, broker=auth_broker, user=ALICE[0], password=ALICE[1])
    c.set_callback(inbox.callback)
    assert c.connect() == 0
    with pytest.raises(umqtt.MQTTException) as excinfo:
        bounded(lambda: c.subscribe(FORBIDDEN.replace("#", "y"), 0), 10)
    assert excinfo.value.args[0] == 0x80


# --------------------------------------------------------------------------- every dialect


@pytest.mark.parametrize("cls", [umqtt.simple.MQTTClient, Robust], ids=["simple", "robust"])
def test_wait_msg_while_other_threads_publish(make_client, inbox, peer, topic, cls):
    """wait_msg() on a reader thread while 3 threads publish QoS 0/1/2 on the same client: every
    publish returns None and every message is delivered once."""
    c = make_client(client_class=cls)
    c.set_callback(inbox.callback)
    c.connect()
    c.subscribe(topic + "/#", 2)
    peer.subscribe(topic + "/#")
    per_thread = 20
    expected = {
        (f"{topic}/{q}".encode(), b"%d-%d" % (q, n)) for q in range(3) for n in range(per_thread)
    }

    def read_all() -> None:
        while len(inbox.items) < len(expected):
            c.wait_msg()

    def publish_all(q: int) -> list[Any]:
        return [c.publish(f"{topic}/{q}", b"%d-%d" % (q, n), qos=q) for n in range(per_thread)]

    reader = Bounded(read_all, "reader")
    publishers = [Bounded(lambda q=q: publish_all(q), f"publisher-{q}") for q in range(3)]
    for publisher in publishers:
        assert publisher.join(30) == [None] * per_thread
    reader.join(30)
    assert set(inbox.pairs()) == expected
    assert len(inbox.items) == len(expected)
    assert wait_until(lambda: len(peer.received()) >= len(expected), 5)


@pytest.mark.parametrize("qos", [0, 1, 2])
def test_publish_from_callback(simple_client, peer, topic, qos):
    """A callback may publish() at QoS 0/1/2: no deadlock, returns None, the peer receives."""
    echo = topic + "/echo"
    results: list[Any] = []
    simple_client.set_callback(
        lambda t, m: results.append(simple_client.publish(echo, b"echo:" + m, qos=qos))
    )
    simple_client.subscribe(topic, 1)
    peer.subscribe(echo)
    peer.publish(topic, b"ping")
    bounded(simple_client.wait_msg, 15)
    assert results == [None]
    assert [m.payload for m in peer.wait_for(echo)] == [b"echo:ping"]


def test_ctrl_c_interrupts_simple_wait_msg(broker):
    """SIGINT to a process blocked in simple's wait_msg() raises KeyboardInterrupt within 1 s."""
    assert_ctrl_c_interrupts(CTRL_C_SCRIPT, broker.host, str(broker.port), unique_id("ctrl-c"))


# --------------------------------------------------------------------------- examples


EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


@pytest.mark.parametrize("name", ["example_pub.py", "example_sub.py", "example_robust.py"])
def test_example_runs(broker, name):
    """The MicroPython-style examples run unchanged (apart from the port) and end by themselves."""
    script = EXAMPLES / name
    if not script.exists():
        pytest.skip(f"{name} not written yet")
    source = script.read_text()
    assert "18830" in source
    run = subprocess.run(
        [sys.executable, "-c", source.replace("18830", str(broker.port))],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert run.returncode == 0, f"{run.stdout}\n{run.stderr}"

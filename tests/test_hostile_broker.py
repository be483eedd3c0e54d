"""A hostile broker (issue 7): oversized or malformed packets close the connection with a clear
error, never a panic or a hang, and the process does not grow while the broker keeps sending.

The broker is the suite's scripted one (tests/wire.py): it accepts one connection, reads
CONNECT, answers CONNACK (or, for the handshake cases, something else), then sends what the case
says and keeps the socket open. Keeping it open matters: a client that only noticed the end of
the stream would pass for the wrong reason, so the messages are checked for the parse error
itself.

Witnesses: the exception's class and text, the time it took, the process's resident set size
(/proc/self/status) sampled while the broker sends, and stderr (a Rust panic prints
"panicked at" there even when tokio swallows it).

The same scripted broker also checks packet-id handling that a real broker rarely exercises:
incoming QoS 2 with any id, and a publish parked on an id collision (issue 5's batching).

Each case runs under MQTT 3.1.1 and MQTT 5 (the mqtt_version fixture: the broker answers with that
version's CONNACK and sends that version's packets), but for the few whose bytes mean something
else under MQTT 5 (say why where they are). An AUTH packet (MQTT 5 enhanced authentication, not
supported) ends the connection with an error that says so.
"""

from __future__ import annotations

import asyncio
import logging
import random
import re
import struct
import threading
import time
from typing import Callable

import pytest
import umqtt
import umqtt.aio
import umqtt.simple
import wire
from broker import Bounded, rss_bytes, unique_id, wait_until
from wire import (
    CONNACK_ACCEPTED,
    PUBACK,
    PUBCOMP,
    PUBLISH,
    PUBREC,
    PUBREL,
    SUBACK,
    ScriptedBroker,
    ack,
    connack_accepted,
    packet,
    parse_publish,
    publish,
    publish_at,
    remaining_length,
)

MiB = 1024 * 1024
DETECTION_SECONDS = 5.0  # how long a client may take to notice a bad packet
RSS_ALLOWANCE = 8 * MiB  # what the process may grow while a broker pushes 10+ MB at it


class PeakRss:
    """This process's resident set size when made, and the highest of the samples since."""

    def __init__(self) -> None:
        self.before = self.peak = rss_bytes()

    def sample(self) -> None:
        self.peak = max(self.peak, rss_bytes())

    @property
    def grown(self) -> int:
        return self.peak - self.before


def no_panic(capfd: pytest.CaptureFixture[str]) -> None:
    out, err = capfd.readouterr()
    assert "panicked" not in err, f"a Rust panic was printed:\n{err[-3000:]}"
    assert "panicked" not in out, f"a Rust panic was printed:\n{out[-3000:]}"


def connect(b: ScriptedBroker, **kw: object) -> umqtt.MQTTClient:
    c = umqtt.MQTTClient(unique_id("victim"), b.host, b.port, reconn=False, keepalive=60, **kw)
    c.set_callback(lambda t, m: None)
    assert c.connect() == 0
    return c


def wait_for_loss(c: umqtt.MQTTClient, sample: Callable[[], None] | None = None) -> BaseException:
    """Run wait_msg() until it raises; return what it raised (fail if it hangs or returns)."""
    call = Bounded(c.wait_msg, "wait_msg")
    deadline = time.monotonic() + DETECTION_SECONDS
    while not call.done and time.monotonic() < deadline:
        if sample:
            sample()
        time.sleep(0.01)
    call.thread.join(0.5)
    if not call.done:
        c.close()
        pytest.fail(f"wait_msg() still blocked {DETECTION_SECONDS} s after the hostile packet")
    if call.error is None:
        pytest.fail(f"wait_msg() returned {call.result!r} instead of raising")
    return call.error


def assert_clear_loss(exc: BaseException, b: ScriptedBroker, reason: str) -> None:
    assert isinstance(exc, Exception), f"not an Exception: {type(exc).__module__}.{exc!r}"
    assert isinstance(exc, umqtt.MQTTConnectionLost), f"expected MQTTConnectionLost, got {exc!r}"
    assert isinstance(exc, OSError), exc
    text = str(exc)
    assert f"{b.host}:{b.port}" in text, f"the message does not name the broker: {text!r}"
    assert re.search(reason, text, re.IGNORECASE), (
        f"the message does not say why ({reason}): {text!r}"
    )
    assert "closed by peer" not in text.lower(), (
        f"noticed the end of the stream, not the packet: {text!r}"
    )


# --------------------------------------------------------------------------- oversized


def announce_then_trickle(announced: int, total: int, header_pause: float = 0.05):
    """A PUBLISH that announces `announced` remaining bytes, its header sent a byte at a time,
    then up to `total` bytes of body trickled until the client hangs up."""

    def attack(b: ScriptedBroker) -> None:
        header = bytes([PUBLISH]) + remaining_length(announced)
        for byte in header:
            b.send(bytes([byte]))
            time.sleep(header_pause)
        b.flood(b"\xa5" * 64 * 1024, total, pause=0.001)

    return attack


@pytest.mark.parametrize(
    ("limit", "announced"),
    [
        pytest.param(1024, 10 * MiB, id="10MiB-over-1KiB-limit"),
        pytest.param(64 * 1024, 64 * 1024 + 1, id="one-byte-over-64KiB-limit"),
        pytest.param(None, 268_435_455, id="256MiB-over-default-limit"),
    ],
)
def test_oversized_publish_closes_the_connection_without_growing(
    scripted_broker, capfd, limit, announced, mqtt_version
):
    """A PUBLISH larger than max_packet_size is refused from its header: the connection closes
    with a clear error while the broker is still sending, and the process does not take in the
    10+ MB the broker pushes."""
    b = scripted_broker(
        announce_then_trickle(announced, total=max(12 * MiB, 0)),
        handshake=connack_accepted(mqtt_version),
    )
    kw = {} if limit is None else {"max_packet_size": limit}
    c = connect(b, version=mqtt_version, **kw)
    memory = PeakRss()
    started = time.monotonic()
    exc = wait_for_loss(c, memory.sample)
    took = time.monotonic() - started
    memory.sample()
    assert_clear_loss(exc, b, r"size|large|limit|exceed")
    assert took < DETECTION_SECONDS, took
    assert memory.grown < RSS_ALLOWANCE, (
        f"RSS grew by {memory.grown / MiB:.1f} MiB while the broker sent {b.sent}"
    )
    assert c.get_mqttsta() in (-1, 2)
    no_panic(capfd)


def test_huge_packet_within_the_limit_is_read_but_never_more(scripted_broker, capfd, mqtt_version):
    """With max_packet_size=2 MiB, a broker announcing 2 MiB - 1 KiB and then sending 12 MB more
    gets one message delivered (the packet fits) and then the connection closed for the rest:
    the client holds one packet's worth, not the stream."""
    size = 2 * MiB - 1024
    body_len = size - 2 - len(b"big") - (1 if mqtt_version == 5 else 0)  # (no properties)

    def attack(b: ScriptedBroker) -> None:
        b.send(publish_at(mqtt_version, b"big", b"\x5a" * body_len))
        # then an oversized one, trickled
        announce_then_trickle(64 * MiB, total=12 * MiB, header_pause=0)(b)

    b = scripted_broker(attack, handshake=connack_accepted(mqtt_version))
    got: list[bytes] = []
    c = umqtt.MQTTClient(
        unique_id("victim"),
        b.host,
        b.port,
        reconn=False,
        max_packet_size=2 * MiB,
        version=mqtt_version,
    )
    c.set_callback(lambda t, m: got.append(m))
    c.connect()
    memory = PeakRss()
    Bounded(c.wait_msg, "first").join(DETECTION_SECONDS)
    assert [len(m) for m in got] == [body_len]
    got.clear()
    exc = wait_for_loss(c, memory.sample)
    assert_clear_loss(exc, b, r"size|large|limit|exceed")
    assert memory.grown < RSS_ALLOWANCE + 4 * MiB, f"RSS grew by {memory.grown / MiB:.1f} MiB"
    no_panic(capfd)


# --------------------------------------------------------------------------- malformed


def malformed(v4: bytes, v5: bytes | None, reason: str, name: str) -> object:
    """A case: the bad bytes under MQTT 3.1.1 and under MQTT 5 (None: they are not bad there)."""
    return pytest.param({4: v4, 5: v5}, reason, id=name)


MALFORMED = [
    malformed(b"\x00\x00", b"\x00\x00", r"packet type|invalid", "reserved-type-0"),
    # Type 15 is AUTH under MQTT 5: test_an_auth_packet_ends_the_connection_saying_so.
    malformed(b"\xf0\x00", None, r"packet type|invalid", "reserved-type-15"),
    malformed(*[b"\x30\xff\xff\xff\xff\x7f"] * 2, r"length|malformed", "remaining-length-5-bytes"),
    malformed(
        publish(b"\xff\xfeab", b"x"),
        wire.publish5(b"\xff\xfeab", b"x"),
        r"utf-?8",
        "publish-topic-invalid-utf8",
    ),
    malformed(
        publish(b"a/b", b"x", qos=3), wire.publish5(b"a/b", b"x", qos=3), r"qos", "publish-qos-3"
    ),
    malformed(
        *[packet(PUBLISH, b"\x00\x10ab")] * 2,
        r"boundary|malformed|length",
        "publish-topic-past-the-end",
    ),
    malformed(*[packet(PUBACK, b"\x00")] * 2, r"malformed|length", "puback-1-byte"),
    malformed(
        *[packet(PUBLISH | 2, b"\x00\x01a")] * 2, r"malformed", "publish-qos1-without-packet-id"
    ),
    # Under MQTT 5 these bytes lack the property length.
    malformed(*[packet(SUBACK, b"\x00\x01")] * 2, r"malformed", "suback-without-codes"),
    malformed(
        packet(SUBACK, b"\x00\x01\x07"),
        packet(SUBACK, b"\x00\x01\x00\x07"),
        r"suback|code|malformed|invalid",
        "suback-bad-code",
    ),
    malformed(
        CONNACK_ACCEPTED, wire.connack5(), r"packet|wrong|unexpected|invalid", "second-connack"
    ),
    malformed(*[wire.connect("x")] * 2, r"packet|wrong|invalid", "connect-from-broker"),
    malformed(*[ack(PUBACK, 7)] * 2, r"unsolicited|7", "unsolicited-puback"),
]


@pytest.mark.parametrize(("data", "reason"), MALFORMED)
def test_malformed_packet_closes_the_connection_clearly(
    scripted_broker, capfd, data, reason, mqtt_version
):
    """A malformed packet after CONNACK: wait_msg() raises MQTTConnectionLost (an OSError) naming
    the broker and the problem within a few seconds, with reconn=False; no panic."""
    if data[mqtt_version] is None:
        pytest.skip("these bytes are a valid packet of another kind under MQTT 5")
    b = scripted_broker(
        lambda b: b.send(data[mqtt_version]), handshake=connack_accepted(mqtt_version)
    )
    c = connect(b, version=mqtt_version)
    exc = wait_for_loss(c)
    assert_clear_loss(exc, b, reason)
    no_panic(capfd)


# AUTH (MQTT 5 2.1.2: packet type 15) with reason code 0x18, continue authentication, and none.
AUTH = [
    pytest.param(packet(0xF0, b"\x18\x00"), id="continue-authentication"),
    pytest.param(b"\xf0\x00", id="success-without-reason-code"),
]
AUTH_NOT_SUPPORTED = r"AUTH \(MQTT 5 enhanced authentication\), which umqtt does not support"


@pytest.mark.parametrize("auth", AUTH)
def test_an_auth_packet_ends_the_connection_saying_so(scripted_broker, capfd, auth):
    """Enhanced authentication is not supported: an AUTH from the broker after its CONNACK ends
    the connection with an error that says so (reconn=False: wait_msg() raises it at once)."""
    b = scripted_broker(lambda b: b.send(auth), handshake=wire.connack5())
    exc = wait_for_loss(connect(b, version=5))
    assert_clear_loss(exc, b, AUTH_NOT_SUPPORTED)
    no_panic(capfd)


@pytest.mark.parametrize("auth", AUTH)
@pytest.mark.parametrize("dialect", ["umqtt", "simple", "aio"])
def test_an_auth_packet_instead_of_connack_fails_connect_saying_so(
    scripted_broker, capfd, auth, dialect
):
    """An AUTH in answer to CONNECT (a broker that wants enhanced authentication) fails
    connect() at once, in each dialect's manner, with the reason."""
    b = scripted_broker(lambda b: None, handshake=auth)
    kw = {"version": 5, "connect_timeout": 10}
    if dialect == "umqtt":
        c = umqtt.MQTTClient(unique_id("victim"), b.host, b.port, reconn=False, **kw)
        connect_call = c.connect
    elif dialect == "simple":
        c = umqtt.simple.MQTTClient(unique_id("victim"), b.host, b.port, **kw)
        connect_call = c.connect
    else:
        c = umqtt.aio.MQTTClient(unique_id("victim"), b.host, b.port, **kw)

        def connect_call() -> None:
            asyncio.run(c.connect())

    started = time.monotonic()
    with pytest.raises(umqtt.MQTTException, match=AUTH_NOT_SUPPORTED) as info:
        Bounded(connect_call, "connect").join(12)
    assert time.monotonic() - started < DETECTION_SECONDS
    if dialect == "umqtt":
        assert isinstance(info.value, umqtt.MQTTConnectError), repr(info.value)
    no_panic(capfd)


def test_garbage_stream_closes_the_connection(scripted_broker, capfd, mqtt_version):
    """Random bytes (seeded) after CONNACK, up to 20 MB of them, keep coming: the client gives up
    within a few seconds, says why, and does not grow."""
    rng = random.Random(7)
    blob = rng.randbytes(256 * 1024)

    b = scripted_broker(lambda b: b.flood(blob, 20 * MiB), handshake=connack_accepted(mqtt_version))
    c = connect(b, version=mqtt_version)
    memory = PeakRss()
    exc = wait_for_loss(c, memory.sample)
    assert_clear_loss(exc, b, r"\w")
    assert memory.grown < RSS_ALLOWANCE + 16 * MiB, "the client buffered the garbage stream"
    no_panic(capfd)


def test_every_packet_type_with_short_bodies_never_panics(scripted_broker, capfd, mqtt_version):
    """Every first byte (all 16 types, all flag values seen in practice) with bodies of 0..5
    random bytes: the client either keeps the link or reports it lost, never panics or hangs."""
    rng = random.Random(11)
    cases = [
        (first, rng.randbytes(n))
        for first in sorted({t << 4 | f for t in range(16) for f in (0, 2, 6, 15)})
        for n in (0, 1, 2, 3, 5)
    ]
    rng.shuffle(cases)
    outcomes: dict[str, int] = {}
    for first, body in cases[:120]:
        data = packet(first, body)
        b = scripted_broker(
            lambda b, data=data: b.send(data), handshake=connack_accepted(mqtt_version)
        )
        c = connect(b, connect_timeout=5, version=mqtt_version)
        call = Bounded(lambda c=c: c._core.deliver(lambda t, m: None, 0.5), "deliver")
        call.thread.join(5)
        assert call.done, f"deliver() hung after {packet(first, body).hex()}"
        err = call.error
        if err is not None:
            assert isinstance(err, Exception), f"{packet(first, body).hex()}: {err!r}"
            assert isinstance(err, umqtt.MQTTConnectionLost), (
                f"{packet(first, body).hex()}: {err!r}"
            )
        outcomes[type(err).__name__] = outcomes.get(type(err).__name__, 0) + 1
        c.close()
        b.close()
    no_panic(capfd)
    assert outcomes.get("MQTTConnectionLost", 0) > 0, outcomes


# --------------------------------------------------------------------------- during the handshake


HANDSHAKE = [
    pytest.param(
        b"HTTP/1.1 400 Bad Request\r\nContent-Length: 200\r\n\r\n" + b"x" * 200, id="http-answer"
    ),
    pytest.param(b"\x20\x02\x00\x09", id="connack-code-9"),
    pytest.param(b"\x20\x01\x00", id="connack-too-short"),
    pytest.param(
        bytes([PUBLISH]) + remaining_length(200 * MiB) + b"\x00" * 4096,
        id="oversized-instead-of-connack",
    ),
    pytest.param(b"\x00\x00" * 8, id="reserved-type-instead-of-connack"),
]


@pytest.mark.parametrize("answer", HANDSHAKE)
@pytest.mark.parametrize("dialect", ["umqtt", "simple"])
def test_bad_answer_to_connect_fails_connect_clearly(
    scripted_broker, capfd, answer, dialect, mqtt_version
):
    """Anything but a proper CONNACK makes connect() raise at once (MQTTConnectError in the
    QuecPython dialect, OSError or MQTTException in umqtt.simple) naming the broker."""
    b = scripted_broker(lambda b: None, handshake=answer)
    if dialect == "umqtt":
        c = umqtt.MQTTClient(
            unique_id("victim"),
            b.host,
            b.port,
            reconn=False,
            connect_timeout=10,
            version=mqtt_version,
        )
    else:
        c = umqtt.simple.MQTTClient(
            unique_id("victim"), b.host, b.port, connect_timeout=10, version=mqtt_version
        )
    started = time.monotonic()
    with pytest.raises(Exception) as info:
        Bounded(c.connect, "connect").join(12)
    took = time.monotonic() - started
    exc = info.value
    assert isinstance(exc, umqtt.MQTTException), repr(exc)
    if dialect == "umqtt":
        assert isinstance(exc, umqtt.MQTTConnectError), repr(exc)
        assert f"{b.host}:{b.port}" in str(exc), str(exc)
    assert took < DETECTION_SECONDS, f"connect() took {took:.1f} s to give up: {exc!r}"
    assert "timed out" not in str(exc), f"noticed by the timeout, not the answer: {exc}"
    no_panic(capfd)


# --------------------------------------------------------------------------- floods


def test_flood_of_valid_messages_nobody_reads_stays_bounded(scripted_broker, capfd, mqtt_version):
    """A broker that pushes 200 MiB of valid 1 KiB QoS 0 messages at a client whose application
    does not read them: the process must not take them all in (stop reading the socket, so TCP
    pushes back on the broker, or drop them with a warning), i.e. it grows by far less than what
    was sent. Under MQTT 3.1.1 and MQTT 5."""
    flood = publish_at(mqtt_version, b"flood", b"\x00" * 1024) * 64
    b = scripted_broker(
        lambda b: b.flood(flood, 200 * MiB), handshake=connack_accepted(mqtt_version)
    )
    c = connect(b, version=mqtt_version)
    memory = PeakRss()
    started = time.monotonic()
    deadline = started + 10
    sent, moved = b.sent, started
    # until the broker has sent it all, or is held back (nothing sent for a second: back-pressure)
    while not b.done.is_set() and time.monotonic() < deadline:
        memory.sample()
        if b.sent != sent:
            sent, moved = b.sent, time.monotonic()
        elif time.monotonic() - moved > 1.0 and time.monotonic() - started > 2.0:
            break
        time.sleep(0.05)
    memory.sample()
    pending = c._core.pending_messages()
    c.close()
    assert pending > 0, "no message came in: nothing was held back"
    assert memory.grown < 64 * MiB, (
        f"RSS grew by {memory.grown / MiB:.0f} MiB while the broker sent {b.sent / MiB:.0f} MiB "
        f"({pending} messages queued, unread)"
    )
    no_panic(capfd)


# --------------------------------------------------------------------------- state after a loss


def test_failed_call_and_state_agree_at_once(scripted_broker, mqtt_version):
    """A broker that hangs up when it gets a PUBLISH: publish() returns False (QuecPython dialect,
    reconn=False) and get_mqttsta() already says the link is gone when publish() returns, every
    time (a script's `if not publish(): if get_mqttsta() != 0: ...` must not see 0)."""

    def hang_up_on_publish(b: ScriptedBroker) -> None:
        b.read()  # the PUBLISH
        b.hang_up()

    seen: dict[tuple[bool, int], int] = {}
    for _ in range(40):
        b = scripted_broker(hang_up_on_publish, handshake=connack_accepted(mqtt_version))
        c = connect(b, version=mqtt_version)
        result = Bounded(lambda c=c: c.publish("t", b"x", qos=1), "publish").join(10)
        state = c.get_mqttsta()
        seen[(result, state)] = seen.get((result, state), 0) + 1
        c.close()
        b.close()
    assert all(result is False and state != 0 for result, state in seen), (
        f"(publish() result, get_mqttsta() right after) -> count: {seen}"
    )


# --------------------------------------------------------------------------- packet ids


def pump(c: umqtt.MQTTClient, b: ScriptedBroker, seconds: float = DETECTION_SECONDS) -> None:
    """Deliver messages until the scripted broker is done."""
    deadline = time.monotonic() + seconds
    while not b.done.is_set() and time.monotonic() < deadline:
        c.check_msg()
        time.sleep(0.005)
    assert b.done.is_set(), "the broker's script did not finish"
    assert b.error is None, f"the broker's script failed: {b.error!r}"


@pytest.mark.parametrize("pkid", [1, 40_000, 65_535])
def test_incoming_qos2_with_any_packet_id_completes(scripted_broker, capfd, pkid, mqtt_version):
    """QoS 2 in: PUBLISH -> PUBREC (after the callback) -> PUBREL -> PUBCOMP, for any packet id
    (the vendored rumqttc grows its table of incoming QoS 2 ids on demand)."""
    acks: list[tuple[str, int]] = []

    def script(b: ScriptedBroker) -> None:
        b.send(publish_at(mqtt_version, b"q2", b"exactly once", qos=2, pkid=pkid))
        # (an MQTT 5 acknowledgement may go on with a reason code and properties)
        acks.append(("PUBREC", struct.unpack("!H", b.expect(PUBREC)[:2])[0]))
        b.send(ack(PUBREL, pkid))
        acks.append(("PUBCOMP", struct.unpack("!H", b.expect(PUBCOMP)[:2])[0]))

    b = scripted_broker(script, handshake=connack_accepted(mqtt_version))
    c = connect(b, version=mqtt_version)
    got: list[tuple[bytes, bytes]] = []
    c.set_callback(lambda t, m: got.append((t, m)))
    pump(c, b)
    assert got == [(b"q2", b"exactly once")]
    assert acks == [("PUBREC", pkid), ("PUBCOMP", pkid)]
    c.disconnect()
    no_panic(capfd)


def test_publish_parked_on_a_packet_id_collision_gets_its_own_ack(
    scripted_broker, capfd, caplog, mqtt_version
):
    """A broker that holds back the PUBACK of id 1 while it acknowledges the rest: B's 100th
    publish wants id 1 again (rumqttc cycles ids 1..100) and is parked until that ack; the
    publishes queued behind it (threads C*, started once rumqttc logged the collision) go out in
    one batch once it is released. Each publish() must return True on its own PUBACK, and none
    may time out.

    Which thread returns first is a race (the thread that holds the core may finish before the
    one it woke), so the order is checked on the wire, as the broker saw it: A's PUBACK (id 1)
    went out before B's parked publish (id 1 again) came in, and every publish was answered by
    exactly one PUBACK."""
    seen: list[tuple[int, bytes]] = []
    wire: list[tuple[str, int, bytes]] = []  # ("PUBLISH" | "PUBACK", packet id, payload), in order
    wire_lock = threading.Lock()
    caplog.set_level(logging.INFO, logger="umqtt.rumqttc")
    # The core's log bridge reads the levels again once a second (and at connect): rumqttc's INFO
    # record of the collision reaches caplog if it comes a second from now or later.
    levels_seen_at = time.monotonic() + 1.0

    def puback(b: ScriptedBroker, pkid: int, payload: bytes) -> None:
        # Logged before it is sent: the client cannot answer a PUBACK it has not received yet.
        with wire_lock:
            wire.append(("PUBACK", pkid, payload))
            b.send(ack(PUBACK, pkid))

    def collision_logged() -> bool:
        return any("Collision on packet id = 1" in r.getMessage() for r in list(caplog.records))

    def script(b: ScriptedBroker) -> None:
        while len(seen) < 1 + 100 + 20:
            _, pkid, payload = parse_publish(*b.read(), version=mqtt_version)
            assert pkid is not None, "a QoS 1 PUBLISH without a packet id"
            seen.append((pkid, payload))
            with wire_lock:
                wire.append(("PUBLISH", pkid, payload))
            if len(seen) > 1:  # A's, the first, waits for the test to release it
                puback(b, pkid, payload)

    b = scripted_broker(script, handshake=connack_accepted(mqtt_version))
    c = connect(b, ack_timeout=8, version=mqtt_version)
    results: dict[str, list[bool]] = {}

    def publisher(name: str, count: int) -> None:
        results[name] = [c.publish("t", f"{name}{i}", qos=1) for i in range(count)]

    def start(name: str, count: int) -> threading.Thread:
        t = threading.Thread(target=publisher, args=(name, count))
        t.start()
        return t

    threads = [start("A", 1)]
    assert wait_until(lambda: seen, 10), "A's publish never reached the broker"
    time.sleep(max(0.0, levels_seen_at - time.monotonic()))
    threads.append(start("B", 100))
    assert wait_until(collision_logged, 30), f"no collision logged; the broker saw {len(seen)}"
    assert len(seen) == 100, "B's last publish was sent although id 1 is still in flight"
    threads += [start(f"C{k}", 5) for k in range(4)]
    puback(b, 1, b"A0")  # the release
    for t in threads:
        t.join(20)
    assert b.done.wait(5) and b.error is None, b.error
    assert sorted(results) == ["A", "B", "C0", "C1", "C2", "C3"], results
    assert all(all(r) for r in results.values()), results
    assert seen[0] == (1, b"A0")
    assert seen[100] == (1, b"B99"), "the parked publish was not the first sent after the release"
    assert len({p for _, p in seen}) == len(seen) == 121, "a publish was sent twice or lost"
    # On the wire: A's PUBACK before B99 was sent, and B99's own PUBACK after it.
    a_ack = wire.index(("PUBACK", 1, b"A0"))
    b99 = wire.index(("PUBLISH", 1, b"B99"))
    assert a_ack < b99 < wire.index(("PUBACK", 1, b"B99")), wire[a_ack - 2 : b99 + 3]
    published = [(pkid, p) for kind, pkid, p in wire if kind == "PUBLISH"]
    acked = [(pkid, p) for kind, pkid, p in wire if kind == "PUBACK"]
    assert sorted(acked) == sorted(published), "a publish was not acknowledged exactly once"
    c.disconnect()
    no_panic(capfd)

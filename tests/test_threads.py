"""Threads, callbacks that publish, and Ctrl-C: the "every dialect" concurrency promises."""

from __future__ import annotations

import socket
import textwrap
import threading
import time

import pytest
from broker import Bounded, assert_ctrl_c_interrupts, bounded, unique_id, wait_until

PUBLISHERS = 4
PER_PUBLISHER = 25

# A child process that blocks in one umqtt call and reports when KeyboardInterrupt arrives.
CTRL_C_SCRIPT = textwrap.dedent(
    """
    import sys, time, umqtt
    mode, host, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
    c = umqtt.MQTTClient(sys.argv[4], host, port, connect_timeout=60)
    if mode == "wait_msg":
        c.set_callback(lambda t, m: None)
        c.connect()
        c.subscribe("umqtt-test/ctrl-c/" + sys.argv[4])
        call = c.wait_msg
    else:
        call = c.connect
    print("ready", flush=True)
    try:
        call()
    except KeyboardInterrupt:
        print("interrupted", time.monotonic(), flush=True)
        sys.exit(0)
    print("returned", flush=True)
    sys.exit(3)
    """
)


def test_reader_thread_with_four_publishers(client, inbox, peer, topic):
    """wait_msg() on a reader thread while 4 threads publish QoS 0/1/2: all True, all arrive."""
    assert client.subscribe(f"{topic}/#", 2) is True
    peer.subscribe(f"{topic}/#")
    expected = {
        (f"{topic}/{p}".encode(), b"%d-%d" % (p, n))
        for p in range(PUBLISHERS)
        for n in range(PER_PUBLISHER)
    }

    def read_all() -> None:
        while len(inbox.items) < len(expected):
            client.ping()  # the device pattern: ping(); wait_msg()
            client.wait_msg()

    def publish_all(p: int) -> list:
        t = f"{topic}/{p}"
        return [client.publish(t, b"%d-%d" % (p, n), qos=p % 3) for n in range(PER_PUBLISHER)]

    reader = Bounded(read_all, "reader")
    publishers = [Bounded(lambda p=p: publish_all(p), f"publisher-{p}") for p in range(PUBLISHERS)]
    for publisher in publishers:
        assert publisher.join(30) == [True] * PER_PUBLISHER
    reader.join(30)
    assert {(d.topic, d.msg) for d in inbox.items} == expected
    assert len(inbox.items) == len(expected)
    assert {d.thread for d in inbox.items} == {reader.thread.ident}
    assert wait_until(lambda: len(peer.received()) >= len(expected), 5)  # the peer saw them too
    assert {(m.topic.encode(), m.payload) for m in peer.received()} == expected


@pytest.mark.parametrize("qos", [0, 1, 2])
def test_publish_from_callback(client, peer, topic, qos):
    """A callback may publish() at any QoS: no deadlock, returns True, the message arrives."""
    echo = f"{topic}/echo"
    results = []
    client.set_callback(lambda t, m: results.append(client.publish(echo, b"echo:" + m, qos=qos)))
    assert client.subscribe(topic, 1) is True
    peer.subscribe(echo)
    peer.publish(topic, b"ping")
    bounded(client.wait_msg, 15)
    assert results == [True]
    assert [m.payload for m in peer.wait_for(echo)] == [b"echo:ping"]


def test_blocked_wait_msg_lets_other_threads_run(client, topic):
    """While wait_msg() blocks, other Python threads keep running (the GIL is released)."""
    assert client.subscribe(topic, 1) is True
    waiter = Bounded(client.wait_msg, "wait_msg")
    time.sleep(0.1)
    count = 0
    deadline = time.monotonic() + 0.5
    while time.monotonic() < deadline:
        count += 1
    assert not waiter.done
    assert count > 10_000, f"main thread starved: {count} iterations in 0.5 s"
    assert client.publish(topic, b"release", qos=1) is True
    waiter.join(5)


@pytest.fixture
def silent_server():
    """A TCP port that accepts connections and never says a word."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(5)
        yield s.getsockname()[1]


@pytest.mark.parametrize("call", ["wait_msg", "connect"])
def test_ctrl_c_interrupts_blocking_call(broker, silent_server, call):
    """SIGINT to a process blocked in wait_msg()/connect() raises KeyboardInterrupt within 1 s."""
    port = broker.port if call == "wait_msg" else silent_server
    assert_ctrl_c_interrupts(CTRL_C_SCRIPT, call, broker.host, str(port), unique_id("ctrl-c"))


def test_concurrent_check_msg_and_publish(client, inbox, topic):
    """check_msg() polled on one thread while another publishes: every message is delivered once."""
    assert client.subscribe(topic, 1) is True
    stop = threading.Event()

    def poll() -> None:
        while not stop.is_set():
            client.check_msg()
            time.sleep(0.001)

    poller = Bounded(poll, "poller")
    try:
        sent = [b"%d" % i for i in range(50)]
        assert all(client.publish(topic, m, qos=1) for m in sent)
        wait_until(lambda: len(inbox.payloads(topic)) >= len(sent), 5)
    finally:
        stop.set()
        poller.join(5)
    assert sorted(inbox.payloads(topic), key=int) == sent

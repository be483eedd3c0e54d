"""Threads, callbacks that publish, and Ctrl-C: the "every dialect" concurrency promises."""

from __future__ import annotations

import logging
import socket
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from broker import Bounded, assert_ctrl_c_interrupts, bounded, unique_id, wait_until

PUBLISHERS = 4
PER_PUBLISHER = 25

# A child process that blocks in one umqtt call and reports when KeyboardInterrupt arrives.
CTRL_C_SCRIPT = textwrap.dedent(
    """
    import sys, time, umqtt
    mode, host, port, version = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[5])
    c = umqtt.MQTTClient(sys.argv[4], host, port, connect_timeout=60, version=version)
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


@pytest.mark.parametrize("client", [4, 5], indirect=True, ids=["v4", "v5"])
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


@pytest.mark.parametrize("client", [4, 5], indirect=True, ids=["v4", "v5"])
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
def test_ctrl_c_interrupts_blocking_call(broker, silent_server, call, mqtt_version):
    """SIGINT to a process blocked in wait_msg()/connect() raises KeyboardInterrupt within 1 s,
    under MQTT 3.1.1 and MQTT 5."""
    port = broker.port if call == "wait_msg" else silent_server
    assert_ctrl_c_interrupts(
        CTRL_C_SCRIPT, call, broker.host, str(port), unique_id("ctrl-c"), str(mqtt_version)
    )


@pytest.mark.parametrize("client", [4, 5], indirect=True, ids=["v4", "v5"])
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


# --------------------------------------------------------------------------- who drives the I/O
# A thread blocked in a call drives every connection itself; when no call is in progress a
# background thread does (docs/design.md, "Who runs the I/O"). These tests pin down the
# hand-over in both directions.


def test_background_takes_over_after_a_blocking_call(client, inbox, peer, topic):
    """After a blocking call returns, messages keep being read while the thread does other
    things: they reach the client's queue with no umqtt call on any thread, and check_msg()
    (which never waits) finds them."""
    assert client.subscribe(topic, 1) is True
    assert client.publish(f"{topic}/other", b"x", qos=1) is True  # the caller had the I/O
    for n in range(3):
        peer.publish(topic, b"%d" % n)
    # pending_messages() only counts the queue: no I/O, no umqtt call
    assert wait_until(lambda: client._core.pending_messages() == 3, 10)
    client.check_msg()
    assert inbox.payloads(topic) == [b"0", b"1", b"2"]


def test_qos0_publish_right_after_a_blocking_call_is_sent_without_another_call(client, peer, topic):
    """Right after a blocking call returns, nobody holds the I/O for a moment; a QoS 0 publish
    then is queued inside the runtime without waking anyone. The background thread sends it
    when it takes over: the thread need not make another call (or wait) for it to go out."""
    peer.subscribe(topic)
    for n in range(1, 6):
        assert client.publish(f"{topic}/other", b"x", qos=1) is True  # the caller had the I/O
        assert client.publish(topic, b"%d" % n, qos=0) is True
        assert len(peer.wait_for(topic, n, timeout=1)) == n, f"message {n} was not sent"


def test_thread_waiting_for_messages_carries_other_clients(make_client, inbox, topic):
    """A thread parked in wait_msg() drives the I/O of other clients: another thread's QoS 1/2
    publishes on a second client all complete and all arrive."""
    reader = make_client()
    reader.set_callback(inbox.callback)
    assert reader.connect() == 0
    assert reader.subscribe(f"{topic}/#", 2) is True
    writer = make_client()
    assert writer.connect() == 0
    sent = [b"%d" % n for n in range(60)]

    def read_all() -> None:
        while len(inbox.items) < len(sent):
            reader.wait_msg()

    waiter = Bounded(read_all, "reader")
    time.sleep(0.1)  # the reader is parked in wait_msg()
    assert [writer.publish(f"{topic}/{m.decode()}", m, qos=1 + int(m) % 2) for m in sent] == [
        True
    ] * len(sent)
    waiter.join(15)
    assert sorted(inbox.payloads(), key=int) == sent


def test_asyncio_runs_while_a_thread_waits_for_messages(client, inbox, broker, topic):
    """An asyncio client round-trips QoS 1 messages while another thread is blocked in
    wait_msg() (its futures are completed by whichever thread runs the I/O)."""
    import asyncio

    import umqtt.aio

    assert client.subscribe(f"{topic}/release", 1) is True
    waiter = Bounded(client.wait_msg, "wait_msg")
    time.sleep(0.1)

    async def round_trips() -> list[bytes]:
        async with umqtt.aio.MQTTClient(unique_id("aio"), broker.host, port=broker.port) as aio:
            await aio.subscribe(f"{topic}/aio", 1)
            got = []
            messages = aio.messages()
            for n in range(20):
                await aio.publish(f"{topic}/aio", b"%d" % n, qos=1)
                got.append((await asyncio.wait_for(messages.__anext__(), 5)).payload)
            await messages.aclose()
            return got

    assert asyncio.run(asyncio.wait_for(round_trips(), 20)) == [b"%d" % n for n in range(20)]
    assert not waiter.done
    assert client.publish(f"{topic}/release", b"go", qos=1) is True
    waiter.join(5)
    assert inbox.payloads(f"{topic}/release") == [b"go"]


EXIT_WHILE_WAITING_SCRIPT = textwrap.dedent(
    """
    import sys, threading, umqtt
    host, port, name = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    c = umqtt.MQTTClient(name, host, port)
    c.set_callback(lambda t, m: None)
    c.connect()
    c.subscribe("umqtt-test/exit/" + name)
    threading.Thread(target=c.wait_msg, daemon=True).start()
    threading.Event().wait(0.2)
    print("exiting", flush=True)
    """
)


def test_interpreter_exits_while_a_daemon_thread_waits(broker):
    """A daemon thread blocked in wait_msg() (driving the I/O) does not hold up exit."""
    import subprocess

    done = subprocess.run(
        [
            sys.executable,
            "-c",
            EXIT_WHILE_WAITING_SCRIPT,
            broker.host,
            str(broker.port),
            unique_id("exit"),
        ],
        capture_output=True,
        text=True,
        timeout=20,
    )
    assert (done.returncode, done.stdout.strip()) == (0, "exiting"), done.stderr


# --------------------------------------------------------------------------- logging on the caller
# A blocked call runs the I/O on its own thread, so Rust-side records may be logged there, inside
# the call (docs/design.md, "Threads and logging").


class RaisingHandler(logging.Handler):
    """Raises `error` from emit() for the first record whose message contains `marker`, logged on
    the main thread (a Ctrl-C lands there) or off it."""

    def __init__(self, error: type[BaseException], marker: str, on_main: bool) -> None:
        super().__init__(logging.DEBUG)
        self.error = error
        self.marker = marker
        self.on_main = on_main
        self.raised = 0

    def emit(self, record: logging.LogRecord) -> None:
        on_main = threading.current_thread() is threading.main_thread()
        if not self.raised and on_main == self.on_main and self.marker in record.getMessage():
            self.raised += 1
            raise self.error("raised by a logging handler")


@pytest.fixture
def raising_handler(request: pytest.FixtureRequest) -> Iterator[RaisingHandler]:
    """RaisingHandler(*request.param) on umqtt's packet logger, which logs every SUBSCRIBE at
    DEBUG."""
    error, on_main = request.param
    logger = logging.getLogger("umqtt.packets")
    handler = RaisingHandler(error, "Sending SUBSCRIBE", on_main)
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


def subscribe_until_raised(client: Any, topic: str, handler: RaisingHandler) -> None:
    """Subscribes until `handler` raised (the level cache is refreshed at most once a second, and
    the record may be logged on the thread that runs the I/O at the time, this one or another)."""
    deadline = time.monotonic() + 10
    while not handler.raised and time.monotonic() < deadline:
        assert client.subscribe(topic, 1) is True
    assert handler.raised == 1
    time.sleep(0.2)  # a re-armed KeyboardInterrupt is raised here at the latest


@pytest.mark.parametrize("raising_handler", [(KeyboardInterrupt, True)], indirect=True)
def test_ctrl_c_raised_in_a_log_handler_reaches_the_main_thread(client, topic, raising_handler):
    """KeyboardInterrupt from a handler on the main thread (a Ctrl-C that landed in it) is raised
    again, not lost, and does not leave the call with a pending exception (SystemError)."""
    with pytest.raises(KeyboardInterrupt):
        subscribe_until_raised(client, topic, raising_handler)
    assert client.subscribe(topic, 1) is True


@pytest.mark.parametrize(
    "raising_handler",
    [(ValueError, True), (ValueError, False), (KeyboardInterrupt, False)],
    indirect=True,
    ids=["ValueError-main", "ValueError-other", "KeyboardInterrupt-other"],
)
def test_other_errors_raised_in_a_log_handler_are_unraisable(
    client, topic, raising_handler, monkeypatch
):
    """Any other exception from a handler, and KeyboardInterrupt off the main thread (raised by
    the handler itself, not by Ctrl-C), goes to sys.unraisablehook; the calls succeed."""
    unraisable: list[Any] = []
    monkeypatch.setattr(sys, "unraisablehook", unraisable.append)
    if raising_handler.on_main:
        subscribe_until_raised(client, topic, raising_handler)
    else:
        Bounded(lambda: subscribe_until_raised(client, topic, raising_handler), "sub").join(15)
    assert [type(u.exc_value) for u in unraisable] == [raising_handler.error]
    assert client.subscribe(topic, 1) is True

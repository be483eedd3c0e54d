"""The outbox on disk under real faults (issue 24): nothing a publisher was told was stored is
lost, whatever dies when.

- the broker down for a whole burst (stopped, then started again);
- the publishing process killed with SIGKILL mid-burst, then a new process on the same file;
- the broker restarted mid-stream (gracefully, with persistence, so that nothing it acknowledged
  is lost on its side: see the mosquitto testing notes);
- the lock between two processes, and its end with a process killed with SIGKILL;
- a disk that is full (a file size limit, RLIMIT_FSIZE, in the publishing process);
- QoS 2 across a kill -9 and a restart on the session the broker kept: exactly once.

The kills run under MQTT 3.1.1 and MQTT 5 (`version=5`: each message with its properties, which
the outbox stores and sends again with it). The witness is an independent paho subscriber with a
persistent session (clean_session=False; under MQTT 5 a paho MQTT 5 subscriber, which sees the
properties) that records every message it gets, duplicates included. "In order" means: the first
copies of the messages arrive in the order they were published (a message sent again after a
failure may come twice, later than the first time).
"""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import umqtt
from broker import Bounded, Mosquitto, unique_id, wait_until
from conftest import Peer
from test_reliability import FAST, DurablePeer, TunedMosquitto

COUNT = 3000

# How the publisher connects: not at all, on a clean session, on a session the broker keeps.
OFFLINE, CLEAN, KEPT = 0, 1, 2

# Publishes `count` numbered messages through an outbox, printing each number once publish()
# returned (the message is stored), then waits to be killed. `size_limit`: RLIMIT_FSIZE, and
# messages of 1 kB. `version` 5: MQTT 5, each message with `properties(n)` (PROPERTIES below).
PUBLISHER = textwrap.dedent(
    """
    import resource, signal, sys, time
    import umqtt.simple
    host, port, path, client_id, topic = sys.argv[1:6]
    qos, count, connect, size_limit, version = (int(a) for a in sys.argv[6:11])
    exec(sys.argv[11])  # PROPERTIES
    if size_limit:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (size_limit, size_limit))
    c = umqtt.simple.MQTTClient(
        client_id, host, int(port), persistence=path, keepalive=30, version=version
    )
    if connect:
        c.connect(clean_session=connect == 1)
    padding = b"." * (1000 if size_limit else 0)
    for n in range(count):
        extra = {"properties": properties(n)} if version == 5 else {}
        try:
            c.publish(topic, b"%05d" % n + padding, qos=qos, **extra)
        except umqtt.MQTTOutboxError as e:
            print("refused:", e, flush=True)
            break
        print(n, flush=True)
    print("done", flush=True)
    time.sleep(120)
    """
)


# The MQTT 5 properties of message n: what the witness must see with each copy of it.
PROPERTIES = textwrap.dedent(
    """
    def properties(n):
        return {
            "user_properties": [("n", str(n)), ("trace", "t-%d" % n), ("n", "again")],
            "message_expiry_interval": 3600,
            "content_type": "text/x-number",
        }
    """
)
namespace: dict[str, Any] = {}
exec(PROPERTIES, namespace)
properties = namespace["properties"]


class Publisher:
    """PUBLISHER in a process of its own; `told` is what it reported stored."""

    def __init__(self, *args: Any, version: int = 4) -> None:
        self.told: list[int] = []
        self.lines: list[str] = []
        self.proc = subprocess.Popen(
            [sys.executable, "-c", PUBLISHER, *map(str, args), str(version), PROPERTIES],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            line = line.strip()
            self.lines.append(line)
            if line.isdigit():
                self.told.append(int(line))

    def wait_told(self, count: int, timeout: float = 30) -> None:
        reached = wait_until(lambda: len(self.told) >= count or "done" in self.lines, timeout)
        assert reached, f"{len(self.told)} told; {self.lines[-3:]}; {self.stderr()}"

    def stderr(self) -> str:
        if self.proc.poll() is None:
            return ""
        assert self.proc.stderr is not None
        return self.proc.stderr.read()

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)
        self._reader.join(10)


@pytest.fixture
def durable_broker(tmp_path: Path) -> Iterator[TunedMosquitto]:
    """A broker of this test's own; a graceful restart keeps its sessions and queued messages."""
    made = TunedMosquitto(tmp_path, persistent=True)
    yield made
    made.kill()


@pytest.fixture
def publishers() -> Iterator[list[Publisher]]:
    made: list[Publisher] = []
    yield made
    for publisher in made:
        if publisher.proc.poll() is None:
            publisher.kill()


def numbers(peer: Peer) -> list[int]:
    return [int(m.payload[:5]) for m in peer.received()]


def witness(make_peer: Any, broker: Mosquitto, topic: str, version: int, qos: int = 1) -> Peer:
    """The subscriber that records what arrives: MQTT 5's sees the properties."""
    if version == 4:
        return make_peer(broker, kind=DurablePeer, topic=topic, qos=qos)
    peer = make_peer(broker, clean_session=False, mqtt5=True)
    peer.subscribe(topic, qos)
    return peer


def assert_properties_kept(peer: Peer, version: int) -> None:
    """Under MQTT 5 every copy of every message arrived with its properties (the broker counts
    the message expiry down)."""
    if version == 4:
        return
    for message in peer.received():
        n = int(message.payload[:5])
        expected = properties(n)
        got = message.properties
        assert got.get("user_properties") == expected["user_properties"], (n, got)
        assert got.get("content_type") == expected["content_type"], (n, got)
        assert 0 < got.get("message_expiry_interval", 0) <= 3600, (n, got)


def assert_all_in_order(received: list[int], expected: list[int]) -> None:
    """Every expected number arrived, and their first copies in order."""
    first_seen = list(dict.fromkeys(received))
    missing = sorted(set(expected) - set(received))
    assert not missing, f"{len(missing)} missing, first {missing[:10]}"
    assert first_seen == sorted(first_seen), "out of order"


def test_the_broker_down_for_a_whole_burst(durable_broker, make_peer, make_client, topic, tmp_path):
    peer = make_peer(durable_broker, kind=DurablePeer, topic=topic)
    c = make_client(broker=durable_broker, persistence=tmp_path / "o.sqlite", **FAST)
    c.connect()
    durable_broker.stop()
    assert wait_until(lambda: c.get_mqttsta() != 0, 10)
    for n in range(500):
        assert c.publish(topic, b"%05d" % n, qos=1) is True
    assert c.outbox_size() == 500
    durable_broker.start()
    assert c.flush(60) is True
    assert wait_until(lambda: len(set(numbers(peer))) >= 500, 30)
    assert_all_in_order(numbers(peer), list(range(500)))


@pytest.mark.parametrize("version", [4, 5])
def test_a_publisher_killed_mid_burst_loses_nothing_it_was_told_was_stored(
    durable_broker, make_peer, publishers, topic, tmp_path, version
):
    peer = witness(make_peer, durable_broker, topic, version)
    path = tmp_path / "o.sqlite"
    killed = Publisher(
        durable_broker.host,
        durable_broker.port,
        path,
        unique_id(),
        topic,
        1,
        COUNT,
        CLEAN,
        0,
        version=version,
    )
    publishers.append(killed)
    killed.wait_told(COUNT // 3)
    killed.kill()
    told = list(killed.told)
    assert told == list(range(len(told)))

    # The same file in a new process (this one): what is left goes out.
    c = umqtt.MQTTClient(
        unique_id(),
        durable_broker.host,
        durable_broker.port,
        persistence=path,
        version=version,
        **FAST,
    )
    try:
        assert c.outbox_size() >= 0
        c.connect()
        assert c.flush(60) is True
    finally:
        c.disconnect()
    assert wait_until(lambda: set(told) <= set(numbers(peer)), 30)
    assert_all_in_order(numbers(peer), told)
    assert_properties_kept(peer, version)


def test_a_broker_restarted_mid_stream_loses_nothing(
    durable_broker, make_peer, make_client, topic, tmp_path
):
    """The stream goes on while the broker is frozen (SIGSTOP: what is sent stays unacknowledged)
    and restarted (gracefully, saving its sessions), so messages are surely in flight then."""
    peer = make_peer(durable_broker, kind=DurablePeer, topic=topic)
    c = make_client(broker=durable_broker, persistence=tmp_path / "o.sqlite", **FAST)
    c.connect()
    first_part = threading.Event()
    frozen = threading.Event()
    count = 10_000

    def stream() -> None:
        for n in range(count):
            if n == 1000:
                first_part.set()
                assert frozen.wait(30)
            assert c.publish(topic, b"%05d" % n, qos=1) is True

    publisher = Bounded(stream, "stream")
    assert first_part.wait(30)
    durable_broker.pause()
    frozen.set()
    assert wait_until(lambda: c.outbox_size() >= 100, 30), "the stream did not go on"
    durable_broker.restart()
    publisher.join(60)
    assert c.flush(60) is True
    assert durable_broker.log_lines("Saving in-memory database"), (
        "the broker did not save its sessions"
    )
    assert wait_until(lambda: len(set(numbers(peer))) >= count, 30)
    assert_all_in_order(numbers(peer), list(range(count)))


def test_the_lock_between_processes_dies_with_its_holder(
    durable_broker, publishers, topic, tmp_path
):
    path = tmp_path / "o.sqlite"
    holder = Publisher(
        durable_broker.host, durable_broker.port, path, unique_id(), topic, 1, 5, OFFLINE, 0
    )
    publishers.append(holder)
    holder.wait_told(5)
    assert wait_until(lambda: "done" in holder.lines, 30)
    in_use = f"in use by another client .process {holder.proc.pid} holds"
    with pytest.raises(umqtt.MQTTOutboxError, match=in_use):
        umqtt.MQTTClient(unique_id(), durable_broker.host, durable_broker.port, persistence=path)
    holder.kill()
    c = umqtt.MQTTClient(unique_id(), durable_broker.host, durable_broker.port, persistence=path)
    assert c.outbox_size() == 5


def test_a_full_disk_is_a_clear_error_and_loses_nothing_stored(
    durable_broker, make_peer, publishers, topic, tmp_path
):
    peer = make_peer(durable_broker, kind=DurablePeer, topic=topic)
    path = tmp_path / "o.sqlite"
    # 2 MiB for each file: the WAL fills up before SQLite's first checkpoint (about 4 MiB).
    full = Publisher(
        durable_broker.host,
        durable_broker.port,
        path,
        unique_id(),
        topic,
        1,
        10**5,
        OFFLINE,
        2 << 20,
    )
    publishers.append(full)
    assert wait_until(lambda: "done" in full.lines, 60), full.lines[-3:]
    refusal = next(line for line in full.lines if line.startswith("refused:"))
    assert "could not store the message" in refusal
    assert "the disk is full, a file size limit was reached" in refusal
    assert "what it stored before is kept" in refusal
    told = list(full.told)
    assert len(told) > 100
    full.kill()

    c = umqtt.MQTTClient(
        unique_id(), durable_broker.host, durable_broker.port, persistence=path, **FAST
    )
    try:
        assert c.outbox_size() == len(told)
        c.connect()
        assert c.flush(60) is True
    finally:
        c.disconnect()
    assert wait_until(lambda: len(numbers(peer)) >= len(told), 30)
    assert numbers(peer) == told


@pytest.mark.parametrize("version", [4, 5])
def test_qos2_is_exactly_once_across_a_kill_and_a_restart_on_a_kept_session(
    durable_broker, make_peer, publishers, topic, tmp_path, version
):
    peer = witness(make_peer, durable_broker, topic, version, qos=2)
    path, client_id = tmp_path / "o.sqlite", unique_id()
    killed = Publisher(
        durable_broker.host,
        durable_broker.port,
        path,
        client_id,
        topic,
        2,
        COUNT,
        KEPT,
        0,
        version=version,
    )
    publishers.append(killed)
    killed.wait_told(COUNT // 3)
    # Mid-handshake: some messages wait for their PUBREC, some for their PUBCOMP.
    killed.kill()
    told = list(killed.told)

    c = umqtt.MQTTClient(
        client_id,
        durable_broker.host,
        durable_broker.port,
        persistence=path,
        version=version,
        **FAST,
    )
    try:
        left = c.outbox_size()
        assert c.connect(clean_session=False) == 1
        assert c.flush(60) is True
    finally:
        c.disconnect()
    assert wait_until(lambda: len(numbers(peer)) >= len(told), 30)
    received = numbers(peer)
    duplicates = len(received) - len(set(received))
    assert duplicates == 0, f"{duplicates} duplicates ({left} were left in the outbox)"
    assert_all_in_order(received, told)
    assert_properties_kept(peer, version)


def test_a_message_the_broker_keeps_closing_on_is_dropped_and_the_rest_goes(
    mqtt_broker_factory, make_peer, topic, tmp_path, umqtt_log
):
    """mosquitto closes the connection on a packet over its max_packet_size (MQTT 3.1.1 has no
    way to say why): after 3 closes with it in flight, the outbox drops that message (logged)
    instead of holding back the others for ever."""
    broker = mqtt_broker_factory(extra_config=["max_packet_size 100000"])
    peer = make_peer(broker)
    peer.subscribe(topic, 1)
    c = umqtt.MQTTClient(
        unique_id(), broker.host, broker.port, persistence=tmp_path / "o.sqlite", **FAST
    )
    try:
        assert c.publish(topic, b"before", qos=1)
        assert c.publish(topic, b"x" * 200_000, qos=1)
        assert c.publish(topic, b"after", qos=1)
        c.connect()
        assert c.flush(60) is True
    finally:
        c.disconnect()
    assert wait_until(lambda: b"after" in [m.payload for m in peer.received(topic)], 10)
    # "before" may come twice: its PUBACK may be lost with the connection the broker resets.
    assert list(dict.fromkeys(m.payload for m in peer.received(topic))) == [b"before", b"after"]
    dropped = f"the outbox drops its message to {topic!r} ({len(topic) + 200_000} bytes)"
    assert dropped.replace("'", '"') in umqtt_log.text()

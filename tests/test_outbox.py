"""The outbox on disk (issue 24), on every dialect, under MQTT 3.1.1 and MQTT 5 (`version=5`, issue
25: a message's properties are stored with it): publishes stored before connect() and
between disconnect() and connect() go out once connected, in order; QoS 0 is never stored;
outbox_size() and flush(); the limits (a full outbox refuses at once and drops nothing); one
client per file; files that are not outboxes refused and left untouched; the file read with
sqlite3 while the client runs; every transport; bad arguments.

Faults (a broker down for a burst, kill -9, restarts, a full disk, QoS 2 across a restart) are in
test_outbox_faults.py; MQTT 5 refusals (removed, logged, counted) in test_mqtt5_outbox.py. The
witness is an independent paho subscriber."""

from __future__ import annotations

import asyncio
import gc
import inspect
import os
import pwd
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path
from typing import Any

import pytest
import umqtt
import umqtt.aio
import umqtt.robust
import umqtt.simple
from broker import Mosquitto, unique_id, wait_until
from conftest import Peer
from transport_servers import net_broker_fixture  # noqa: F401 - net_broker: a fixture

CLASSES = {
    "quecpython": umqtt.MQTTClient,
    "simple": umqtt.simple.MQTTClient,
    "robust": umqtt.robust.MQTTClient,
    "aio": umqtt.aio.MQTTClient,
}
# What publish() returns once a message is stored, per dialect.
STORED = {"quecpython": True, "simple": None, "robust": None, "aio": None}
# The query docs/design.md gives users ("The outbox on disk").
WAITING = "SELECT id, topic, qos, length(payload) FROM messages ORDER BY id"


def call(client: Any, method: str, *args: Any, **kw: Any) -> Any:
    """client.method(...), awaited in a loop of its own for umqtt.aio (a client may move from
    one loop to the next)."""
    result = getattr(client, method)(*args, **kw)
    if inspect.iscoroutine(result):
        return asyncio.run(result)
    return result


def rows(path: Path) -> list[tuple[Any, ...]]:
    """What the outbox file holds, read as a user would, with sqlite3 (read-only)."""
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
        return db.execute(WAITING).fetchall()


def fingerprint(path: Path) -> tuple[bytes, int, list[str]]:
    """A file's bytes, modification time and the names beside it: to show it was not touched."""
    return path.read_bytes(), path.stat().st_mtime_ns, sorted(os.listdir(path.parent))


@pytest.fixture
def watcher(mqtt_broker: Mosquitto, make_peer: Any, topic: str) -> Peer:
    """A paho subscriber of `topic` at QoS 2 on the shared broker."""
    peer: Peer = make_peer(mqtt_broker)
    peer.subscribe(topic, 2)
    return peer


def payloads(peer: Peer, topic: str) -> list[bytes]:
    return [m.payload for m in peer.received(topic)]


# --------------------------------------------------------------------------- every dialect


@pytest.mark.parametrize("version", [4, 5])
@pytest.mark.parametrize("dialect", CLASSES)
def test_stored_while_not_connected_sent_in_order_once_connected(
    dialect, version, mqtt_broker, make_client, watcher, topic, tmp_path
):
    path = tmp_path / "outbox.sqlite"
    # str or os.PathLike
    where = path if dialect in ("quecpython", "aio") else str(path)
    c = make_client(dialect=dialect, connect=False, persistence=where, version=version)
    for n in range(3):
        assert call(c, "publish", topic, b"before-%d" % n, False, 1) is STORED[dialect]
    assert c.outbox_size() == 3
    assert [r[1:] for r in rows(path)] == [(topic, 1, 8)] * 3
    call(c, "connect")
    assert call(c, "flush", 10) in (True, None)
    assert c.outbox_size() == 0
    assert rows(path) == []
    call(c, "disconnect")
    assert call(c, "publish", topic, b"between", False, 1) is STORED[dialect]
    assert c.outbox_size() == 1
    call(c, "connect")
    assert call(c, "flush", 10) in (True, None)
    expected = [b"before-0", b"before-1", b"before-2", b"between"]
    assert wait_until(lambda: len(payloads(watcher, topic)) >= 4, 10)
    assert payloads(watcher, topic) == expected


@pytest.mark.parametrize("version", [4, 5])
@pytest.mark.parametrize("dialect", CLASSES)
def test_a_full_outbox_refuses_at_once_and_drops_nothing(
    dialect, version, make_client, watcher, topic, tmp_path, umqtt_log
):
    path = tmp_path / "outbox.sqlite"
    c = make_client(
        dialect=dialect,
        connect=False,
        persistence=path,
        persistence_max_messages=2,
        version=version,
    )
    if dialect == "robust":
        c.DELAY = 0
    for n in range(2):
        call(c, "publish", topic, b"%d" % n, False, 1)
    if dialect == "quecpython":
        assert c.publish(topic, b"2", qos=1) is False
        assert "the outbox is full" in umqtt_log.text()
    else:
        # Not an OSError: umqtt.robust does not try to reconnect and retry it.
        with pytest.raises(umqtt.MQTTOutboxError, match="persistence_max_messages=2") as error:
            call(c, "publish", topic, b"2", False, 1)
        assert isinstance(error.value, umqtt.MQTTException)
        assert not isinstance(error.value, OSError)
    assert c.outbox_size() == 2
    call(c, "connect")
    assert call(c, "flush", 10) in (True, None)
    assert wait_until(lambda: len(payloads(watcher, topic)) >= 2, 10)
    assert payloads(watcher, topic) == [b"0", b"1"]


@pytest.mark.parametrize("version", [4, 5])
def test_the_byte_limit_counts_topics_payloads_and_properties(
    make_client, topic, tmp_path, version
):
    """MQTT 5 properties count as stored: encoded as on the wire (content_type "abc": their
    length 1, the identifier 1, the string's length 2 and 3 bytes)."""
    properties = {"properties": {"content_type": "abc"}} if version == 5 else {}
    size = len(topic) + 10 + (7 if version == 5 else 0)
    c = make_client(
        dialect="simple",
        connect=False,
        persistence=tmp_path / "o.sqlite",
        persistence_max_bytes=2 * size,
        version=version,
    )
    c.publish(topic, b"0123456789", qos=1, **properties)
    with pytest.raises(umqtt.MQTTOutboxError, match="persistence_max_bytes"):
        c.publish(topic, b"01234567890", qos=1, **properties)
    c.publish(topic, b"0123456789", qos=2, **properties)
    with pytest.raises(umqtt.MQTTOutboxError, match="persistence_max_bytes"):
        c.publish(topic, b"x", qos=1)
    assert c.outbox_size() == 2


def test_qos0_is_never_stored(make_client, watcher, topic, tmp_path):
    path = tmp_path / "outbox.sqlite"
    c = make_client(persistence=path)
    c.connect()
    assert c.publish(topic, b"zero", qos=0) is True
    assert c.outbox_size() == 0
    assert wait_until(lambda: payloads(watcher, topic) == [b"zero"], 10)
    assert rows(path) == []
    c.disconnect()
    # Not connected: QoS 0 goes nowhere, as without an outbox.
    with pytest.raises(umqtt.MQTTException, match="not connected"):
        c.publish(topic, b"zero", qos=0)


@pytest.mark.parametrize("version", [4, 5])
def test_qos2_is_delivered_exactly_once_in_order(make_client, watcher, topic, tmp_path, version):
    c = make_client(persistence=tmp_path / "o.sqlite", persistence_sync="full", version=version)
    c.connect()
    sent = [b"%03d" % n for n in range(200)]
    for payload in sent:
        assert c.publish(topic, payload, qos=2) is True
    assert c.flush(20) is True
    assert wait_until(lambda: len(payloads(watcher, topic)) >= 200, 20)
    assert payloads(watcher, topic) == sent


@pytest.mark.parametrize("version", [4, 5])
def test_64_asyncio_tasks_in_flight(
    mqtt_broker_factory, make_peer, make_aio, topic, tmp_path, version
):
    # 1,280 messages outrun the subscriber on a busy machine: mosquitto's default queue for it
    # (max_queued_messages 1000) would drop the excess, so this broker queues without a limit.
    broker = mqtt_broker_factory(extra_config=["max_queued_messages 0"])
    watcher = make_peer(broker)
    watcher.subscribe(topic, 2)

    async def main() -> None:
        c = make_aio(broker=broker, persistence=tmp_path / "o.sqlite", version=version)
        await c.connect()

        async def task(k: int) -> None:
            for n in range(20):
                await c.publish(topic, b"%02d-%02d" % (k, n), qos=1)

        await asyncio.gather(*(task(k) for k in range(64)))
        await c.flush(30)
        assert c.outbox_size() == 0

    asyncio.run(main())
    assert wait_until(lambda: len(payloads(watcher, topic)) >= 64 * 20, 20)
    got = payloads(watcher, topic)
    assert sorted(got) == sorted(b"%02d-%02d" % (k, n) for k in range(64) for n in range(20))
    for k in range(64):  # each task's messages in the order it published them
        mine = [p for p in got if p.startswith(b"%02d-" % k)]
        assert mine == sorted(mine)


def test_flush_times_out_while_nothing_can_be_sent(make_client, make_aio, topic, tmp_path):
    c = make_client(connect=False, persistence=tmp_path / "a.sqlite")
    assert c.flush(0) is True
    c.publish(topic, b"x", qos=1)
    assert c.flush(0.2) is False
    assert c.flush(0) is False
    aio = make_aio(persistence=tmp_path / "b.sqlite")
    asyncio.run(aio.publish(topic, b"x", qos=1))
    with pytest.raises(umqtt.MQTTTimeout, match="1 unacknowledged"):
        asyncio.run(aio.flush(0.2))
    # Without an outbox there is nothing to wait for.
    plain = make_client(connect=False)
    assert plain.outbox_size() == 0
    assert plain.flush() is True
    assert asyncio.run(make_aio().flush()) is None


def test_the_file_is_readable_with_sqlite3_while_the_client_runs(make_client, topic, tmp_path):
    path = tmp_path / "outbox.sqlite"
    c = make_client(connect=False, persistence=path)
    c.publish(topic, b"reading", qos=1)
    c.publish(topic, "twelve bytes", qos=2)
    assert rows(path) == [(1, topic, 1, 7), (2, topic, 2, 12)]
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
        assert db.execute("PRAGMA application_id").fetchone() == (0x756D7174,)
        assert db.execute("PRAGMA user_version").fetchone() == (1,)
        assert db.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    c.publish(topic, b"after reading", qos=1)
    assert c.outbox_size() == 3


# --------------------------------------------------------------------------- who owns the file


def test_one_client_per_file_until_it_is_collected(make_client, tmp_path):
    path = tmp_path / "outbox.sqlite"
    first = umqtt.MQTTClient(unique_id(), "127.0.0.1", 1, persistence=path)
    first.publish("t", b"kept", qos=1)
    for dialect in CLASSES.values():
        with pytest.raises(umqtt.MQTTOutboxError, match="in use by another client"):
            dialect(unique_id(), "127.0.0.1", 1, persistence=path)
    # Another name for the same file is the same file.
    with pytest.raises(umqtt.MQTTOutboxError, match="in use"):
        umqtt.MQTTClient(unique_id(), "127.0.0.1", 1, persistence=tmp_path / "." / path.name)
    first.close()  # closing the connection does not give the file up: the object owns it
    with pytest.raises(umqtt.MQTTOutboxError, match="in use"):
        umqtt.MQTTClient(unique_id(), "127.0.0.1", 1, persistence=path)
    del first
    gc.collect()
    second = umqtt.MQTTClient(unique_id(), "127.0.0.1", 1, persistence=path)
    assert second.outbox_size() == 1


def _foreign_database(path: Path) -> None:
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE readings (value REAL)")
        db.execute("INSERT INTO readings VALUES (21.5)")
    db.close()


@pytest.mark.parametrize(
    ("kind", "make", "reason"),
    [
        ("garbage", lambda p: p.write_bytes(os.urandom(8192)), "not an SQLite database"),
        ("text", lambda p: p.write_text("not a database\n"), "too short"),
        ("foreign", _foreign_database, "another application"),
        ("folder", lambda p: p.mkdir(), "folder"),
    ],
)
def test_a_file_that_is_not_an_outbox_is_refused_and_left_untouched(tmp_path, kind, make, reason):
    path = tmp_path / f"{kind}.sqlite"
    make(path)
    before = fingerprint(path) if path.is_file() else sorted(os.listdir(tmp_path))
    with pytest.raises(umqtt.MQTTOutboxError, match=reason) as error:
        umqtt.aio.MQTTClient(unique_id(), "127.0.0.1", 1, persistence=path)
    assert str(path) in str(error.value)
    after = fingerprint(path) if path.is_file() else sorted(os.listdir(tmp_path))
    assert after == before


def test_a_damaged_outbox_is_refused_and_left_untouched(tmp_path):
    path = tmp_path / "outbox.sqlite"
    c = umqtt.MQTTClient(unique_id(), "127.0.0.1", 1, persistence=path)
    for n in range(300):
        c.publish("t", b"%d" % n * 100, qos=1)
    del c
    gc.collect()
    data = bytearray(path.read_bytes())
    assert len(data) > 4 * 4096
    data[2 * 4096 : 3 * 4096] = b"\xff" * 4096  # a page of the table, past the header
    path.write_bytes(bytes(data))
    before = fingerprint(path)
    with pytest.raises(umqtt.MQTTOutboxError, match="damaged"):
        umqtt.MQTTClient(unique_id(), "127.0.0.1", 1, persistence=path)
    assert fingerprint(path) == before


# As another user than the file's owner (root reads everything): a file it may not read, an
# outbox it may only read.
PERMISSION_SCRIPT = textwrap.dedent(
    """
    import os, sys, umqtt
    os.setgid(int(sys.argv[3])); os.setuid(int(sys.argv[2]))
    try:
        umqtt.MQTTClient("perm", "127.0.0.1", 1, persistence=sys.argv[1])
    except umqtt.MQTTOutboxError as e:
        print(e)
    """
)


@pytest.fixture
def shared_folder() -> Any:
    """A folder in /tmp that every user may enter (pytest's own are private)."""
    folder = Path(tempfile.mkdtemp(prefix="umqtt-outbox-"))
    folder.chmod(0o755)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def test_a_file_it_may_not_read_or_write_is_refused_and_left_untouched(shared_folder):
    unreadable = shared_folder / "unreadable.sqlite"
    read_only = shared_folder / "read-only.sqlite"
    unreadable.write_bytes(b"secret" * 100)
    c = umqtt.MQTTClient(unique_id(), "127.0.0.1", 1, persistence=read_only)
    c.publish("t", b"x", qos=1)
    del c
    gc.collect()
    (shared_folder / "read-only.sqlite-lock").unlink()
    if os.geteuid() == 0:  # root may read and write anything: be somebody else
        nobody = pwd.getpwnam("nobody")
        user = [str(nobody.pw_uid), str(nobody.pw_gid)]
        unreadable.chmod(0o600)
        read_only.chmod(0o644)
    else:
        user = [str(os.getuid()), str(os.getgid())]
        unreadable.chmod(0o000)
        read_only.chmod(0o444)
    for path, reason in [(unreadable, "cannot read"), (read_only, "cannot write")]:
        before = fingerprint(path)
        shown = subprocess.run(
            [sys.executable, "-c", PERMISSION_SCRIPT, str(path), *user],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert shown.returncode == 0, shown.stderr
        assert reason in shown.stdout and "Permission denied" in shown.stdout, shown.stdout
        assert fingerprint(path) == before


# --------------------------------------------------------------------------- arguments


@pytest.mark.parametrize(
    ("options", "error", "match"),
    [
        ({"persistence": 42}, TypeError, "persistence must be a file path"),
        ({"persistence": b"/tmp/x.sqlite"}, TypeError, "persistence must be a file path"),
        ({"persistence": ""}, ValueError, "persistence must be a file path"),
        ({"persistence": "a\0b"}, ValueError, "NUL"),
        ({"persistence_max_messages": 0}, ValueError, "persistence_max_messages must be between"),
        ({"persistence_max_messages": "10"}, TypeError, "persistence_max_messages"),
        ({"persistence_max_bytes": -1}, ValueError, "persistence_max_bytes must be between"),
        ({"persistence_sync": "fast"}, ValueError, 'persistence_sync must be "normal" or "full"'),
        ({"persistence_sync": 1}, TypeError, "persistence_sync"),
    ],
)
def test_bad_arguments_name_themselves(tmp_path, options, error, match):
    options.setdefault("persistence", tmp_path / "o.sqlite")
    for dialect in CLASSES.values():
        with pytest.raises(error, match=match):
            dialect(unique_id(), "127.0.0.1", 1, **options)
    assert not (tmp_path / "o.sqlite").exists()


@pytest.mark.parametrize("option", ["persistence_max_messages", "persistence_sync"])
def test_outbox_options_without_an_outbox_are_refused(option):
    value = "full" if option == "persistence_sync" else 10
    with pytest.raises(ValueError, match=f"{option} applies to the outbox on disk"):
        umqtt.MQTTClient(unique_id(), "127.0.0.1", 1, **{option: value})


# --------------------------------------------------------------------------- transports


@pytest.mark.parametrize("transport", ["websockets", "unix"])
def test_every_transport_carries_the_outbox(net_broker, make_peer, transport, topic, tmp_path):
    peer = make_peer(net_broker)
    peer.subscribe(topic, 1)
    if transport == "unix":
        target = {"server": str(net_broker.unix_path), "port": 0}
    else:
        target = {"server": net_broker.host, "port": net_broker.ws_port}
    c = umqtt.MQTTClient(
        unique_id(), **target, transport=transport, persistence=tmp_path / "o.sqlite"
    )
    try:
        sent = [b"%d" % n for n in range(50)]
        for payload in sent[:25]:
            assert c.publish(topic, payload, qos=1)
        c.connect()
        for payload in sent[25:]:
            assert c.publish(topic, payload, qos=1)
        assert c.flush(20) is True
        assert wait_until(lambda: len(payloads(peer, topic)) >= 50, 10)
        assert payloads(peer, topic) == sent
    finally:
        c.disconnect()

"""One benchmark role for one MQTT client library, in a process of its own.

    python .../umqtt/_bench/worker.py ROLE LIB [--host H] --port P [options]

ROLE is sub, pub, rtt, conn, idle or crowd; LIB is umqtt, paho, gmqtt, umqtt.aio or aiomqtt, or
socket (rtt only: the floor, a bare socket and no MQTT library). ``--option KEY=VALUE`` (repeatable,
VALUE read as JSON when it parses) passes a keyword argument to umqtt's client constructor: how a
variant of a row (e.g. ``version=5``) reaches the client. run.py (beside this file) starts these;
they talk to it through stdout: a
subscriber prints ``READY`` once its subscriptions are granted, and every role ends by printing one
JSON object (its figures) as its last line. Timestamps are ``time.monotonic()``, which on Linux is
one clock for every process of the machine, so run.py can subtract a publisher's start from a
subscriber's last arrival.

End of a throughput run: after its last data message the publisher publishes ``END <count>`` at
QoS 1 to a control topic and waits for the PUBACK (so everything before it has left the process);
with umqtt's outbox on disk, where publish() returns once the message is stored, it waits for
``flush()`` instead (every message acknowledged).

``--option persistence=new`` gives the client an outbox on disk in a new file of this process's
own (the subscriber and the publisher of a run each get one), removed at the end.
The subscriber is subscribed to the control topic at QoS 1; mosquitto forwards one connection's
messages in order, so when ``END`` arrives everything that was going to arrive has arrived. It then
polls for a short grace period (in case of reordering) and reports what it counted.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import gc
import itertools
import json
import os
import resource
import socket
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Awaitable
from typing import Any, Callable

HOST = "127.0.0.1"  # the broker's: --host sets it
# `--option persistence=new`: an outbox in a new file of this process's own.
NEW_OUTBOX = "new"
GRACE = 1.0  # seconds a subscriber keeps counting after END while messages are still missing


def now() -> float:
    return time.monotonic()


def cpu_seconds() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def proc_status(field: str) -> int:
    """An integer field of /proc/self/status (VmRSS is in kB, Threads is a count)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise KeyError(field)


def thread_cpu() -> dict[str, float]:
    """CPU seconds of this process's threads so far, summed by thread name (diagnostics)."""
    tick = os.sysconf("SC_CLK_TCK")
    out: dict[str, float] = {}
    for tid in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{tid}/stat") as f:
                name, rest = f.read().split("(", 1)[1].rsplit(")", 1)
        except OSError:
            continue
        fields = rest.split()
        out[name] = out.get(name, 0.0) + (int(fields[11]) + int(fields[12])) / tick
    return out


def emit(**figures: Any) -> None:
    print(json.dumps(figures), flush=True)


def say(line: str) -> None:
    print(line, flush=True)


def client_id(tag: str) -> str:
    return f"bench-{tag}-{uuid.uuid4().hex[:8]}"


def end_count(payload: bytes | str) -> int:
    text = payload.decode() if isinstance(payload, bytes) else payload
    return int(text.split()[1])


class Tally:
    """What a subscriber counted. Attribute writes only: cheap from any callback."""

    def __init__(self) -> None:
        self.count = 0
        self.t_last: float | None = None
        self.expected: int | None = None
        self.t_end: float | None = None

    def report(self, cpu: float) -> None:
        emit(
            received=self.count,
            expected=self.expected,
            lost=None if self.expected is None else self.expected - self.count,
            t_last=self.t_last,
            t_end=self.t_end,
            cpu=cpu,
        )


def publish_loop(publish: Any, count: int, deadline: float) -> int:
    """Calls publish() up to `count` times or until `deadline`; returns how many it made."""
    sent = 0
    while sent < count:
        chunk = min(256, count - sent)
        for _ in range(chunk):
            publish()
        sent += chunk
        if now() >= deadline:
            break
    return sent


# =============================================================================== umqtt


def umqtt_client(tag: str, a: argparse.Namespace) -> Any:
    from umqtt import MQTTClient

    c = MQTTClient(client_id(tag), HOST, a.port, keepalive=60, **a.options)
    c.connect()
    return c


def umqtt_sub(a: argparse.Namespace) -> None:
    c = umqtt_client("sub", a)
    t = Tally()
    ctl = a.ctl.encode()

    def on_message(topic: bytes, msg: bytes) -> None:
        if topic == ctl:
            t.expected = end_count(msg)
            t.t_end = now()
        else:
            t.count += 1

    c.set_callback(on_message)
    assert c.subscribe(a.topic, a.qos) and c.subscribe(a.ctl, 1)
    say("READY")
    cpu0 = cpu_seconds()
    seen = 0
    # The thread-free loop the QuecPython API is made for: wait_msg() delivers a batch.
    while t.expected is None:
        c.wait_msg()
        if t.count != seen:
            seen = t.count
            t.t_last = now()
    quiet_until = now() + GRACE
    while t.count < t.expected and now() < quiet_until:
        time.sleep(0.01)
        c.check_msg()
        if t.count != seen:
            seen = t.count
            t.t_last = now()
            quiet_until = t.t_last + GRACE
    cpu = cpu_seconds() - cpu0
    c.disconnect()
    t.report(cpu)


def umqtt_pub(a: argparse.Namespace) -> None:
    c = umqtt_client("pub", a)
    payload = b"x" * a.size
    topic, qos = a.topic, a.qos
    t0 = now()
    cpu0 = cpu_seconds()
    deadline = t0 + a.duration
    if a.threads <= 1:
        sent = publish_loop(lambda: c.publish(topic, payload, False, qos), a.count, deadline)
        failed = 0
    else:
        # The blocking API has one publish in flight per thread: a window of `threads`.
        ticket = itertools.count()
        done = [0] * a.threads
        bad = [0] * a.threads

        def worker(k: int) -> None:
            n = f = 0
            while next(ticket) < a.count and now() < deadline:
                if not c.publish(topic, payload, False, qos):
                    f += 1
                n += 1
            done[k], bad[k] = n, f

        pool = [threading.Thread(target=worker, args=(k,)) for k in range(a.threads)]
        for th in pool:
            th.start()
        for th in pool:
            th.join()
        sent, failed = sum(done), sum(bad)
    t_calls = now()
    assert c.publish(a.ctl, f"END {sent}", False, 1)
    assert c.flush()  # with an outbox: until every message is acknowledged; else at once
    t_flushed = now()
    cpu, threads = cpu_seconds() - cpu0, thread_cpu()
    c.disconnect()
    pub_report(sent, failed, t0, t_calls, t_flushed, cpu, threads)


def umqtt_rtt(a: argparse.Namespace) -> None:
    c = umqtt_client("rtt", a)
    got = [0]

    def on_message(topic: bytes, msg: bytes) -> None:
        got[0] += 1

    c.set_callback(on_message)
    assert c.subscribe(a.topic, a.qos)
    payload = b"x" * a.size
    samples = []
    for i in range(a.warmup + a.count):
        t0 = time.perf_counter()
        c.publish(a.topic, payload, False, a.qos)
        while got[0] <= i:
            c.wait_msg()
        samples.append(time.perf_counter() - t0)
    c.disconnect()
    rtt_report(samples[a.warmup :])


def umqtt_conn(a: argparse.Namespace) -> None:
    conn_report(lambda: umqtt_client("conn", a), lambda c: c.disconnect(), a)


def umqtt_idle(a: argparse.Namespace) -> None:
    idle_report(lambda: umqtt_client("idle", a), a)


# =============================================================================== paho-mqtt


def paho_client(tag: str, port: int, start_loop: bool, max_inflight: int = 0) -> Any:
    """A connected paho client; with start_loop its network thread runs (loop_start)."""
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id(tag))
    if max_inflight:
        c.max_inflight_messages_set(max_inflight)  # only before connect()
    connected = threading.Event()
    c.on_connect = lambda *args: connected.set()
    c.connect(HOST, port, keepalive=60)
    if start_loop:
        # paho's loop uses select(), which cannot watch a file descriptor >= 1024 (FD_SETSIZE);
        # the network thread would retry forever. Say so at once instead.
        c.loop_start()
        pair = [getattr(c, name, None) for name in ("_sockpairR", "_sockpairW")]
        high = max(s.fileno() for s in [c.socket(), *pair] if s is not None)
        if high >= 1024:
            raise RuntimeError(f"paho: fd {high} >= 1024, which select() cannot watch")
        if not connected.wait(10):
            raise RuntimeError("paho: no CONNACK within 10 s")
    else:
        deadline = now() + 10
        while not connected.is_set():
            if now() > deadline:
                raise RuntimeError("paho: no CONNACK within 10 s")
            c.loop(0.1)
    return c


def paho_subscribe(c: Any, topic: str, qos: int) -> None:
    granted = threading.Event()
    c.on_subscribe = lambda *args: granted.set()
    c.subscribe(topic, qos)
    if not granted.wait(10):
        raise RuntimeError("paho: no SUBACK within 10 s")


def paho_sub(a: argparse.Namespace) -> None:
    c = paho_client("sub", a.port, start_loop=True)
    t = Tally()
    end = threading.Event()

    def on_message(client: Any, userdata: Any, msg: Any) -> None:
        t.count += 1
        t.t_last = now()

    def on_end(client: Any, userdata: Any, msg: Any) -> None:
        t.expected = end_count(msg.payload)
        t.t_end = now()
        end.set()

    c.on_message = on_message
    c.message_callback_add(a.ctl, on_end)
    paho_subscribe(c, a.topic, a.qos)
    paho_subscribe(c, a.ctl, 1)
    say("READY")
    cpu0 = cpu_seconds()
    end.wait()
    quiet_until = now() + GRACE
    seen = t.count
    while t.expected is not None and t.count < t.expected and now() < quiet_until:
        time.sleep(0.01)
        if t.count != seen:
            seen = t.count
            quiet_until = now() + GRACE
    cpu = cpu_seconds() - cpu0
    c.disconnect()
    c.loop_stop()
    t.report(cpu)


def paho_pub(a: argparse.Namespace) -> None:
    payload = b"x" * a.size
    topic, qos = a.topic, a.qos
    if qos == 0:
        # No network thread: publish() writes to the socket itself (paho's fastest QoS 0 path;
        # with loop_start every publish() also wakes the network thread through a socketpair).
        c = paho_client("pub", a.port, start_loop=False)
        t0 = now()
        cpu0 = cpu_seconds()
        sent = publish_loop(lambda: c.publish(topic, payload, qos), a.count, t0 + a.duration)
        t_calls = now()
        info = c.publish(a.ctl, f"END {sent}", 1)
        while not info.is_published():
            c.loop(0.1)
        t_flushed = now()
        cpu, threads = cpu_seconds() - cpu0, thread_cpu()
        c.disconnect()
    else:
        c = paho_client(
            "pub", a.port, start_loop=True, max_inflight=a.window if a.window > 1 else 0
        )
        t0 = now()
        cpu0 = cpu_seconds()
        deadline = t0 + a.duration
        sent = 0
        if a.window <= 1:
            while sent < a.count and now() < deadline:
                c.publish(topic, payload, qos).wait_for_publish()
                sent += 1
        else:
            # paho keeps up to max_inflight messages in flight and queues the rest itself.
            while sent < a.count and now() < deadline:
                batch = min(a.batch, a.count - sent)
                infos = [c.publish(topic, payload, qos) for _ in range(batch)]
                for info in infos:
                    info.wait_for_publish()
                sent += batch
        t_calls = now()
        c.publish(a.ctl, f"END {sent}", 1).wait_for_publish()
        t_flushed = now()
        cpu, threads = cpu_seconds() - cpu0, thread_cpu()
        c.disconnect()
        c.loop_stop()
    pub_report(sent, 0, t0, t_calls, t_flushed, cpu, threads)


def paho_rtt(a: argparse.Namespace) -> None:
    c = paho_client("rtt", a.port, start_loop=True)
    arrived = threading.Event()
    c.on_message = lambda *args: arrived.set()
    paho_subscribe(c, a.topic, a.qos)
    payload = b"x" * a.size
    samples = []
    for _ in range(a.warmup + a.count):
        t0 = time.perf_counter()
        c.publish(a.topic, payload, a.qos)
        arrived.wait()
        samples.append(time.perf_counter() - t0)
        arrived.clear()
    c.disconnect()
    c.loop_stop()
    rtt_report(samples[a.warmup :])


def paho_conn(a: argparse.Namespace) -> None:
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    # No network thread: connect(), loop() until CONNACK; disconnect() writes DISCONNECT and
    # closes at once. Faster for paho than loop_start()/loop_stop(), which start a thread.
    def connect() -> Any:
        c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id("conn"))
        c.connect(HOST, a.port, keepalive=60)
        while not c.is_connected():
            c.loop(1.0)
        return c

    conn_report(connect, lambda c: c.disconnect(), a)


def paho_idle(a: argparse.Namespace) -> None:
    # The usual way to keep a paho client alive: its own network thread (loop_start).
    idle_report(lambda: paho_client("idle", a.port, start_loop=True), a)


# =============================================================================== gmqtt (asyncio)


async def gmqtt_client(tag: str, port: int) -> Any:
    from gmqtt import Client
    from gmqtt.mqtt.constants import MQTTv311

    c = Client(client_id(tag))
    await c.connect(HOST, port, keepalive=60, version=MQTTv311)
    return c


async def gmqtt_subscribe(c: Any, topic: str, qos: int) -> None:
    granted = asyncio.get_running_loop().create_future()

    def on_subscribe(*args: Any) -> None:
        if not granted.done():
            granted.set_result(None)

    c.on_subscribe = on_subscribe
    c.subscribe(topic, qos)
    await asyncio.wait_for(granted, 10)


async def gmqtt_sub(a: argparse.Namespace) -> None:
    c = await gmqtt_client("sub", a.port)
    t = Tally()
    end = asyncio.Event()
    ctl = a.ctl

    def on_message(client: Any, topic: str, payload: bytes, qos: int, props: Any) -> int:
        if topic == ctl:
            t.expected = end_count(payload)
            t.t_end = now()
            end.set()
        else:
            t.count += 1
            t.t_last = now()
        return 0

    c.on_message = on_message
    await gmqtt_subscribe(c, a.topic, a.qos)
    await gmqtt_subscribe(c, a.ctl, 1)
    say("READY")
    cpu0 = cpu_seconds()
    await end.wait()
    quiet_until = now() + GRACE
    seen = t.count
    while t.expected is not None and t.count < t.expected and now() < quiet_until:
        await asyncio.sleep(0.01)
        if t.count != seen:
            seen = t.count
            quiet_until = now() + GRACE
    cpu = cpu_seconds() - cpu0
    await c.disconnect()
    t.report(cpu)


async def gmqtt_pub(a: argparse.Namespace) -> None:
    c = await gmqtt_client("pub", a.port)
    payload = b"x" * a.size
    topic, qos = a.topic, a.qos
    acked = c._persistent_storage.wait_empty  # gmqtt has no public "wait for PUBACK"
    t0 = now()
    cpu0 = cpu_seconds()
    deadline = t0 + a.duration
    sent = 0
    if qos == 0:
        # Yield to the event loop every 256 messages so the transport can drain to the socket
        # (otherwise everything piles up in its user-space buffer).
        while sent < a.count:
            chunk = min(256, a.count - sent)
            for _ in range(chunk):
                c.publish(topic, payload, qos)
            sent += chunk
            await asyncio.sleep(0)
            if now() >= deadline:
                break
    elif a.window <= 1:
        while sent < a.count and now() < deadline:
            c.publish(topic, payload, qos)
            await acked()
            sent += 1
    else:
        # gmqtt does not limit messages in flight (MQTT 3.1.1): publish a batch, await its PUBACKs.
        # Also its "64 in flight" (batches of 64): its publish() returns nothing to await, and a
        # future per message made gmqtt slower (benches/README.md).
        while sent < a.count and now() < deadline:
            batch = min(a.batch, a.count - sent)
            for _ in range(batch):
                c.publish(topic, payload, qos)
            await acked()
            sent += batch
    t_calls = now()
    c.publish(a.ctl, f"END {sent}", 1)
    await acked()
    t_flushed = now()
    cpu, threads = cpu_seconds() - cpu0, thread_cpu()
    await c.disconnect()
    pub_report(sent, 0, t0, t_calls, t_flushed, cpu, threads)


async def gmqtt_rtt(a: argparse.Namespace) -> None:
    c = await gmqtt_client("rtt", a.port)
    loop = asyncio.get_running_loop()
    box: list[asyncio.Future[None]] = []

    def on_message(*args: Any) -> int:
        box[0].set_result(None)
        return 0

    c.on_message = on_message
    await gmqtt_subscribe(c, a.topic, a.qos)
    payload = b"x" * a.size
    samples = []
    for _ in range(a.warmup + a.count):
        box[:] = [loop.create_future()]
        t0 = time.perf_counter()
        c.publish(a.topic, payload, a.qos)
        await box[0]
        samples.append(time.perf_counter() - t0)
    await c.disconnect()
    rtt_report(samples[a.warmup :])


async def gmqtt_conn(a: argparse.Namespace) -> None:
    await async_conn_report(lambda: gmqtt_client("conn", a.port), lambda c: c.disconnect(), a)


async def gmqtt_idle(a: argparse.Namespace) -> None:
    await async_idle_report(lambda: gmqtt_client("idle", a.port), a)


async def gmqtt_crowd(a: argparse.Namespace) -> None:
    await crowd_report(lambda: gmqtt_client("crowd", a.port), a)


# =============================================================================== umqtt.aio
# As a user writes it: every call awaited (`await client.publish(...)`), messages from
# `async for message in client.messages()`.


async def aio_client(tag: str, a: argparse.Namespace) -> Any:
    from umqtt.aio import MQTTClient

    c = MQTTClient(client_id(tag), HOST, a.port, keepalive=60, **a.options)
    await c.connect()
    return c


async def aio_sub(a: argparse.Namespace) -> None:
    c = await aio_client("sub", a)
    await c.subscribe(a.topic, a.qos)
    await c.subscribe(a.ctl, 1)
    say("READY")
    t, cpu = await count_messages(c.messages().__anext__, lambda m: m.topic, a.ctl)
    await c.disconnect()
    t.report(cpu)


async def aio_pub(a: argparse.Namespace) -> None:
    c = await aio_client("pub", a)
    # partial, not a coroutine around the call: each publish() is awaited as the user awaits it.
    publish = functools.partial(c.publish, a.topic, b"x" * a.size, False, a.qos)

    async def publish_end(text: str) -> None:
        await c.publish(a.ctl, text, False, 1)
        await c.flush()  # with an outbox: until every message is acknowledged; else at once

    figures = await awaited_publishes(publish, publish_end, a)
    await c.disconnect()
    pub_report(**figures)


async def aio_rtt(a: argparse.Namespace) -> None:
    c = await aio_client("rtt", a)
    await c.subscribe(a.topic, a.qos)
    publish = functools.partial(c.publish, a.topic, b"x" * a.size, False, a.qos)
    samples = await awaited_round_trips(publish, c.messages().__anext__, a)
    await c.disconnect()
    rtt_report(samples)


async def aio_conn(a: argparse.Namespace) -> None:
    await async_conn_report(lambda: aio_client("conn", a), lambda c: c.disconnect(), a)


async def aio_idle(a: argparse.Namespace) -> None:
    await async_idle_report(lambda: aio_client("idle", a), a)


async def aio_crowd(a: argparse.Namespace) -> None:
    await crowd_report(lambda: aio_client("crowd", a), a)


# ==================================================================== aiomqtt (asyncio, on paho)
# As its documentation writes it: `await client.publish(...)` (returns once paho has written a
# QoS 0 message, at the PUBACK for QoS 1), `async for message in client.messages`.


async def aiomqtt_client(tag: str, a: argparse.Namespace, **settings: Any) -> Any:
    import aiomqtt

    c = aiomqtt.Client(HOST, a.port, identifier=client_id(tag), keepalive=60, **settings)
    await c.__aenter__()  # what `async with` does: a worker keeps its client beyond one block
    return c


async def aiomqtt_close(c: Any) -> None:
    await c.__aexit__(None, None, None)


async def aiomqtt_sub(a: argparse.Namespace) -> None:
    c = await aiomqtt_client("sub", a)
    await c.subscribe(a.topic, a.qos)
    await c.subscribe(a.ctl, 1)
    say("READY")
    t, cpu = await count_messages(c.messages.__anext__, lambda m: m.topic.value, a.ctl)
    await aiomqtt_close(c)
    t.report(cpu)


async def aiomqtt_pub(a: argparse.Namespace) -> None:
    # paho (under aiomqtt) keeps 20 QoS 1 messages in flight unless told otherwise.
    settings = {"max_inflight_messages": a.tasks} if a.tasks > 1 else {}
    c = await aiomqtt_client("pub", a, **settings)
    # aiomqtt logs a warning at every publish() while more than this many are pending.
    c.pending_calls_threshold = max(c.pending_calls_threshold, a.tasks)
    publish = functools.partial(c.publish, a.topic, b"x" * a.size, a.qos)
    figures = await awaited_publishes(publish, lambda text: c.publish(a.ctl, text, 1), a)
    await aiomqtt_close(c)
    pub_report(**figures)


async def aiomqtt_rtt(a: argparse.Namespace) -> None:
    c = await aiomqtt_client("rtt", a)
    await c.subscribe(a.topic, a.qos)
    publish = functools.partial(c.publish, a.topic, b"x" * a.size, a.qos)
    samples = await awaited_round_trips(publish, c.messages.__anext__, a)
    await aiomqtt_close(c)
    rtt_report(samples)


async def aiomqtt_conn(a: argparse.Namespace) -> None:
    await async_conn_report(lambda: aiomqtt_client("conn", a), aiomqtt_close, a)


async def aiomqtt_idle(a: argparse.Namespace) -> None:
    await async_idle_report(lambda: aiomqtt_client("idle", a), a)


async def aiomqtt_crowd(a: argparse.Namespace) -> None:
    await crowd_report(lambda: aiomqtt_client("crowd", a), a)


# =============================================================================== asyncio drivers
# The shapes the asyncio libraries share: a publisher of awaited publish() calls, a subscriber
# iterating messages, a round trip of an awaited publish and the next message.


async def awaited_publishes(
    publish: Callable[[], Awaitable[None]],
    publish_end: Callable[[str], Awaitable[None]],
    a: argparse.Namespace,
) -> dict[str, Any]:
    """`a.tasks` tasks, each awaiting its own publish() in turn, until `a.count` messages or
    `a.duration`; then END at QoS 1, awaited. Returns pub_report's figures."""
    t0 = now()
    cpu0 = cpu_seconds()
    deadline = t0 + a.duration
    ticket = itertools.count()

    async def task() -> int:
        made = 0
        while next(ticket) < a.count and now() < deadline:
            await publish()
            made += 1
        return made

    sent = sum(await asyncio.gather(*(task() for _ in range(a.tasks))))
    t_calls = now()
    await publish_end(f"END {sent}")
    t_flushed = now()
    return {
        "sent": sent,
        "failed": 0,  # a failed publish raises, and the worker fails
        "t0": t0,
        "t_calls": t_calls,
        "t_flushed": t_flushed,
        "cpu": cpu_seconds() - cpu0,
        "threads": thread_cpu(),
    }


async def count_messages(
    next_message: Callable[[], Awaitable[Any]], topic_of: Callable[[Any], str], ctl: str
) -> tuple[Tally, float]:
    """Counts data messages until END arrives on `ctl`, then up to GRACE s more while some are
    missing. Returns the tally and the CPU seconds it took."""
    t = Tally()
    cpu0 = cpu_seconds()
    while t.expected is None:
        message = await next_message()
        if topic_of(message) == ctl:
            t.expected = end_count(message.payload)
            t.t_end = now()
        else:
            t.count += 1
            t.t_last = now()
    while t.count < t.expected:
        try:
            message = await asyncio.wait_for(next_message(), GRACE)
        except asyncio.TimeoutError:
            break
        if topic_of(message) != ctl:
            t.count += 1
            t.t_last = now()
    return t, cpu_seconds() - cpu0


async def awaited_round_trips(
    publish: Callable[[], Awaitable[None]],
    next_message: Callable[[], Awaitable[Any]],
    a: argparse.Namespace,
) -> list[float]:
    """Seconds from each publish() to the arrival of that message, after `a.warmup` unmeasured."""
    samples = []
    for _ in range(a.warmup + a.count):
        t0 = time.perf_counter()
        await publish()
        await next_message()
        samples.append(time.perf_counter() - t0)
    return samples[a.warmup :]


async def async_conn_report(
    connect: Callable[[], Awaitable[Any]],
    disconnect: Callable[[Any], Awaitable[None]],
    a: argparse.Namespace,
) -> None:
    """conn_report for awaited connect and disconnect."""
    connects, disconnects = [], []
    for i in range(a.warmup + a.count):
        t0 = time.perf_counter()
        c = await connect()
        t1 = time.perf_counter()
        await disconnect(c)
        t2 = time.perf_counter()
        if i >= a.warmup:
            connects.append(t1 - t0)
            disconnects.append(t2 - t1)
    conn_emit(connects, disconnects)


async def async_idle_report(make_one: Callable[[], Awaitable[Any]], a: argparse.Namespace) -> None:
    """idle_report for clients connected one after the other in one event loop."""
    clients: list[Any] = []

    async def make() -> None:
        clients.append(await make_one())

    async def settle() -> None:
        await asyncio.sleep(a.settle)

    await idle_steps(make, settle, a, clients)


async def crowd_report(make_one: Callable[[], Awaitable[Any]], a: argparse.Namespace) -> None:
    """One warm client (the library's fixed costs), then `a.clients` more in the same event loop,
    connected by `a.concurrency` tasks (so the broker's listen backlog does not overflow and time
    goes to the library, not to SYN retransmits). A library that fails (a limit it hits) is
    reported with the clients it held when the first connect failed."""
    clients = [await make_one()]
    await asyncio.sleep(a.settle)
    gc.collect()
    rss0, threads0 = proc_status("VmRSS"), proc_status("Threads")
    ticket = itertools.count()
    errors: list[str] = []

    async def connector() -> None:
        while not errors and next(ticket) < a.clients:
            try:
                clients.append(await make_one())
            except Exception as e:
                errors.append(f"{type(e).__name__}: {e}")

    t0 = time.perf_counter()
    await asyncio.gather(*(connector() for _ in range(a.concurrency)))
    took = time.perf_counter() - t0
    await asyncio.sleep(a.settle)
    gc.collect()
    rss1, threads1 = proc_status("VmRSS"), proc_status("Threads")
    held = len(clients) - 1
    emit(
        wanted=a.clients,
        total=held,
        connect_all_s=took,
        connect_rate=held / took,
        rss_base_kb=rss0,
        rss_kb=rss1,
        rss_per_client_kb=(rss1 - rss0) / max(1, held),
        threads_base=threads0,
        threads=threads1,
        error=errors[0] if errors else None,
    )
    sys.stdout.flush()
    os._exit(0)  # skip tearing down thousands of clients one by one


# =============================================================================== shared reports


def pub_report(
    sent: int,
    failed: int,
    t0: float,
    t_calls: float,
    t_flushed: float,
    cpu: float,
    threads: dict[str, float],
) -> None:
    emit(
        sent=sent,
        failed=failed,
        t0=t0,
        t_calls=t_calls,
        t_flushed=t_flushed,
        cpu=cpu,
        thread_cpu_total=threads,  # per thread name, since the process started (not just t0..)
    )


def rtt_report(samples: list[float]) -> None:
    us = sorted(s * 1e6 for s in samples)
    emit(
        n=len(us),
        p50_us=statistics.median(us),
        p99_us=us[min(len(us) - 1, int(0.99 * len(us)))],
        mean_us=statistics.fmean(us),
        max_us=us[-1],
    )


def conn_emit(connects: list[float], disconnects: list[float]) -> None:
    total = [(c + d) * 1e3 for c, d in zip(connects, disconnects)]
    emit(
        n=len(total),
        median_ms=statistics.median(total),
        mean_ms=statistics.fmean(total),
        max_ms=max(total),
        connect_median_ms=statistics.median(connects) * 1e3,
        disconnect_median_ms=statistics.median(disconnects) * 1e3,
    )


def conn_report(connect: Any, disconnect: Any, a: argparse.Namespace) -> None:
    """Sequential clients: construct + connect (CONNACK received), then disconnect."""
    connects, disconnects = [], []
    for i in range(a.warmup + a.count):
        t0 = time.perf_counter()
        c = connect()
        t1 = time.perf_counter()
        disconnect(c)
        t2 = time.perf_counter()
        if i >= a.warmup:
            connects.append(t1 - t0)
            disconnects.append(t2 - t1)
    conn_emit(connects, disconnects)


def idle_report(make_one: Any, a: argparse.Namespace) -> None:
    clients: list[Any] = []

    async def make() -> None:
        clients.append(make_one())

    async def settle() -> None:
        time.sleep(a.settle)

    asyncio.run(idle_steps(make, settle, a, clients))


async def idle_steps(make: Any, settle: Any, a: argparse.Namespace, clients: list[Any]) -> None:
    """One warm client (the library's fixed costs), then `clients` more, then up to `total`."""
    await make()
    await settle()
    gc.collect()
    rss0, threads0 = proc_status("VmRSS"), proc_status("Threads")
    t0 = time.perf_counter()
    while len(clients) < 1 + a.clients:
        await make()
    t_make = time.perf_counter() - t0
    await settle()
    gc.collect()
    rss1, threads1 = proc_status("VmRSS"), proc_status("Threads")
    # The thread count with `total` clients. A library may not get there (paho's network
    # threads use select(), which refuses file descriptors >= 1024): report how far it got.
    total_error = None
    try:
        while len(clients) < a.total:
            await make()
    except Exception as e:
        total_error = f"{type(e).__name__}: {e}"
    await settle()
    gc.collect()
    rss2, threads2 = proc_status("VmRSS"), proc_status("Threads")
    emit(
        wanted=a.total,
        clients=a.clients,
        rss_base_kb=rss0,
        rss_kb=rss1,
        rss_per_client_kb=(rss1 - rss0) / a.clients,
        connect_each_ms=t_make * 1e3 / a.clients,
        threads_base=threads0,
        threads=threads1,
        total=len(clients),
        rss_total_kb=rss2,
        rss_per_client_total_kb=(rss2 - rss0) / (len(clients) - 1),
        threads_total=threads2,
        total_error=total_error,
    )
    sys.stdout.flush()
    os._exit(0)  # skip tearing down hundreds of clients one by one


# =============================================================================== the floor
# Not a library: the least a Python client can do per round trip (one send, one recv on a blocking
# socket, packets built by hand, nothing checked). run.py runs it beside the libraries in the rtt
# scenario, so the table says what this machine allows any Python client.


def mqtt_packet(first_byte: int, body: bytes) -> bytes:
    length, remaining = bytearray(), len(body)
    while True:  # MQTT's variable-length "remaining length"
        remaining, digit = divmod(remaining, 128)
        length.append(digit | (128 if remaining else 0))
        if not remaining:
            return bytes([first_byte]) + bytes(length) + body


def mqtt_string(text: str) -> bytes:
    raw = text.encode()
    return len(raw).to_bytes(2, "big") + raw


def recv_exactly(s: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = s.recv(size - len(data))
        if not chunk:
            raise RuntimeError("socket floor: the broker closed the connection")
        data += chunk
    return data


def socket_rtt(a: argparse.Namespace) -> None:
    s = socket.create_connection((HOST, a.port))
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    connect = b"\x00\x04MQTT\x04\x02" + (60).to_bytes(2, "big") + mqtt_string(client_id("rtt"))
    s.sendall(mqtt_packet(0x10, connect))
    if recv_exactly(s, 4)[3] != 0:
        raise RuntimeError("socket floor: CONNACK refused")
    s.sendall(mqtt_packet(0x82, b"\x00\x01" + mqtt_string(a.topic) + bytes([a.qos])))
    recv_exactly(s, 5)  # SUBACK
    publish = mqtt_packet(0x30, mqtt_string(a.topic) + b"x" * a.size)
    samples = []
    for _ in range(a.warmup + a.count):
        t0 = time.perf_counter()
        s.sendall(publish)
        recv_exactly(s, len(publish))  # the broker forwards the same bytes back
        samples.append(time.perf_counter() - t0)
    s.sendall(b"\xe0\x00")  # DISCONNECT
    s.close()
    rtt_report(samples[a.warmup :])


# =============================================================================== main

ROLES: dict[str, dict[str, Any]] = {
    "umqtt": {
        "sub": umqtt_sub,
        "pub": umqtt_pub,
        "rtt": umqtt_rtt,
        "conn": umqtt_conn,
        "idle": umqtt_idle,
    },
    "paho": {
        "sub": paho_sub,
        "pub": paho_pub,
        "rtt": paho_rtt,
        "conn": paho_conn,
        "idle": paho_idle,
    },
    "gmqtt": {
        "sub": gmqtt_sub,
        "pub": gmqtt_pub,
        "rtt": gmqtt_rtt,
        "conn": gmqtt_conn,
        "idle": gmqtt_idle,
        "crowd": gmqtt_crowd,
    },
    "umqtt.aio": {
        "sub": aio_sub,
        "pub": aio_pub,
        "rtt": aio_rtt,
        "conn": aio_conn,
        "idle": aio_idle,
        "crowd": aio_crowd,
    },
    "aiomqtt": {
        "sub": aiomqtt_sub,
        "pub": aiomqtt_pub,
        "rtt": aiomqtt_rtt,
        "conn": aiomqtt_conn,
        "idle": aiomqtt_idle,
        "crowd": aiomqtt_crowd,
    },
    "socket": {"rtt": socket_rtt},
}
# The libraries whose client constructor takes the --option keyword arguments (a row's variant).
TAKES_OPTIONS = ("umqtt", "umqtt.aio")


def option(text: str) -> tuple[str, Any]:
    """KEY=VALUE from the command line; VALUE is JSON when it parses (5, true, "x"), else text."""
    key, sep, raw = text.partition("=")
    if not sep or not key.isidentifier():
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    try:
        return key, json.loads(raw)
    except ValueError:
        return key, raw


def main() -> None:
    global HOST
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("role", choices=["sub", "pub", "rtt", "conn", "idle", "crowd"])
    p.add_argument("lib", choices=sorted(ROLES))
    p.add_argument("--host", default=HOST)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--topic", default="bench/data")
    p.add_argument("--ctl", default="bench/ctl")
    p.add_argument("--qos", type=int, default=0)
    p.add_argument("--size", type=int, default=64, help="payload bytes")
    p.add_argument("--count", type=int, default=10_000, help="messages / iterations")
    p.add_argument("--duration", type=float, default=10.0, help="publisher stops after this")
    p.add_argument("--threads", type=int, default=1, help="umqtt publisher threads")
    p.add_argument("--window", type=int, default=1, help="paho/gmqtt QoS 1 messages in flight")
    p.add_argument("--batch", type=int, default=1000, help="windowed publish: batch size")
    p.add_argument(
        "--tasks", type=int, default=1, help="asyncio publisher: tasks each awaiting its publish"
    )
    p.add_argument("--warmup", type=int, default=50)
    p.add_argument("--clients", type=int, default=200, help="idle/crowd: clients to measure")
    p.add_argument("--total", type=int, default=1000, help="idle: clients for the thread count")
    p.add_argument("--concurrency", type=int, default=64, help="crowd: connects at a time")
    p.add_argument("--settle", type=float, default=1.0, help="idle/crowd: seconds before measuring")
    p.add_argument(
        "--option",
        type=option,
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help=f"a keyword argument for the client constructor ({', '.join(TAKES_OPTIONS)})",
    )
    a = p.parse_args()
    if a.role not in ROLES[a.lib]:
        p.error(f"{a.lib} has no role {a.role}")
    if a.option and a.lib not in TAKES_OPTIONS:
        p.error(f"{a.lib} takes no --option")
    a.options = dict(a.option)
    HOST = a.host
    with tempfile.TemporaryDirectory(prefix="umqtt-bench-outbox.") as outbox_folder:
        if a.options.get("persistence") == NEW_OUTBOX:
            a.options["persistence"] = os.path.join(outbox_folder, "outbox.sqlite")
        fn = ROLES[a.lib][a.role]
        if not asyncio.iscoroutinefunction(fn):
            fn(a)
            return
        asyncio.run(fn(a))
    # The figures are out; skip the interpreter's teardown, which is not measured and in which
    # umqtt.aio 0.1 crashes at times (a runtime thread drops a Python object while the
    # interpreter finalizes: SIGSEGV or a PyGILState_Release abort).
    sys.stdout.flush()
    os._exit(0)


if __name__ == "__main__":
    main()

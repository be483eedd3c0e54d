"""How `umqtt.aio` reaches the core (issue 21): the event loop's own thread polls the operations
and drives the runtime, so an awaited call crosses no thread when it need not. Each test runs
under MQTT 3.1.1 and MQTT 5 (the mqtt_version fixture).

Witnesses: whether an awaited call let the loop run a callback scheduled before it (a call that
suspended did), the exit status and stderr of fresh interpreters, and what a paho peer and the
clients themselves received. No timing is asserted: speed is the benchmark's business.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap
import threading
from collections.abc import Callable

import pytest
import umqtt
from broker import Mosquitto, unique_id
from umqtt.aio import MQTTClient


@pytest.mark.asyncio
async def test_a_publish_done_at_once_does_not_suspend(make_aio, topic, mqtt_version):
    """A QoS 0 publish is done once queued for the connection: its awaitable is already
    complete, so the task goes on without handing the loop a turn (no thread hop, no wake-up)."""
    async with make_aio(version=mqtt_version) as client:
        turns: list[int] = []
        asyncio.get_running_loop().call_soon(turns.append, 1)
        for i in range(100):  # fewer than the connection's request queue holds
            await client.publish(topic, b"%d" % i)
        assert turns == [], "a QoS 0 publish suspended its task"
        await asyncio.sleep(0)
        assert turns == [1]


@pytest.mark.asyncio
async def test_a_long_run_of_publishes_done_at_once_gives_the_loop_turns(
    make_aio, topic, mqtt_version
):
    """A task that only publishes at QoS 0 hands the loop a turn now and then (after 128 calls
    done at once), whose flush writes what it queued: a callback scheduled before runs long
    before the last publish, and every message arrives, in order."""
    async with make_aio(version=mqtt_version) as receiver, make_aio(version=mqtt_version) as sender:
        await receiver.subscribe(topic, 0)
        count = 1000
        turns: list[int] = []
        asyncio.get_running_loop().call_soon(turns.append, 1)
        seen_at = None
        for i in range(count):
            await sender.publish(topic, b"%d" % i)
            if turns and seen_at is None:
                seen_at = i
        assert seen_at is not None and seen_at < count // 2, f"first turn after {seen_at}"
        got = await asyncio.wait_for(_take(receiver, count), 60)
        assert got == [b"%d" % i for i in range(count)]


@pytest.mark.asyncio
async def test_messages_already_in_are_taken_without_suspending(make_aio, topic, mqtt_version):
    """Messages that have arrived are handed over by messages() at once, one after the other."""
    async with make_aio(version=mqtt_version) as client:
        await client.subscribe(topic, 1)
        for i in range(5):
            await client.publish(topic, b"%d" % i, qos=1)
        messages = client.messages()
        first = await messages.__anext__()
        await asyncio.wait_for(_until(lambda: client._core.pending_messages() >= 4), 10)
        turns: list[int] = []
        asyncio.get_running_loop().call_soon(turns.append, 1)
        rest = [await messages.__anext__() for _ in range(4)]
        assert turns == []
        assert [m.payload for m in [first, *rest]] == [b"0", b"1", b"2", b"3", b"4"]
        await messages.aclose()


async def _until(condition: Callable[[], bool]) -> None:
    while not condition():
        await asyncio.sleep(0.005)


async def _take(client: MQTTClient, count: int) -> list[bytes]:
    got = []
    async for message in client.messages():
        got.append(message.payload)
        if len(got) == count:
            break
    return got


def _blocking_reader(client: umqtt.MQTTClient, stop: threading.Event) -> threading.Thread:
    """A thread that sits in wait_msg(), so it holds the runtime's core most of the time."""

    def read() -> None:
        while not stop.is_set():
            client.wait_msg()

    thread = threading.Thread(target=read, name="blocked-reader", daemon=True)
    thread.start()
    return thread


@pytest.mark.asyncio
async def test_operations_complete_while_a_blocked_thread_drives(
    broker, make_aio, peer, topic, mqtt_version
):
    """A thread blocked in wait_msg() holds the core for as long as it waits; the loop never
    waits for it: the loop's operations run on that thread and their outcomes come back to the
    loop, woken through its socket. Every publish, acknowledgement and message arrives."""
    received: list[bytes] = []
    blocking = umqtt.MQTTClient(
        unique_id("blocked"), broker.host, broker.port, version=mqtt_version
    )
    blocking.set_callback(lambda t, m: received.append(m))
    blocking.connect()
    blocking.subscribe(f"{topic}/blocking", 1)
    stop = threading.Event()
    reader = _blocking_reader(blocking, stop)
    try:
        async with make_aio(version=mqtt_version) as client:
            assert await client.subscribe(f"{topic}/aio", 1) == 1
            for i in range(50):
                await client.publish(f"{topic}/aio", b"%d" % i, qos=1)
                await client.publish(f"{topic}/blocking", b"%d" % i, qos=1)
            got = await asyncio.wait_for(_take(client, 50), 30)
            assert got == [b"%d" % i for i in range(50)]
        await asyncio.wait_for(_until(lambda: len(received) == 50), 30)
        assert received == [b"%d" % i for i in range(50)]
    finally:
        stop.set()
        blocking.publish(f"{topic}/blocking", b"stop")  # ends the reader's last wait
        reader.join(10)
        blocking.disconnect()


def test_event_loops_in_several_threads_share_the_core(broker, topic, mqtt_version):
    """Four threads each run an event loop with its own client; each publishes to the next one's
    topic at QoS 1 and receives from the previous one. Every loop gets exactly its messages."""
    count, loops = 100, 4
    results: dict[int, list[bytes]] = {}
    errors: list[BaseException] = []
    ready = threading.Barrier(loops)

    async def run(k: int) -> None:
        async with MQTTClient(
            unique_id(f"loop{k}"), broker.host, broker.port, version=mqtt_version
        ) as client:
            await client.subscribe(f"{topic}/{k}", 1)
            await asyncio.get_running_loop().run_in_executor(None, ready.wait)
            sender = asyncio.ensure_future(
                asyncio.gather(
                    *(
                        client.publish(f"{topic}/{(k + 1) % loops}", b"%d" % i, qos=1)
                        for i in range(count)
                    )
                )
            )
            results[k] = await _take(client, count)
            await sender

    def thread(k: int) -> None:
        try:
            asyncio.run(asyncio.wait_for(run(k), 60))
        except BaseException as e:  # reported below, with the thread's number
            errors.append(e)

    threads = [threading.Thread(target=thread, args=(k,)) for k in range(loops)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(90)
    assert not errors, errors
    for k in range(loops):
        assert sorted(results[k], key=int) == [b"%d" % i for i in range(count)], k


def test_a_client_moves_to_a_new_event_loop(broker, topic, mqtt_version):
    """Each asyncio.run() is a new loop with a bridge of its own; a client made in one may be
    used in the next, and a loop that ends with a wait pending leaves nothing behind."""
    client = MQTTClient(unique_id("mover"), broker.host, broker.port, version=mqtt_version)

    async def first() -> None:
        await client.connect()
        await client.subscribe(topic, 1)
        waiting = asyncio.ensure_future(client.messages().__anext__())
        await asyncio.sleep(0.05)
        assert not waiting.done()  # asyncio.run cancels it when this loop ends

    async def second() -> bytes:
        await client.publish(topic, b"again", qos=1)
        message = await asyncio.wait_for(client.messages().__anext__(), 10)
        await client.disconnect()
        return message.payload

    asyncio.run(first())
    assert asyncio.run(second()) == b"again"


EXIT_SCRIPT = textwrap.dedent(
    """
    import asyncio, sys
    from umqtt.aio import MQTTClient

    async def main():
        client = MQTTClient(sys.argv[1], "127.0.0.1", int(sys.argv[2]), version=int(sys.argv[3]))
        await client.connect()
        await client.subscribe("exit/" + sys.argv[1], 1)
        for i in range(50):
            await client.publish("exit/" + sys.argv[1], b"x", qos=i % 2)
        messages = client.messages()
        for _ in range(50):
            await messages.__anext__()
        await client.disconnect()

    asyncio.run(main())
    print("clean exit")
    """
)


@pytest.mark.parametrize("run", range(10))
def test_a_script_using_asyncio_exits_cleanly(
    broker: Mosquitto, run: int, mqtt_version: int
) -> None:
    """The interpreter's exit after asyncio.run() with clients is clean: exit status 0, nothing
    on stderr. (Before the loop drove the core itself, futures were completed from runtime
    threads, which crashed about a third of such exits: SIGSEGV or PyGILState_Release.)"""
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            EXIT_SCRIPT,
            unique_id(f"exit{run}"),
            str(broker.port),
            str(mqtt_version),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert (done.returncode, done.stdout.strip(), done.stderr) == (0, "clean exit", "")

"""What an awaited `umqtt.aio` call returns (issue 21): the core's own awaitable, `Call`, which
is an asyncio future and a coroutine at once. `publish()` returns it directly (no coroutine of
its own), so it must work wherever asyncio takes a coroutine or a future, and its cancellation
must drop its operation as the cancellation of a task awaiting it always did.

Witnesses: what asyncio's own functions do with it, and the messages the clients receive."""

from __future__ import annotations

import asyncio
import contextvars
import gc
import inspect
import weakref

import pytest
from broker import free_port, unique_id
from umqtt.aio import MQTTClient, MQTTConnectError


async def _take(client: MQTTClient, count: int) -> list[bytes]:
    """The payloads of the next `count` messages."""
    messages = client.messages()
    return [(await messages.__anext__()).payload for _ in range(count)]


@pytest.mark.asyncio
async def test_publish_goes_to_create_task_gather_wait_for_and_ensure_future(make_aio, topic):
    """A publish's call is taken by create_task (as a coroutine), ensure_future, gather and
    wait_for (as a future), at QoS 0, 1 and 2; every message arrives once."""
    async with make_aio() as client:
        assert await client.subscribe(topic, 2) == 2
        task = asyncio.create_task(client.publish(topic, b"task", qos=1))
        future = asyncio.ensure_future(client.publish(topic, b"future", qos=2))
        gathered = await asyncio.gather(
            *(client.publish(topic, b"gather %d" % qos, qos=qos) for qos in (0, 1, 2))
        )
        waited = await asyncio.wait_for(client.publish(topic, b"wait_for", qos=1), 30)
        assert await task is None
        assert await future is None
        assert gathered == [None, None, None]
        assert waited is None
        got = await asyncio.wait_for(_take(client, 6), 30)
        assert sorted(got) == sorted(
            [b"task", b"future", b"gather 0", b"gather 1", b"gather 2", b"wait_for"]
        )


@pytest.mark.asyncio
async def test_a_call_is_a_future_and_a_coroutine_of_its_loop(make_aio, topic):
    """asyncio.isfuture and asyncio.iscoroutine are both true; a call that ended at once is
    done, with its result; a call's value is what `await` gives (the granted QoS)."""
    async with make_aio() as client:
        call = client.publish(topic, b"x")
        assert asyncio.isfuture(call)
        assert asyncio.iscoroutine(call)
        assert call.get_loop() is asyncio.get_running_loop()
        assert call.done() and not call.cancelled()
        assert call.result() is None and call.exception() is None
        assert await call is None
        assert await call is None  # awaiting it again gives the result again, as a future does
        assert await client.subscribe(topic, 1) == 1


@pytest.mark.asyncio
async def test_the_publish_starts_when_called(make_aio, topic):
    """publish() sends at once: a call nobody awaits still publishes (like gmqtt's publish)."""
    async with make_aio() as client:
        await client.subscribe(topic, 1)
        client.publish(topic, b"not awaited", qos=1)
        assert await asyncio.wait_for(_take(client, 1), 30) == [b"not awaited"]


def test_a_publish_made_before_its_loop_runs_starts_when_awaited(broker, topic):
    """publish() called where no loop runs (``asyncio.run(client.publish(...))``) returns a
    coroutine, which publishes in the loop that runs it."""
    client = MQTTClient(unique_id("early"), broker.host, broker.port)

    async def connect() -> None:
        await client.connect()
        await client.subscribe(topic, 1)

    async def receive() -> list[bytes]:
        try:
            return await asyncio.wait_for(_take(client, 1), 30)
        finally:
            await client.disconnect()

    asyncio.run(connect())
    early = client.publish(topic, b"early", qos=1)
    assert inspect.iscoroutine(early)
    asyncio.run(early)
    assert asyncio.run(receive()) == [b"early"]


@pytest.mark.asyncio
async def test_a_bad_argument_raises_when_called(make_aio, topic):
    async with make_aio() as client:
        with pytest.raises(ValueError, match="qos"):
            client.publish(topic, b"x", qos=3)


@pytest.mark.asyncio
async def test_a_failed_call_raises_where_awaited(make_aio):
    """A connect to a port nobody listens on ends with its exception, which result(),
    exception() and every await give."""
    client = make_aio(port=free_port(), connect_timeout=5.0)
    call = client._core.connect_async(client._bridge())
    with pytest.raises(MQTTConnectError):
        await asyncio.wait_for(call, 10)
    assert isinstance(call.exception(), MQTTConnectError)
    with pytest.raises(MQTTConnectError):
        call.result()
    with pytest.raises(MQTTConnectError):
        await call


@pytest.mark.asyncio
async def test_cancelling_a_pending_call_runs_its_callbacks_and_loses_no_message(make_aio, topic):
    """A pending call (waiting for a message) runs its done callbacks, in their context, when
    cancelled; it is then cancelled, with the message given; a removed callback does not run.
    The message that comes after is taken by the next wait, not lost."""
    async with make_aio() as client:
        await client.subscribe(topic, 1)
        call = client._core.message_ready_async(client._bridge())
        assert not call.done()
        with pytest.raises(asyncio.InvalidStateError):
            call.result()
        seen: list[object] = []
        where = contextvars.ContextVar("where", default="outside")
        context = contextvars.copy_context()
        context.run(where.set, "inside")
        call.add_done_callback(lambda c: seen.append((c, where.get())), context=context)
        removed = seen.append
        call.add_done_callback(removed)
        assert call.remove_done_callback(removed) == 1
        assert call.cancel("no longer wanted") is True
        assert call.cancel() is False
        assert call.done() and call.cancelled()
        assert seen == []  # callbacks run from the loop, not inside cancel()
        await asyncio.sleep(0)
        assert seen == [(call, "inside")]
        with pytest.raises(asyncio.CancelledError, match="no longer wanted"):
            call.result()
        with pytest.raises(asyncio.CancelledError):
            await call
        await client.publish(topic, b"after", qos=1)
        assert await asyncio.wait_for(_take(client, 1), 30) == [b"after"]


@pytest.mark.asyncio
async def test_a_task_cancelled_while_awaiting_a_call_drops_its_operation(make_aio, topic):
    """Task.cancel() cancels the call the task waits on (asyncio's future protocol) and the
    task ends cancelled; wait_for's timeout does the same. Closing a pending call (a coroutine
    nobody will run) cancels it too. Nothing is left waiting in the loop's bridge."""
    async with make_aio() as client:
        await client.subscribe(topic, 1)
        bridge = client._bridge()
        call = client._core.message_ready_async(bridge)
        task = asyncio.create_task(call)
        await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert call.cancelled()
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(client._core.message_ready_async(bridge), 0.05)
        closed = client._core.message_ready_async(bridge)
        closed.close()
        assert closed.cancelled()
        with pytest.raises(KeyError):
            closed.throw(KeyError("thrown"))
        await client.publish(topic, b"after", qos=1)
        assert await asyncio.wait_for(_take(client, 1), 30) == [b"after"]


@pytest.mark.asyncio
async def test_a_failed_call_in_a_reference_cycle_is_collected(make_aio):
    """A failed call keeps its exception, whose traceback keeps the frame that held the call:
    that cycle is collected (a call takes part in the garbage collector)."""
    client = make_aio(port=free_port(), connect_timeout=5.0)
    refs: list[weakref.ref[object]] = []

    async def connect() -> None:
        call = client._core.connect_async(client._bridge())
        refs.append(weakref.ref(call))
        await call

    with pytest.raises(MQTTConnectError):
        await asyncio.wait_for(connect(), 10)
    gc.collect()
    assert refs[0]() is None

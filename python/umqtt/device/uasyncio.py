"""MicroPython's ``uasyncio``/``asyncio``: CPython's ``asyncio`` plus MicroPython's extras
(``sleep_ms``, ``ThreadSafeFlag``).

Under ``python -m umqtt run`` a device script's ``import asyncio`` gets this module;
CPython's own ``asyncio`` is not touched."""

from __future__ import annotations

import asyncio
from asyncio import *  # noqa: F403


async def sleep_ms(ms: float) -> None:
    await asyncio.sleep(max(0.0, ms) / 1000)


class ThreadSafeFlag:
    """A flag another thread (or an interrupt handler) sets and one task waits for."""

    def __init__(self) -> None:
        self._event = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None

    def set(self) -> None:
        loop = self._loop
        if loop is None or loop.is_closed():
            self._event.set()
        else:
            loop.call_soon_threadsafe(self._event.set)

    def clear(self) -> None:
        self._event.clear()

    async def wait(self) -> None:
        self._loop = asyncio.get_running_loop()
        await self._event.wait()
        self._event.clear()

"""QuecPython's ``queue``: ``Queue(maxsize=100)`` (the documentation's ``max_size`` too) with
``put``, a blocking ``get``, ``empty`` and ``size`` (the device's name for ``qsize``)."""

from __future__ import annotations

import queue as _queue
from typing import Any


class Queue:
    def __init__(self, maxsize: int = 100, max_size: int | None = None) -> None:
        self._queue: _queue.Queue[Any] = _queue.Queue(maxsize if max_size is None else max_size)

    def put(self, data: Any = None) -> bool:
        """Blocks while the queue is full; True."""
        self._queue.put(data)
        return True

    def get(self) -> Any:
        """Blocks until there is data."""
        return self._queue.get()

    def empty(self) -> bool:
        return self._queue.empty()

    def size(self) -> int:
        return self._queue.qsize()


Full = _queue.Full
Empty = _queue.Empty

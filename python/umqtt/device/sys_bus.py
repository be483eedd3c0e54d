"""QuecPython's ``sys_bus``: a publish/subscribe bus inside the program. ``publish(topic,
msg)`` calls every ``handler(topic, msg)`` subscribed to ``topic``, each on its own thread,
as the device does."""

from __future__ import annotations

import threading
from typing import Any, Callable

from ._support import log

Handler = Callable[[Any, Any], Any]

_lock = threading.Lock()
_table: dict[Any, list[Handler]] = {}


def subscribe(topic: Any, handler: Handler) -> None:
    if not callable(handler):
        raise TypeError("sys_bus.subscribe: handler must be callable")
    with _lock:
        handlers = _table.setdefault(topic, [])
        if handler not in handlers:
            handlers.append(handler)


def unsubscribe(topic: Any, cb: Handler | None = None) -> bool:
    with _lock:
        if topic not in _table:
            return False
        if cb is None:
            del _table[topic]
            return True
        if cb not in _table[topic]:
            return False
        _table[topic].remove(cb)
        return True


def _call(handler: Handler, topic: Any, msg: Any) -> None:
    try:
        handler(topic, msg)
    except Exception:
        log.exception("a sys_bus handler of %r raised", topic)


def publish(topic: Any, msg: Any) -> None:
    with _lock:
        handlers = list(_table.get(topic, ()))
    for handler in handlers:
        threading.Thread(target=_call, args=(handler, topic, msg), daemon=True).start()


def publish_sync(topic: Any, msg: Any) -> None:
    """Calls the handlers one after the other on this thread."""
    with _lock:
        handlers = list(_table.get(topic, ()))
    for handler in handlers:
        _call(handler, topic, msg)


def sub_table(topic: Any = None) -> dict[Any, list[Handler]] | list[Handler]:
    with _lock:
        if topic is None:
            return {t: list(h) for t, h in _table.items()}
        return list(_table.get(topic, ()))

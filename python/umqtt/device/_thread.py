"""QuecPython's ``_thread``: CPython's ``_thread`` plus the device's extras.

``start_new_thread`` starts a real thread (a daemon, so Ctrl-C ends the program; under
``python -m umqtt run`` the runner waits for it as the device would). The device's extras:
``threadIsRunning``, ``stop_thread`` (raises ``SystemExit`` in the thread at its next Python
instruction; a thread blocked in C stops when that call returns), ``get_heap_size`` (the
profile's ``heap_size``), ``stack_size`` accepting the device's small sizes (anything below
256 KiB runs with CPython's default), ``allocate_semphore``/``Semphore``,
``delete_lock``, ``delete_semphore``.

Under ``python -m umqtt run`` a device script's ``import _thread`` gets this module;
CPython's own ``_thread`` is not touched.
"""

from __future__ import annotations

import _thread as _cpython_thread
import ctypes
import threading
from typing import Any, Callable

from ._support import device_name, not_simulated, profile, thread_by_id, track_thread

# A blocked umqtt call runs the connection's I/O (a TLS handshake included) on its caller's stack,
# which needs more than 48 KiB (docs/design.md, "Known limits"): smaller device sizes keep
# CPython's default rather than crash a thread that connects.
_SMALLEST_STACK = 256 * 1024
_stack_size = 0


def stack_size(size: int | None = None) -> int:
    """Sets (or, with no argument, returns) the stack size for new threads. Sizes below
    256 KiB (the device's default is 8448 bytes) keep CPython's default."""
    global _stack_size
    previous = _stack_size
    if size is not None:
        if size < 0:
            raise ValueError("stack size must be >= 0")
        _stack_size = int(size)
        threading.stack_size(size if size >= _SMALLEST_STACK else 0)
    return previous


def start_new_thread(
    function: Callable[..., Any], args: tuple[Any, ...], kwargs: Any = None
) -> int:
    """Starts ``function(*args)`` on a new thread and returns its id."""
    if not isinstance(args, tuple):
        raise TypeError("start_new_thread's args must be a tuple")
    thread = threading.Thread(
        target=_thread_body,
        args=(function, args, kwargs or {}),
        name=getattr(function, "__name__", None),
    )
    thread.daemon = True
    thread.start()
    track_thread(thread)
    return thread.ident or 0


def _thread_body(function: Callable[..., Any], args: tuple[Any, ...], kwargs: Any) -> None:
    try:
        function(*args, **kwargs)
    except SystemExit:
        pass  # stop_thread(), or a device restart: the thread just ends


def threadIsRunning(thread_id: int) -> bool:
    thread = thread_by_id(thread_id)
    return thread is not None and thread.is_alive()


def stop_thread(thread_id: int) -> None:
    """Ends a thread started by start_new_thread (0: the calling thread). The main thread
    cannot be stopped."""
    if thread_id == 0:
        raise SystemExit(0)
    if thread_id == threading.main_thread().ident:
        raise ValueError("the main thread cannot be stopped")
    thread = thread_by_id(thread_id)
    if thread is None or not thread.is_alive():
        return
    ctypes.pythonapi.PyThreadState_SetAsyncExc(
        ctypes.c_ulong(thread_id), ctypes.py_object(SystemExit)
    )


def get_heap_size() -> int:
    """The free heap the device reports: the profile's ``heap_size``."""
    return int(profile()["heap_size"])


def delete_lock(lock: Any) -> None:
    """Nothing to free on a PC."""


class Semphore:
    """The device's counting semaphore (its spelling): ``acquire``, ``release``, ``getCnt``."""

    def __init__(self, initcount: int) -> None:
        self._max = int(initcount)
        self._count = int(initcount)
        self._cond = threading.Condition()

    def acquire(self) -> bool:
        with self._cond:
            self._cond.wait_for(lambda: self._count > 0)
            self._count -= 1
        return True

    def release(self) -> None:
        with self._cond:
            if self._count < self._max:
                self._count += 1
                self._cond.notify()

    def getCnt(self) -> tuple[int, int]:
        """``(maxCnt, curCnt)``."""
        with self._cond:
            return (self._max, self._count)


def allocate_semphore(initcount: int) -> Semphore:
    return Semphore(initcount)


def delete_semphore(semphore: Semphore) -> None:
    """Nothing to free on a PC."""


def __getattr__(name: str) -> Any:
    """CPython's ``_thread`` for everything else (``allocate_lock``, ``get_ident``, ...)."""
    try:
        return getattr(_cpython_thread, name)
    except AttributeError:
        raise not_simulated(device_name(__name__), name) from None

"""MicroPython's ``micropython``: ``const``, the code-emitter decorators (no-ops on CPython),
``schedule`` (runs the call on a thread), ``alloc_emergency_exception_buf``, ``mem_info``."""

from __future__ import annotations

import threading
from typing import Any, Callable, NoReturn, TypeVar

from ._support import device_name, not_simulated

T = TypeVar("T")


def const(value: T) -> T:
    return value


def native(f: T) -> T:
    return f


viper = native
asm_thumb = native


def alloc_emergency_exception_buf(size: int) -> None:
    pass


def mem_info(verbose: Any = None) -> None:
    print("mem: simulated on CPython (no MicroPython heap)")


def qstr_info(verbose: Any = None) -> None:
    pass


def opt_level(level: Any = None) -> int:
    return 0


def heap_lock() -> int:
    return 0


def heap_unlock() -> int:
    return 0


def schedule(func: Callable[[Any], Any], arg: Any) -> None:
    """Runs ``func(arg)`` soon, on a thread of its own (MicroPython runs it between
    instructions of the main program)."""
    threading.Thread(target=func, args=(arg,), daemon=True).start()


def __getattr__(name: str) -> NoReturn:
    raise not_simulated(device_name(__name__), name)

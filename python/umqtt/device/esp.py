"""MicroPython's ``esp``: debug output, flash size and sleep settings, simulated."""

from __future__ import annotations

from typing import Any, NoReturn

from ._support import device_name, not_simulated

SLEEP_NONE, SLEEP_MODEM, SLEEP_LIGHT = 0, 1, 2


def osdebug(uart: Any, level: Any = None) -> None:
    pass


def flash_size() -> int:
    return 4 * 1024 * 1024


def sleep_type(sleep_type: Any = None) -> int:
    return SLEEP_NONE


def __getattr__(name: str) -> NoReturn:
    raise not_simulated(device_name(__name__), name)

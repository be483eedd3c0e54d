"""MicroPython's ``gc``: CPython's ``gc`` plus ``mem_free()``/``mem_alloc()`` (from the
profile's ``heap_size``; a PC has no fixed heap) and ``threshold()``.

Under ``python -m umqtt run`` a device script's ``import gc`` gets this module; CPython's own
``gc`` is not touched."""

from __future__ import annotations

from gc import *  # noqa: F403

from ._support import profile


def mem_free() -> int:
    return int(profile()["heap_size"])


def mem_alloc() -> int:
    return 0


def threshold(amount: int | None = None) -> int:
    return -1

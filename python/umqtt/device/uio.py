"""MicroPython's ``uio``: CPython's ``io``, with ``open`` mapping ``/usr/...`` like ``uos``."""

from __future__ import annotations

import builtins
import io
from typing import Any

from ._support import map_path


def open(file: Any, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
    """``open()`` with the device's ``/usr/...`` paths mapped; every other path unchanged."""
    return builtins.open(map_path(file), mode, *args, **kwargs)


def __getattr__(name: str) -> Any:
    """CPython's ``io`` for everything else (``BytesIO``, ``StringIO``, ...)."""
    return getattr(io, name)

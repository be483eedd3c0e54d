"""MicroPython's ``usys``: CPython's ``sys`` (every attribute, live), plus
``print_exception(exc, file=sys.stdout)``."""

from __future__ import annotations

import sys
import traceback
from typing import Any


def print_exception(exc: BaseException, file: Any = None) -> None:
    traceback.print_exception(type(exc), exc, exc.__traceback__, file=file or sys.stdout)


def __getattr__(name: str) -> Any:
    return getattr(sys, name)

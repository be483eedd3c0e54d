"""MicroPython's ``webrepl``: starting and stopping are logged; no REPL is served."""

from __future__ import annotations

from typing import Any

from ._support import log


def start(port: int = 8266, password: Any = None) -> None:
    log.info("webrepl.start(port=%s): not served on a PC", port)


def start_foreground(port: int = 8266, password: Any = None) -> None:
    start(port, password)


def stop() -> None:
    log.info("webrepl.stop()")

"""QuecPython's ``log``: leveled loggers that print ``LEVEL:name:message`` lines to stdout,
as the device prints them on its console."""

from __future__ import annotations

import sys
from typing import Any, NoReturn, TextIO

from ._support import device_name, not_simulated

DEBUG = 10
INFO = 20
WARNING = 30
ERROR = 40
CRITICAL = 50
_NAMES = {DEBUG: "DEBUG", INFO: "INFO", WARNING: "WARNING", ERROR: "ERROR", CRITICAL: "CRITICAL"}

_level = INFO
_output: Any = None


def basicConfig(level: int = INFO) -> None:
    global _level
    _level = level


def set_output(out: Any) -> None:
    """Where the lines go: any object with ``write`` (a UART or ``usys.stdout``)."""
    global _output
    _output = out


class Logger:
    def __init__(self, name: str) -> None:
        self.name = name

    def _emit(self, level: int, msg: Any, args: tuple[Any, ...]) -> None:
        if level < _level:
            return
        text = str(msg) % args if args else str(msg)
        line = f"{_NAMES[level]}:{self.name}:{text}\n"
        out: TextIO | Any = _output if _output is not None else sys.stdout
        out.write(line)

    def debug(self, msg: Any, *args: Any) -> None:
        self._emit(DEBUG, msg, args)

    def info(self, msg: Any, *args: Any) -> None:
        self._emit(INFO, msg, args)

    def warning(self, msg: Any, *args: Any) -> None:
        self._emit(WARNING, msg, args)

    def error(self, msg: Any, *args: Any) -> None:
        self._emit(ERROR, msg, args)

    def critical(self, msg: Any, *args: Any) -> None:
        self._emit(CRITICAL, msg, args)

    def exception(self, msg: Any, *args: Any) -> None:
        self._emit(ERROR, msg, args)


def getLogger(name: str) -> Logger:
    return Logger(name)


def __getattr__(name: str) -> NoReturn:
    raise not_simulated(device_name(__name__), name)
